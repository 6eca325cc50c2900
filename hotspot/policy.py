"""The province's signed policy (issue #15, item 1; docs/sync-and-collector.md, "The policy").

The collector publishes policy fields for the whole province, a kecamatan or one village;
for each gateway it merges them (:func:`merge_scopes`: the most specific scope wins, field by
field) into one *document*, numbers it with a version that only grows, and signs the
document's exact bytes with an Ed25519 key that never leaves the collector. The gateway has
the public key pinned in its configuration (``[policy] public_key``) and takes a document
only when (:func:`verify`):

* the signature is the pinned key's over the document's bytes (one byte changed, another
  key, no signature: refused);
* the document names this gateway and the format this code reads;
* its version is above the one in force (:func:`check_newer`: an older or equal document,
  replayed by whoever sits on the link, is refused);
* its content passes :func:`validate_fields` (known fields only, sizes, domain syntax, sane
  limits) and the local configuration overlaid with it (:func:`overlay`) is still valid.

The envelope (the document as text, its signature) is what travels and what the gateway keeps
as the last good policy (:func:`store`: written to a temporary file, fsynced, renamed over the
old one, the folder fsynced: a power cut leaves the old file or the new one).

Settings the province does not own (prices, packages, the operator's accounts, the portal's
texts) are not policy fields: the overlay cannot touch them.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hotspot.config import Config, merge
from hotspot.config import validate as validate_config
from hotspot.errors import ConfigError, ErrorCode, Refused
from hotspot.model_announcement import MAX_TEXT
from hotspot.timeutil import iso, parse_utc

FORMAT = "hotspot-policy/1"
POLICY_PATH = "/policy/v1/document"  # the collector's endpoint (GET, signed like ingest)
MAX_DOCUMENT_BYTES = 32 * 1024  # fits one control-socket line with room to spare
MAX_ENVELOPE_BYTES = 48 * 1024
MAX_VERSION = (1 << 53) - 1  # exact in JSON everywhere

# The fields the province owns, and the keys of the configuration each one replaces.
FIELDS = (
    "walled_garden",
    "walled_garden_domains",
    "free_tier",
    "announcements",
    "ntp_servers",
    "dns_blocklist",
)
FREE_TIER = "free"  # the tier the free_tier field sets ([tiers.free])
FREE_TIER_KEYS = (
    "down_kbps",
    "up_kbps",
    "session_minutes",
    "idle_minutes",
    "daily_minutes",
    "daily_mb",
    "schedule",
)
# Sane limits: what a province could mean for a free tier; anything outside is a typo (or
# worse) and is refused rather than shaped.
FREE_TIER_LIMITS = {
    "down_kbps": (64, 100_000),
    "up_kbps": (64, 100_000),
    "session_minutes": (0, 1440),
    "idle_minutes": (0, 1440),
    "daily_minutes": (0, 1440),
    "daily_mb": (0, 100_000),
}
MAX_DOMAINS = 256
MAX_GARDEN_ADDRESSES = 64
MAX_ANNOUNCEMENTS = 20
MAX_ANNOUNCEMENT_TEXT = MAX_TEXT  # as the console's own notices (hotspot/announcements.py)
MAX_NTP_SERVERS = 8
MAX_LIST_BYTES = 256 * 1024 * 1024  # a blocklist (hotspot/dnsfilter.py): 1M names are ~25 MB
MAX_LIST_NAMES = 5_000_000
ANNOUNCEMENT_KEYS = ("id", "text_id", "text_en", "starts", "ends")
SCOPE_PROVINCE = "province"

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$"
)
_NTP_SERVER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.:-]{0,252})$")
_ANNOUNCEMENT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_LIST_REF = re.compile(r"^[\x21-\x7e]{1,200}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_KECAMATAN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class PolicyRefused(Refused):
    """A policy document the gateway does not take; the code says why (signature, replay,
    invalid content). The last good policy stays in force."""


def _refuse(code: ErrorCode, message: str) -> PolicyRefused:
    return PolicyRefused(message, code)


def invalid(message: str) -> PolicyRefused:
    return _refuse(ErrorCode.POLICY_INVALID, message)


# -- keys ---------------------------------------------------------------------------------------


def _ed25519() -> Any:
    # Imported when used: the portal and the CLI's other commands never load it.
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519


def new_private_key() -> bytes:
    """32 random bytes: an Ed25519 private key (the collector's, ``policy keygen``)."""
    from cryptography.hazmat.primitives import serialization

    key = _ed25519().Ed25519PrivateKey.generate()
    raw: bytes = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return raw


def public_key_of(private_key: bytes) -> str:
    """The public key (base64 of its 32 bytes) that gateways pin."""
    from cryptography.hazmat.primitives import serialization

    pub = _ed25519().Ed25519PrivateKey.from_private_bytes(private_key).public_key()
    raw: bytes = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def decode_public_key(text: str) -> bytes:
    """The 32 bytes of a base64 public key; ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) != 32:
        raise ValueError(f"{len(raw)} bytes, an Ed25519 public key has 32")
    return raw


def key_id(public_key: str) -> str:
    """A short name of a public key (the first 16 hex digits of its SHA-256): which key
    signed a document, said in the console and the logs without printing the key."""
    return hashlib.sha256(decode_public_key(public_key)).hexdigest()[:16]


# -- documents ----------------------------------------------------------------------------------


def canonical(obj: Any) -> str:
    """The one text of a JSON value (sorted keys, no spaces, UTF-8 as is)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def make_document(
    gateway: str,
    version: int,
    fields: Mapping[str, Any],
    sources: Mapping[str, str],
    issued_at: dt.datetime,
) -> str:
    """The document text for one gateway (what is signed, byte for byte)."""
    return canonical(
        {
            "format": FORMAT,
            "gateway": gateway,
            "version": version,
            "issued_at": iso(issued_at),
            "sources": dict(sources),
            "policy": dict(fields),
        }
    )


def sign(private_key: bytes, document: str, public_key: str | None = None) -> dict[str, str]:
    """The envelope of ``document``: its text, the signature (base64) and the key's id."""
    key = _ed25519().Ed25519PrivateKey.from_private_bytes(private_key)
    signature = key.sign(document.encode())
    return {
        "document": document,
        "signature": base64.b64encode(signature).decode(),
        "key_id": key_id(public_key or public_key_of(private_key)),
    }


@dataclass(frozen=True)
class Policy:
    """A verified document."""

    gateway: str
    version: int
    issued_at: dt.datetime
    fields: Mapping[str, Any]
    sources: Mapping[str, str]
    envelope: Mapping[str, str]

    def summary(self) -> dict[str, Any]:
        """What the console, ``hotspot gateway policy`` and the health report show."""
        return {
            "version": self.version,
            "issued_at": iso(self.issued_at),
            "key_id": self.envelope.get("key_id", ""),
            "sources": dict(self.sources),
            "policy": copy.deepcopy(dict(self.fields)),
        }

    def announcements(self, now: dt.datetime) -> list[dict[str, Any]]:
        """The announcements running at ``now`` (naive UTC), in the policy's order."""
        out = []
        for a in self.fields.get("announcements", []):
            if parse_utc(a["starts"]) <= now < parse_utc(a["ends"]):
                out.append(dict(a))
        return out


def parse_envelope(raw: bytes | str) -> dict[str, str]:
    """An envelope from the wire or the file: an object of three strings; invalid otherwise."""
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise invalid(f"envelope over {MAX_ENVELOPE_BYTES} bytes")
    try:
        env = json.loads(raw)
    except (ValueError, RecursionError):
        raise invalid("envelope is not JSON") from None
    return check_envelope(env)


def check_envelope(env: Any) -> dict[str, str]:
    if not isinstance(env, dict):
        raise invalid("envelope must be an object")
    if not env.get("signature"):
        raise _refuse(ErrorCode.POLICY_SIGNATURE, "unsigned policy")
    for name in ("document", "signature"):
        if not isinstance(env.get(name), str):
            raise invalid(f"envelope: {name} must be text")
    if set(env) - {"document", "signature", "key_id"}:
        raise invalid(f"envelope: unknown keys {sorted(set(env) - {'document', 'signature'})}")
    key = env.get("key_id", "")
    if not isinstance(key, str) or len(key) > 64:
        raise invalid("envelope: key_id must be short text")
    if len(env["document"].encode()) > MAX_DOCUMENT_BYTES:
        raise invalid(f"document over {MAX_DOCUMENT_BYTES} bytes")
    return {"document": env["document"], "signature": env["signature"], "key_id": key}


# The signature check of ``verify(..., apart=True)``, in a child interpreter: the key, the
# signature and the document, base64, on its stdin; it prints "good" or "bad".
_CHECK_APART = """
import base64, sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
key, signature, document = (base64.b64decode(part) for part in sys.stdin.read().split())
try:
    Ed25519PublicKey.from_public_bytes(key).verify(signature, document)
except InvalidSignature:
    print("bad")
else:
    print("good")
"""


def _signature_good(key: bytes, signature: bytes, document: bytes, *, apart: bool) -> bool:
    """Whether ``key`` signed ``document``. ``apart``: checked by a child interpreter, so
    that the caller never imports ``cryptography`` — 8 MB of RSS that a process keeps for
    good once loaded (its Rust bindings and OpenSSL's tables, bench/README.md), for a check
    the gateway daemon makes at start-up and once per new policy. Anything but a clear
    answer from the child refuses the policy: it fails closed."""
    if not apart:
        from cryptography.exceptions import InvalidSignature

        try:
            _ed25519().Ed25519PublicKey.from_public_bytes(key).verify(signature, document)
        except InvalidSignature:
            return False
        return True
    payload = b" ".join(base64.b64encode(part) for part in (key, signature, document))
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _CHECK_APART],
            input=payload,
            capture_output=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise _refuse(ErrorCode.POLICY_SIGNATURE, f"the signature was not checked: {exc}") from None
    answer = done.stdout.strip()
    if answer in (b"good", b"bad"):
        return answer == b"good"
    raise _refuse(
        ErrorCode.POLICY_SIGNATURE,
        f"the signature was not checked (the checking process exited {done.returncode}: "
        f"{done.stderr.decode(errors='replace').strip().splitlines()[-1:]})",
    )


