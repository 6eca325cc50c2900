"""The gateway's own HTTPS certificate for ``<gateway-id>.<zone>`` (issue #15, item 4).

Pure parts shared by the sync agent (sync/certs.py), the collector (collector/certs.py), the
portal and the health report:

* the gateway's private key (EC P-256) is made on the device and never leaves it: written
  atomically (a temporary file, fsync, rename, fsync of the folder: a power cut leaves the
  old file or the new one, never half of one) with mode 0600 while it waits for its
  certificate, 0640 (the group hotspot-data: the portal) once in force;
* the CSR names exactly one DNS name, ``<gateway-id>.<zone>``;
* a chain the collector returns is installed only when its leaf carries this key and exactly
  this name, is valid now and is signed by the next certificate of the chain;
* renewal is due at two thirds of the lifetime or ``RENEW_BEFORE`` before the end, whichever
  comes first (never before half of it).

Files in the certificate folder: ``key.pem`` (the key in force), ``cert.pem`` (leaf and
intermediates, for gunicorn's ``certfile``), ``next-key.pem`` (a key waiting for its
certificate: a renewal never touches the pair in force until the new one is complete).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

KEY_FILE = "key.pem"
CERT_FILE = "cert.pem"
NEXT_KEY_FILE = "next-key.pem"
# The key in force: read by the portal's TLS listener too (user hotspot, in the agent's
# group hotspot-data); a key waiting for its certificate is the agent's alone (0600).
KEY_MODE = 0o640
RENEW_BEFORE = dt.timedelta(days=30)
MAX_CHAIN_BYTES = 64 * 1024
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ZONE = re.compile(r"^(?=.{1,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]$")


class CertError(Exception):
    """A CSR or a chain that must not be used (says why)."""


def check_zone(zone: str) -> str:
    zone = zone.strip().lower().rstrip(".")
    if not _ZONE.match(zone):
        raise CertError(f"{zone!r} is not a DNS zone like wifi.jambiprov.go.id")
    return zone


def name_for(gateway_id: str, zone: str) -> str:
    """``<gateway-id>.<zone>``; a gateway id that is not one DNS label has no name."""
    if not _LABEL.match(gateway_id):
        raise CertError(
            f"gateway id {gateway_id!r} is not a DNS label (a-z, 0-9, '-'): it cannot be named"
        )
    return f"{gateway_id}.{check_zone(zone)}"


# -- files ------------------------------------------------------------------------------------


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """``path`` holds ``data`` or what it held before, whatever happens (power cut)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(path: Path) -> ec.EllipticCurvePrivateKey | None:
    """The key in ``path``; None when absent or unreadable as an EC key (a torn file is
    impossible by :func:`write_atomically`, but a bad one is replaced rather than trusted)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError):  # absent, unreadable (permissions), not a key
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def make_csr(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def _public_der(key: Any) -> bytes:
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def key_fingerprint(key: Any) -> str:
    """SHA-256 of a public key's SubjectPublicKeyInfo (hex): what ties a CSR to a chain."""
    return hashlib.sha256(_public_der(key)).hexdigest()


# -- checking ---------------------------------------------------------------------------------


def dns_names(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest) -> list[str]:
    try:
        ext = cert_or_csr.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        return []
    san = ext.value
    assert isinstance(san, x509.SubjectAlternativeName)
    if any(not isinstance(g, x509.DNSName) for g in san):
        return ["<not a DNS name>"]  # an IP or e-mail SAN: never ours
    return [str(n).lower() for n in san.get_values_for_type(x509.DNSName)]


@dataclass(frozen=True)
class CheckedCsr:
    name: str
    pem: bytes
    fingerprint: str  # of its public key


