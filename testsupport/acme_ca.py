"""A province's DNS zone and an ACME CA for the certificate tests, from Debian's packages:
``knotd`` (package ``knot``) authoritative for the zone and taking RFC 2136 updates signed
with a TSIG key, and ``pebble`` (the ACME test CA, its DNS-01 checks asking that knotd), both
in a network namespace of their own, on its loopback. Root only (``ip netns``).

``AcmeWorld.start()`` returns when both answer; ``stop()`` ends both processes (by their
pid) and removes the namespace.
"""

from __future__ import annotations

import base64
import ctypes
import datetime as dt
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DNS_PORT = 5353
ACME_PORT = 14000
MANAGEMENT_PORT = 15000
TSIG_NAME = "hotspot-acme"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def tools_missing() -> list[str]:
    return [t for t in ("pebble", "knotd", "knotc", "ip", "curl") if shutil.which(t) is None]


def _tls_for_pebble(folder: Path) -> tuple[Path, Path, Path]:
    """A small CA and pebble's HTTPS certificate for 127.0.0.1 and localhost: (CA file,
    cert, key). The collector trusts the CA file (``[acme] ca_bundle``)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ACME server CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


class AcmeWorld:
    def __init__(self, folder: Path, ns: str, zone: str, validity_seconds: int = 0):
        self.folder, self.ns, self.zone = folder, ns, zone
        self.validity_seconds = validity_seconds
        self.procs: list[subprocess.Popen[bytes]] = []
        self.tsig_secret = base64.b64encode(os.urandom(32)).decode()
        self.tsig_file = folder / "tsig.secret"
        self.ca_bundle = folder / "tls" / "ca.pem"

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{ACME_PORT}/dir"

    def in_ns(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def acme_settings(self, account_key: Path) -> dict[str, object]:
        """The collector's ``[acme]`` for this world."""
        return {
            "directory_url": self.directory_url,
            "zone": self.zone,
            "dns_server": f"127.0.0.1:{DNS_PORT}",
            "tsig_key_name": TSIG_NAME,
            "tsig_algorithm": "hmac-sha256",
            "tsig_secret_file": str(self.tsig_file),
            "account_key_file": str(account_key),
            "ca_bundle": str(self.ca_bundle),
            "poll_seconds": 1,
            "propagation_timeout_seconds": 20,
        }

    def _knot(self) -> None:
        base = self.folder / "knot"
        for sub in ("run", "db", "zones"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "zones" / f"{self.zone}.zone").write_text(
            f"$ORIGIN {self.zone}.\n$TTL 60\n"
            f"@ SOA ns1.{self.zone}. hostmaster.{self.zone}. 1 3600 600 86400 60\n"
            "@ NS ns1\nns1 A 127.0.0.1\n"
        )
        conf = base / "knot.conf"
        conf.write_text(
            f"""server:
    rundir: "{base / "run"}"
    listen: 127.0.0.1@{DNS_PORT}
database:
    storage: "{base / "db"}"
log:
  - target: stderr
    any: info
key:
  - id: {TSIG_NAME}
    algorithm: hmac-sha256
    secret: {self.tsig_secret}
acl:
  - id: acme_update
    key: {TSIG_NAME}
    action: update
    update-type: TXT
template:
  - id: default
    storage: "{base / "zones"}"
    file: "%s.zone"
    semantic-checks: off
zone:
  - domain: {self.zone}
    acl: acme_update
"""
        )
        self.tsig_file.write_text(self.tsig_secret + "\n")
        self.tsig_file.chmod(0o600)
        log = open(self.folder / "knot.log", "wb")
        self.procs.append(
            subprocess.Popen(self.in_ns("knotd", "-c", str(conf)), stdout=log, stderr=log)
        )

    def _pebble(self) -> None:
        tls = self.folder / "tls"
        tls.mkdir(exist_ok=True)
        _, cert, key = _tls_for_pebble(tls)
        settings: dict[str, object] = {
            "listenAddress": f"127.0.0.1:{ACME_PORT}",
            "managementListenAddress": f"127.0.0.1:{MANAGEMENT_PORT}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": 5002,
            "tlsPort": 5001,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }
        if self.validity_seconds:
            settings["certificateValidityPeriod"] = self.validity_seconds
        conf = self.folder / "pebble.json"
        conf.write_text(json.dumps({"pebble": settings}))
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        log = open(self.folder / "pebble.log", "wb")
        argv = self.in_ns("pebble", "-config", str(conf), "-dnsserver", f"127.0.0.1:{DNS_PORT}")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=log, env=env))

    def start(self, timeout: float = 20.0) -> AcmeWorld:
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        subprocess.run(["ip", "-n", self.ns, "link", "set", "lo", "up"], check=True)
        self._knot()
        self._pebble()
        deadline = time.monotonic() + timeout
        while True:
            conf = str(self.folder / "knot" / "knot.conf")
            dns_up = subprocess.run(
                self.in_ns("knotc", "-c", conf, "zone-status", self.zone), capture_output=True
            )
            acme_up = subprocess.run(
                self.in_ns(
                    "curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", self.directory_url
                ),
                capture_output=True,
                text=True,
            )
            dns_ok = dns_up.returncode == 0
            if dns_ok and acme_up.stdout == "200":
                return self
            if time.monotonic() >= deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError(
                    "pebble or knotd did not start: "
                    + (self.folder / "pebble.log").read_text(errors="replace")[-800:]
                    + (self.folder / "knot.log").read_text(errors="replace")[-800:]
                )
            time.sleep(0.1)

    def run_inside(self, fn: Callable[[], T], timeout: float = 60.0) -> T:
        """``fn()`` on a thread moved into the namespace (setns(2) moves only the calling
        thread): the collector's worker in this process, without a subprocess's start-up."""
        box: dict[str, Any] = {}

        def target() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{self.ns}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    box["error"] = OSError(ctypes.get_errno(), "setns")
                    return
            try:
                box["value"] = fn()
            except Exception as exc:  # noqa: BLE001 - handed to the caller, re-raised there
                box["error"] = exc

        thread = threading.Thread(target=target, name=f"in-{self.ns}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"not done in {timeout} s inside {self.ns}")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def root_pem(self) -> bytes:
        """Pebble's issuing root (made anew at each start): what a phone would trust."""
        out = subprocess.run(
            self.in_ns(
                "curl",
                "-s",
                "--cacert",
                str(self.ca_bundle),
                f"https://127.0.0.1:{MANAGEMENT_PORT}/roots/0",
            ),
            capture_output=True,
            check=True,
        )
        return out.stdout

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