def verify(
    envelope: Mapping[str, Any],
    public_key: str,
    gateway: str,
    *,
    current: int = 0,
    apart: bool = False,
) -> Policy:
    """The envelope's policy, if the pinned key signed it for ``gateway`` with a version
    above ``current`` and valid content; :class:`PolicyRefused` (with the code) otherwise.
    The signature is checked before anything in the document is believed; ``apart``: in a
    child interpreter (:func:`_signature_good`: the long-running gateway daemon)."""
    env = check_envelope(envelope)
    try:
        key = decode_public_key(public_key)
        signature = base64.b64decode(env["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(ErrorCode.POLICY_SIGNATURE, "malformed signature") from None
    if len(signature) != 64:  # Ed25519's size: what from_public_bytes/verify would refuse
        raise _refuse(
            ErrorCode.POLICY_SIGNATURE, "bad signature (tampered, or signed by another key)"
        )
    if not _signature_good(key, signature, env["document"].encode(), apart=apart):
        raise _refuse(
            ErrorCode.POLICY_SIGNATURE, "bad signature (tampered, or signed by another key)"
        )
    try:
        doc = json.loads(env["document"])
    except (ValueError, RecursionError):
        raise invalid("document is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise invalid(f"document is not {FORMAT}")
    if set(doc) != {"format", "gateway", "version", "issued_at", "sources", "policy"}:
        raise invalid("document: unexpected or missing keys")
    if doc["gateway"] != gateway:
        # A valid document of another village, replayed here.
        raise _refuse(
            ErrorCode.POLICY_SIGNATURE,
            f"document is for gateway {str(doc['gateway'])[:63]!r}, not {gateway!r}",
        )
    version = doc["version"]
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise invalid("document: version must be a positive whole number")
    check_newer(version, current)
    try:
        issued = parse_utc(doc["issued_at"])
    except (TypeError, ValueError, OverflowError):
        raise invalid("document: issued_at is not an ISO 8601 time") from None
    fields = validate_fields(doc["policy"])
    sources = doc["sources"]
    if not isinstance(sources, dict) or not all(
        isinstance(k, str) and k in FIELDS and isinstance(v, str) and len(v) <= 80
        for k, v in sources.items()
    ):
        raise invalid("document: sources must name a scope per field")
    return Policy(gateway, version, issued, fields, dict(sources), env)


def check_newer(version: int, current: int) -> None:
    if version <= current:
        raise _refuse(
            ErrorCode.POLICY_REPLAY,
            f"version {version} is not newer than the policy in force ({current})",
        )


# -- content ------------------------------------------------------------------------------------


def _domain(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where}: {value!r} is not a domain name")
    domain = value.strip().lower().rstrip(".")
    try:
        ipaddress.ip_address(domain)
    except ValueError:
        pass
    else:
        raise invalid(f"{where}: {value!r} is an address (walled_garden takes addresses)")
    if not _HOSTNAME.match(domain):
        raise invalid(f'{where}: {value[:80]!r} is not a domain name like "belajar.id"')
    return domain


def _whole(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid(f"{where}: must be a whole number from {lo} to {hi}")
    return value


def _text(value: Any, where: str, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid(f"{where}: must be non-empty text")
    if len(value) > max_len:
        raise invalid(f"{where}: at most {max_len} characters")
    if _CONTROL.search(value):
        raise invalid(f"{where}: control characters are not allowed")
    return value


def _list(value: Any, where: str, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{where}: must be a list")
    if len(value) > most:
        raise invalid(f"{where}: at most {most} entries")
    return value


def _unique(values: Sequence[str], where: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise invalid(f"{where}: {v!r} is listed twice")
        seen.add(v)


def _free_tier(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("free_tier: must be an object")
    unknown = set(value) - set(FREE_TIER_KEYS)
    if unknown:
        raise invalid(f"free_tier: unknown keys {sorted(unknown)} (the province sets only these)")
    out: dict[str, Any] = {}
    for key, (lo, hi) in FREE_TIER_LIMITS.items():
        if key in value:
            out[key] = _whole(value[key], f"free_tier.{key}", lo, hi)
    if "schedule" in value:
        windows = _list(value["schedule"], "free_tier.schedule", 24)
        checked = []
        for i, w in enumerate(windows):
            where = f"free_tier.schedule[{i}]"
            if not isinstance(w, dict) or set(w) != {"from", "to", "down_kbps", "up_kbps"}:
                raise invalid(f"{where}: must have from, to, down_kbps and up_kbps")
            for end in ("from", "to"):
                if not isinstance(w[end], str) or not re.fullmatch(
                    r"([01][0-9]|2[0-3]):[0-5][0-9]", w[end]
                ):
                    raise invalid(f'{where}.{end}: must be a time of day such as "22:00"')
            checked.append(
                {
                    "from": w["from"],
                    "to": w["to"],
                    "down_kbps": _whole(w["down_kbps"], f"{where}.down_kbps", 64, 100_000),
                    "up_kbps": _whole(w["up_kbps"], f"{where}.up_kbps", 64, 100_000),
                }
            )
        out["schedule"] = checked  # overlaps are refused by the overlay's configuration check
    return out


def _announcements(value: Any) -> list[dict[str, Any]]:
    items = _list(value, "announcements", MAX_ANNOUNCEMENTS)
    out = []
    for i, a in enumerate(items):
        where = f"announcements[{i}]"
        if not isinstance(a, dict):
            raise invalid(f"{where}: must be an object")
        unknown = set(a) - set(ANNOUNCEMENT_KEYS)
        if unknown or not {"id", "text_id", "starts", "ends"} <= set(a):
            raise invalid(f"{where}: has id, text_id, starts, ends (text_en optional) and no more")
        if not isinstance(a["id"], str) or not _ANNOUNCEMENT_ID.match(a["id"]):
            raise invalid(f"{where}.id: 1-40 of a-z, 0-9, - and _")
        item = {
            "id": a["id"],
            "text_id": _text(a["text_id"], f"{where}.text_id", MAX_ANNOUNCEMENT_TEXT),
        }
        if a.get("text_en") is not None:
            item["text_en"] = _text(a["text_en"], f"{where}.text_en", MAX_ANNOUNCEMENT_TEXT)
        try:
            starts, ends = parse_utc(a["starts"]), parse_utc(a["ends"])
        except (TypeError, ValueError, OverflowError):
            raise invalid(f"{where}: starts and ends must be ISO 8601 times") from None
        if ends <= starts:
            raise invalid(f"{where}: ends must be after starts")
        if ends - starts > dt.timedelta(days=366):
            raise invalid(f"{where}: runs at most a year")
        item["starts"], item["ends"] = iso(starts), iso(ends)
        out.append(item)
    _unique([a["id"] for a in out], "announcements")
    return out


def _garden_addresses(value: Any) -> list[str]:
    items = _list(value, "walled_garden", MAX_GARDEN_ADDRESSES)
    out = []
    for i, entry in enumerate(items):
        try:
            net = ipaddress.IPv4Network(entry, strict=False) if isinstance(entry, str) else None
        except ValueError:
            net = None
        if net is None:
            raise invalid(f"walled_garden[{i}]: {str(entry)[:60]!r} is not an IPv4 address")
        if net.prefixlen < 16:
            # A large part of the internet in the walled garden is no walled garden.
            raise invalid(f"walled_garden[{i}]: {entry!r} is larger than a /16")
        if net.is_loopback or net.is_multicast or net.is_unspecified or net.is_link_local:
            raise invalid(f"walled_garden[{i}]: {entry!r} is not a host on the internet")
        out.append(str(net) if net.prefixlen < 32 else str(net.network_address))
    _unique(out, "walled_garden")
    return out


def _dns_blocklist(value: Any) -> dict[str, Any]:
    """``{enabled, list, sha256, size, count}``: the filter's switch and the blocklist it
    uses, named by its SHA-256, size and count (the list itself travels beside the policy:
    hotspot/dnsfilter.py). On without a list: the resolver is enforced, nothing is blocked."""
    keys = {"enabled", "list", "sha256", "size", "count"}
    if not isinstance(value, dict) or set(value) - keys or "enabled" not in value:
        raise invalid("dns_blocklist: must be {enabled, list, sha256, size, count}")
    if not isinstance(value["enabled"], bool):
        raise invalid("dns_blocklist.enabled: must be true or false")
    out: dict[str, Any] = {"enabled": value["enabled"]}
    ref = value.get("list")
    if ref is not None:
        if not isinstance(ref, str) or not _LIST_REF.match(ref):
            raise invalid("dns_blocklist.list: a reference of 1-200 printable characters")
        out["list"] = ref
    sha = value.get("sha256")
    if sha is not None:
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise invalid("dns_blocklist.sha256: 64 lower-case hex digits")
        if ref is None:
            raise invalid("dns_blocklist.list: needed with sha256 (the list's name)")
        out["sha256"] = sha
        for key, most in (("size", MAX_LIST_BYTES), ("count", MAX_LIST_NAMES)):
            n = value.get(key)
            if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= most:
                raise invalid(f"dns_blocklist.{key}: a whole number from 0 to {most}")
            out[key] = n
    elif "size" in value or "count" in value:
        raise invalid("dns_blocklist: size and count go with sha256")
    return out


def validate_fields(fields: Any) -> dict[str, Any]:
    """The policy's fields, checked and normalised; :class:`PolicyRefused` naming the first
    bad one (code ``policy-invalid``)."""
    if not isinstance(fields, dict):
        raise invalid("policy must be an object")
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise invalid(f"unknown policy fields {sorted(unknown)[:5]} (known: {', '.join(FIELDS)})")
    out: dict[str, Any] = {}
    if "walled_garden" in fields:
        out["walled_garden"] = _garden_addresses(fields["walled_garden"])
    if "walled_garden_domains" in fields:
        items = _list(fields["walled_garden_domains"], "walled_garden_domains", MAX_DOMAINS)
        domains = [_domain(d, f"walled_garden_domains[{i}]") for i, d in enumerate(items)]
        _unique(domains, "walled_garden_domains")
        out["walled_garden_domains"] = domains
    if "free_tier" in fields:
        out["free_tier"] = _free_tier(fields["free_tier"])
    if "announcements" in fields:
        out["announcements"] = _announcements(fields["announcements"])
    if "ntp_servers" in fields:
        servers = _list(fields["ntp_servers"], "ntp_servers", MAX_NTP_SERVERS)
        for i, server in enumerate(servers):
            if not isinstance(server, str) or not _NTP_SERVER.match(server):
                raise invalid(f"ntp_servers[{i}]: {str(server)[:60]!r} is not a host or address")
        out["ntp_servers"] = list(servers)
    if "dns_blocklist" in fields:
        out["dns_blocklist"] = _dns_blocklist(fields["dns_blocklist"])
    return out


# -- scopes and merging (the collector) ---------------------------------------------------------


def scope_name(kind: str, name: str = "") -> str:
    """``province``, ``kecamatan:<name>`` or ``gateway:<id>``; ValueError when malformed."""
    if kind == SCOPE_PROVINCE and not name:
        return SCOPE_PROVINCE
    if kind == "kecamatan" and _KECAMATAN.match(name):
        return f"kecamatan:{name}"
    if kind == "gateway" and _GATEWAY_ID.match(name):
        return f"gateway:{name}"
    raise ValueError(f"not a scope: {kind}:{name}")


def kecamatan_scope(name: str) -> str:
    """The scope of a kecamatan as the province names it on the dashboard ("Kumpeh Ulu" →
    ``kecamatan:kumpeh-ulu``): one name for the dashboard's groups and the policy's scope.
    ValueError when nothing of the name is left."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", name.strip().lower()).strip("-_")
    return scope_name("kecamatan", slug[:63].rstrip("-_"))


def parse_scope(text: str) -> str:
    kind, _, name = text.partition(":")
    return scope_name(kind, name)


def merge_scopes(
    layers: Iterable[tuple[str, Mapping[str, Any]]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Merge the fields of scopes given from the most general to the most specific
    (province, kecamatan, village): ``(fields, sources)``, ``sources`` naming the scope each
    field came from. Rules (docs/sync-and-collector.md):

    * a field a more specific scope sets replaces the general one whole (an empty list too:
      a village may have no walled garden although the province has one);
    * ``free_tier`` merges key by key (the province sets the rates, a kecamatan only the
      daily quota, say);
    * ``announcements`` add up (the province's, then the kecamatan's, then the village's); an
      announcement with the id of a more general one replaces it.
    """
    fields: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for scope, layer in layers:
        for name, value in layer.items():
            if name == "free_tier":
                merged = dict(fields.get("free_tier", {}))
                merged.update(copy.deepcopy(value))
                fields["free_tier"] = merged
                prior = sources.get("free_tier")
                sources["free_tier"] = scope if prior is None else f"{prior}+{scope}"
            elif name == "announcements":
                by_id = {a["id"]: a for a in fields.get("announcements", [])}
                for a in value:
                    by_id[a["id"]] = copy.deepcopy(a)
                fields["announcements"] = list(by_id.values())
                prior = sources.get("announcements")
                sources["announcements"] = scope if prior is None else f"{prior}+{scope}"
            else:
                fields[name] = copy.deepcopy(value)
                sources[name] = scope
    for name in sources:
        if len(sources[name]) > 80:  # three scopes at most, but a name is up to 63 long
            sources[name] = sources[name][:80]
    return fields, sources


# -- the gateway's side -------------------------------------------------------------------------


def overlay(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The policy's fields as configuration keys (a mapping like the TOML file's), to be
    merged over the local configuration (:func:`hotspot.config.merge`)."""
    out: dict[str, Any] = {}
    net: dict[str, Any] = {}
    if "walled_garden" in fields:
        net["walled_garden"] = list(fields["walled_garden"])
    if "walled_garden_domains" in fields:
        net["walled_garden_domains"] = list(fields["walled_garden_domains"])
    if net:
        out["network"] = net
    if fields.get("free_tier"):
        out["tiers"] = {FREE_TIER: copy.deepcopy(dict(fields["free_tier"]))}
    if "ntp_servers" in fields:
        out["gateway"] = {"ntp_servers": list(fields["ntp_servers"])}
    if "dns_blocklist" in fields:
        bl = fields["dns_blocklist"]
        out["dns_filter"] = {
            "enabled": bool(bl["enabled"]),
            "list_sha256": bl.get("sha256", ""),
            "list_size": bl.get("size", 0),
            "list_count": bl.get("count", 0),
        }
    return out


def store(path: str | os.PathLike[str], envelope: Mapping[str, str]) -> None:
    """Keep ``envelope`` as the last good policy: a temporary file beside it, fsynced, renamed
    over the old one, the folder fsynced. A power cut at any point leaves the old file or the
    new one, whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    data = canonical(dict(envelope)).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    dirfd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def inbox_path(state_file: str | os.PathLike[str]) -> Path:
    """Where the sync agent leaves a fetched envelope for the gateway: beside the last good
    file, in the state folder both may write (the agent is not in the control socket's
    group, on purpose: docs/security.md, least privilege)."""
    return Path(state_file).with_name("policy-inbox.json")


def read_inbox(state_file: str | os.PathLike[str]) -> dict[str, str] | None:
    """Take the envelope the agent left (the file is removed whatever it held); None when
    there is none. Read without following a link and at most MAX_ENVELOPE_BYTES + 1 bytes:
    whoever can write the folder cannot make the gateway read another file or a huge one."""
    path = inbox_path(state_file)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symbolic link (ELOOP), a FIFO…
        path.unlink(missing_ok=True)
        raise invalid(f"the inbox {path} is not a plain file ({exc.strerror})") from None
    try:
        raw = os.read(fd, MAX_ENVELOPE_BYTES + 1)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return parse_envelope(raw)


def drop_in_inbox(state_file: str | os.PathLike[str], envelope: Mapping[str, str]) -> None:
    """The agent's side of :func:`read_inbox`: written whole (temporary file, rename)."""
    target = inbox_path(state_file)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(canonical(dict(envelope)).encode())
    os.replace(tmp, target)


def document_version(envelope: Mapping[str, str]) -> int | None:
    """The version an envelope's document claims (bookkeeping only: not verified)."""
    try:
        version = json.loads(envelope["document"]).get("version")
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def load_stored(path: str | os.PathLike[str]) -> dict[str, str] | None:
    """The last good envelope as kept by :func:`store`; None when there is none. A file
    that cannot be read as an envelope raises :class:`PolicyRefused` (the caller logs it and
    runs on the local configuration)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise invalid(f"cannot read {path}: {exc.strerror}") from None
    return parse_envelope(raw)


def stored_version(path: str | os.PathLike[str]) -> int | None:
    """The version of the last good policy, read without checking the signature (the
    health report: the gateway checked it before writing it); None when none or unreadable."""
    try:
        env = load_stored(path)
        if env is None:
            return None
        version = json.loads(env["document"]).get("version")
    except (PolicyRefused, ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def effective_config(config: Config, policy: Policy | None) -> Config:
    """The local configuration with the policy's fields laid over it, validated whole (the
    same checks as the file's: a schedule whose windows overlap, a free tier the local file
    lacks keys for…); :class:`PolicyRefused` naming the key when the result is not valid."""
    if policy is None:
        return config
    lan = config.network.lan_network
    for entry in policy.fields.get("walled_garden", ()):
        if ipaddress.IPv4Network(entry).overlaps(lan):
            raise invalid(f"walled_garden: {entry} overlaps this village's LAN {lan}")
    try:
        return validate_config(
            merge(dict(config.raw), overlay(policy.fields)), source=config.source
        )
    except ConfigError as exc:
        raise invalid(f"the configuration with this policy is not valid: {exc.message}") from None


def announcements_from_file(config: Config, *, apart: bool = False) -> list[dict[str, Any]]:
    """The province's announcements of the last good file, verified again with the pinned
    key (hotspot/announcements.py shows those running); [] when there is none. ``apart``:
    the signature checked by a child interpreter (:func:`verify`)."""
    if not config.policy.public_key:
        return []
    try:
        envelope = load_stored(config.policy.state_file)
        if envelope is None:
            return []
        policy = verify(envelope, config.policy.public_key, config.sync.gateway_id, apart=apart)
    except PolicyRefused:
        return []
    return [dict(a) for a in policy.fields.get("announcements", [])]


def effective_from_file(config: Config, *, apart: bool = False) -> tuple[Config, int]:
    """(the effective configuration, the policy's version) from the last good file, verified
    again with the pinned key; ``(config, 0)`` when there is none, no key is pinned, or the
    file does not verify (the gateway logs why; a reader such as the portal need not)."""
    if not config.policy.public_key:
        return config, 0
    try:
        envelope = load_stored(config.policy.state_file)
        if envelope is None:
            return config, 0
        policy = verify(envelope, config.policy.public_key, config.sync.gateway_id, apart=apart)
        return effective_config(config, policy), policy.version
    except PolicyRefused:
        return config, 0