def check_csr(pem: bytes, expected_name: str) -> CheckedCsr:
    """The CSR a gateway sent, refused unless it is signed by its own key, asks for exactly
    ``expected_name`` (the authenticated gateway's own name: no other, no extra SANs) and
    carries an EC P-256 or RSA ≥ 2048 key."""
    if len(pem) > 16 * 1024:
        raise CertError("CSR too large")
    try:
        csr = x509.load_pem_x509_csr(pem)
    except ValueError:
        raise CertError("not a PEM certificate signing request") from None
    if not csr.is_signature_valid:
        raise CertError("the CSR's signature does not match its key")
    public = csr.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in ("secp256r1", "secp384r1"):
            raise CertError(f"EC curve {public.curve.name} not accepted (P-256 or P-384)")
    elif isinstance(public, rsa.RSAPublicKey):
        if public.key_size < 2048:
            raise CertError("RSA key shorter than 2048 bits")
    else:
        raise CertError("key type not accepted (EC P-256 or RSA)")
    names = dns_names(csr)
    if names != [expected_name]:
        raise CertError(f"the CSR must name exactly {expected_name!r}, it names {names}")
    cns = [str(a.value).lower() for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns and cns != [expected_name]:
        raise CertError(f"the CSR's common name must be {expected_name!r}, it is {cns}")
    return CheckedCsr(
        expected_name, csr.public_bytes(serialization.Encoding.PEM), key_fingerprint(public)
    )


def split_chain(pem: bytes) -> list[x509.Certificate]:
    if len(pem) > MAX_CHAIN_BYTES:
        raise CertError("chain too large")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise CertError("not a PEM certificate chain") from None
    if not certs:
        raise CertError("empty chain")
    return certs


def _signed_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    public = issuer.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(
                child.signature,
                child.tbs_certificate_bytes,
                ec.ECDSA(child.signature_hash_algorithm),  # type: ignore[arg-type]
            )
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(
                child.signature,
                child.tbs_certificate_bytes,
                padding.PKCS1v15(),
                child.signature_hash_algorithm,  # type: ignore[arg-type]
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class CheckedChain:
    name: str
    not_before: dt.datetime  # naive UTC
    not_after: dt.datetime
    serial: str
    pem: bytes


def check_chain(pem: bytes, key: Any, name: str, now: dt.datetime) -> CheckedChain:
    """Refuse a chain unless its leaf carries ``key``'s public key and exactly ``name``, is
    valid at ``now`` (naive UTC) and each certificate is signed by the next one. Whether the
    root is trusted is the phones' business: the gateway cannot know their stores."""
    certs = split_chain(pem)
    leaf = certs[0]
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        raise CertError("the certificate is not for this gateway's key")
    names = dns_names(leaf)
    if names != [name]:
        raise CertError(f"the certificate must name exactly {name!r}, it names {names}")
    nb = leaf.not_valid_before_utc.replace(tzinfo=None)
    na = leaf.not_valid_after_utc.replace(tzinfo=None)
    if not nb - dt.timedelta(minutes=5) <= now < na:
        raise CertError(f"the certificate is not valid now ({nb} – {na} UTC)")
    for child, issuer in zip(certs, certs[1:], strict=False):
        if not _signed_by(child, issuer):
            raise CertError("the chain is broken: a certificate is not signed by the next")
    if len(certs) < 2:
        raise CertError("the chain has no intermediate certificate")
    text = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return CheckedChain(name, nb, na, format(leaf.serial_number, "x"), text)


def renew_at(not_before: dt.datetime, not_after: dt.datetime) -> dt.datetime:
    """When to start renewing: two thirds into the lifetime or ``RENEW_BEFORE`` before the
    end, whichever comes first, but not before half of it (a short-lived certificate, six
    days, would otherwise be "due" from its first second and renewed at every cycle)."""
    life = not_after - not_before
    return max(not_before + life / 2, min(not_before + life * 2 / 3, not_after - RENEW_BEFORE))


# -- the installed pair -----------------------------------------------------------------------


@dataclass(frozen=True)
class Installed:
    """What is in force, for the health report, the console and the portal."""

    name: str
    not_after: dt.datetime
    serial: str
    renew_at: dt.datetime

    def expired(self, now: dt.datetime) -> bool:
        return now >= self.not_after

    def as_dict(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "name": self.name,
            "expires_at": self.not_after.isoformat() + "Z",
            "serial": self.serial,
            "state": "expired" if self.expired(now) else "valid",
        }


def installed(folder: Path, name: str, now: dt.datetime) -> Installed | None:
    """The pair in ``folder`` when it is complete and for ``name`` (expired included: the
    caller decides); None otherwise (no certificate, a key without one, a mismatch)."""
    key = load_key(folder / KEY_FILE)
    if key is None:
        return None
    try:
        pem = (folder / CERT_FILE).read_bytes()
    except OSError:
        return None
    try:
        certs = split_chain(pem)
    except CertError:
        return None
    leaf = certs[0]
    if _public_der(leaf.public_key()) != _public_der(key.public_key()):
        return None
    if dns_names(leaf) != [name]:
        return None
    nb = leaf.not_valid_before_utc.replace(tzinfo=None)
    na = leaf.not_valid_after_utc.replace(tzinfo=None)
    return Installed(name, na, format(leaf.serial_number, "x"), renew_at(nb, na))


def usable(folder: Path, name: str, now: dt.datetime) -> Installed | None:
    """The pair in force when it is complete, for ``name`` and not expired: what the portal
    serves HTTPS with; None = today's plain-HTTP behaviour."""
    got = installed(folder, name, now)
    return got if got is not None and not got.expired(now) else None


def install(folder: Path, key_pem_bytes: bytes, chain: CheckedChain) -> None:
    """Put a checked pair in force. The certificate is written first, then the key: a power
    cut between the two leaves a certificate that does not match ``key.pem``, which
    :func:`installed` ignores, and the agent redoes both from ``next-key.pem`` (kept until
    the end)."""
    write_atomically(folder / CERT_FILE, chain.pem, 0o640)
    write_atomically(folder / KEY_FILE, key_pem_bytes, KEY_MODE)
    (folder / NEXT_KEY_FILE).unlink(missing_ok=True)


def status(config: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """What the portal serves: ``off`` (no ``[sync] cert_zone``), ``none`` (plain HTTP only),
    ``valid`` or ``expired`` with the name and expiry; for ``hotspot sync status``, the
    operator console and the health report. ``config``: a hotspot.config.Config (not
    imported: the configuration imports this module to put the certificate in force)."""
    if not config.sync.cert_zone:
        return {"state": "off"}
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    got = installed(Path(config.sync.cert_dir), config.sync.cert_name, now)
    if got is None:
        return {"state": "none", "name": config.sync.cert_name}
    return got.as_dict(now)
