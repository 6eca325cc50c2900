"""The protocol between a gateway's sync agent and the provincial collector.

A report is ``POST /ingest/v1/batch`` with a gzip-compressed JSON body::

    {"v": 1, "gateway": "<id>", "batch": "<idempotency key>", "created_at": "…Z",
     "records": [{"kind": "usage", …}, {"kind": "health", …}, …]}

and these headers::

    Content-Type: application/json        Content-Encoding: gzip
    X-Hotspot-Gateway: <id>               X-Hotspot-Timestamp: <unix seconds>
    X-Hotspot-Nonce: <random hex>         Idempotency-Key: <the batch key>
    X-Hotspot-Signature: v1=<hex HMAC-SHA256(secret, signing_input)>

``signing_input`` is ``"v1\\n<gateway>\\n<timestamp>\\n<nonce>\\n<idempotency key>\\n"`` followed
by the body bytes *as sent* (compressed), so the collector checks the signature before it
inflates anything. Both sides import this module, so they validate records identically: the
agent never queues a record the collector would refuse.
"""

from __future__ import annotations

import datetime as dt
import enum
import gzip
import hashlib
import hmac
import json
import re
import secrets
import zlib
from collections.abc import Mapping
from typing import Any

from hotspot.timeutil import iso, parse_utc
from hotspot.version import SOFTWARE_VERSION

PROTOCOL = 1
INGEST_PATH = "/ingest/v1/batch"
H_GATEWAY = "X-Hotspot-Gateway"
H_TIMESTAMP = "X-Hotspot-Timestamp"
H_NONCE = "X-Hotspot-Nonce"
H_SIGNATURE = "X-Hotspot-Signature"
H_IDEMPOTENCY = "Idempotency-Key"


class RecordKind(enum.StrEnum):
    """What a record reports (its ``kind``)."""

    USAGE = "usage"  # one device's hour
    HEALTH = "health"  # one sample of the gateway's own health
    SALES = "sales"  # one package's vouchers sold in one month
    GATEWAY = "gateway"  # the gateway's description (village, time zone, version)
    OUTAGE = "outage"  # one window of the uplink being down (start, end or null, cause)


KINDS = tuple(k.value for k in RecordKind)
MAX_RECORDS = 20_000  # per batch

_GATEWAY_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,62}$")
_KEY = re.compile(r"^[0-9a-f]{32}$")
_NONCE = re.compile(r"^[0-9a-f]{16,64}$")
_CLIENT = re.compile(r"^[0-9a-f]{16}$")
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_TZ = re.compile(r"^[A-Za-z0-9_+/-]{1,64}$")
_VERSION = re.compile(r"^[0-9A-Za-z.+_-]{1,32}$")
_BIG = 1 << 62


class WireError(ValueError):
    """A body or record that does not follow the protocol (the collector answers 400)."""


class TooLarge(WireError):
    """A body that inflates past the cap (the collector answers 413)."""


# -- time -------------------------------------------------------------------------------------


def parse_iso(value: Any, what: str = "time") -> dt.datetime:
    """A time field of a body or record as naive UTC (:func:`hotspot.timeutil.parse_utc`),
    or WireError naming the field."""
    if not isinstance(value, str) or len(value) > 40:
        raise WireError(f"{what} must be an ISO 8601 time")
    try:
        return parse_utc(value)
    except ValueError:
        raise WireError(f"{what}: not an ISO 8601 time: {value[:40]!r}") from None


# -- signing ----------------------------------------------------------------------------------


def signing_input(gateway: str, timestamp: str, nonce: str, key: str, body: bytes) -> bytes:
    return f"v1\n{gateway}\n{timestamp}\n{nonce}\n{key}\n".encode() + body


def sign(secret: str, gateway: str, timestamp: str, nonce: str, key: str, body: bytes) -> str:
    mac = hmac.new(
        secret.encode(), signing_input(gateway, timestamp, nonce, key, body), hashlib.sha256
    )
    return "v1=" + mac.hexdigest()


def signed_headers(
    secret: str, gateway: str, timestamp: str, key: str, body: bytes
) -> dict[str, str]:
    """The headers of one signed request of a gateway's (ingest, policy, certificate): a new
    nonce each time, ``key`` the idempotency key the signature covers with the body."""
    nonce = secrets.token_hex(16)
    return {
        "User-Agent": "hotspot-desa-sync/1",
        H_GATEWAY: gateway,
        H_TIMESTAMP: timestamp,
        H_NONCE: nonce,
        H_IDEMPOTENCY: key,
        H_SIGNATURE: sign(secret, gateway, timestamp, nonce, key, body),
    }


def verify(
    secret: str, signature: str, gateway: str, timestamp: str, nonce: str, key: str, body: bytes
) -> bool:
    expected = sign(secret, gateway, timestamp, nonce, key, body)
    return hmac.compare_digest(expected.encode(), (signature or "").encode())


def ack_input(gateway: str, nonce: str, key: str, time_ms: int) -> bytes:
    """What the collector signs in its acknowledgement: the request's own nonce (so an old
    acknowledgement replayed to a later request does not verify) and its clock."""
    return f"v1-ack\n{gateway}\n{nonce}\n{key}\n{time_ms}\n".encode()


def sign_ack(secret: str, gateway: str, nonce: str, key: str, time_ms: int) -> str:
    mac = hmac.new(secret.encode(), ack_input(gateway, nonce, key, time_ms), hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_ack(secret: str, answer: Mapping[str, Any], gateway: str, nonce: str, key: str) -> int:
    """The collector's time (Unix milliseconds) from an acknowledgement whose ``time_sig``
    is the collector's HMAC over this request's nonce and key; WireError otherwise (no time,
    a forged or replayed one: the gateway's clock must never follow it)."""
    time_ms = answer.get("time_ms")
    signature = answer.get("time_sig")
    if isinstance(time_ms, bool) or not isinstance(time_ms, int) or not 0 < time_ms < _BIG:
        raise WireError("the acknowledgement carries no time")
    if not isinstance(signature, str):
        raise WireError("the acknowledgement's time is not signed")
    expected = sign_ack(secret, gateway, nonce, key, time_ms)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise WireError("the acknowledgement's time signature does not match")
    return time_ms


def check_headers(headers: Mapping[str, str]) -> tuple[str, str, str, str, str]:
    """(gateway, timestamp, nonce, idempotency key, signature), each well-formed, or WireError."""
    gateway = headers.get(H_GATEWAY, "")
    ts = headers.get(H_TIMESTAMP, "")
    nonce = headers.get(H_NONCE, "")
    key = headers.get(H_IDEMPOTENCY, "")
    sig = headers.get(H_SIGNATURE, "")
    if not _GATEWAY_ID.match(gateway):
        raise WireError(f"missing or malformed {H_GATEWAY}")
    if not re.fullmatch(r"\d{1,12}", ts):
        raise WireError(f"missing or malformed {H_TIMESTAMP}")
    if not _NONCE.match(nonce):
        raise WireError(f"missing or malformed {H_NONCE}")
    if not _KEY.match(key):
        raise WireError(f"missing or malformed {H_IDEMPOTENCY}")
    if not re.fullmatch(r"v1=[0-9a-f]{64}", sig):
        raise WireError(f"missing or malformed {H_SIGNATURE}")
    return gateway, ts, nonce, key, sig


# -- bodies -----------------------------------------------------------------------------------


def compress(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def inflate(body: bytes, cap: int) -> bytes:
    """Gunzip ``body`` but never produce more than ``cap`` bytes (gzip bombs → TooLarge);
    truncated or corrupt input → WireError."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(body, cap + 1)
    except zlib.error as exc:
        raise WireError(f"body is not valid gzip ({exc})") from None
    if len(out) > cap or d.unconsumed_tail:
        raise TooLarge(f"body inflates to more than {cap} bytes")
    if not d.eof:
        raise WireError("body is truncated gzip")
    if d.unused_data:
        raise WireError("trailing data after the gzip stream")
    return out


def encode_body(
    gateway: str, key: str, created_at: dt.datetime, records: list[Mapping[str, Any]]
) -> bytes:
    return json.dumps(
        {
            "v": PROTOCOL,
            "gateway": gateway,
            "batch": key,
            "created_at": iso(created_at),
            "records": list(records),
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def decode_body(raw: bytes, gateway: str, key: str) -> list[dict[str, Any]]:
    """Parse and validate a whole inflated body; every record is checked before any is used."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"body is not JSON ({exc.__class__.__name__})") from None
    if not isinstance(doc, dict) or set(doc) != {"v", "gateway", "batch", "created_at", "records"}:
        raise WireError("body must be an object with v, gateway, batch, created_at, records")
    if doc["v"] != PROTOCOL:
        raise WireError(f"unsupported protocol version {doc['v']!r}")
    if doc["gateway"] != gateway:
        raise WireError("body's gateway differs from the signed header")
    if doc["batch"] != key:
        raise WireError("body's batch differs from the Idempotency-Key header")
    parse_iso(doc["created_at"], "created_at")
    records = doc["records"]
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise WireError(f"records must be a list of at most {MAX_RECORDS}")
    out = []
    for i, rec in enumerate(records):
        try:
            out.append(validate_record(rec))
        except WireError as exc:
            raise WireError(f"records[{i}]: {exc}") from None
    return out


# -- records ----------------------------------------------------------------------------------


def _int(rec: Mapping[str, Any], name: str, lo: int = 0, hi: int = _BIG) -> int:
    v = rec.get(name)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise WireError(f"{name} must be a whole number from {lo} to {hi}")
    return v


def _num(
    rec: Mapping[str, Any], name: str, lo: float, hi: float, optional: bool = False
) -> float | None:
    v = rec.get(name)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise WireError(f"{name} must be a number from {lo} to {hi}")
    return float(v)


def _str(rec: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    v = rec.get(name)
    if not isinstance(v, str) or not pattern.match(v):
        raise WireError(f"{name} is missing or malformed")
    return v


def _hour(value: Any) -> dt.datetime:
    ts = parse_iso(value, "period_start")
    if ts.minute or ts.second or ts.microsecond:
        raise WireError("period_start must be the start of an hour")
    if not dt.datetime(2000, 1, 1) <= ts <= dt.datetime(2200, 1, 1):
        raise WireError("period_start out of range")
    return ts


# A health record's fields (besides its kind), in the order the collector shows them.
HEALTH_FIELDS = (
    "sampled_at",
    "cpu_pct",
    "load1",
    "load5",
    "load15",
    "mem_pct",
    "disk_pct",
    "disk_free_mb",
    "temp_c",
    "uptime_s",
    "uplink_ok",
    "uplink_ms",
    "clients_online",
    "backlog",
    "throttled",
    "software_version",
    "clock_synced",
    "clock_source",
    "policy_version",
    "cert_name",
    "cert_not_after",
)
# Keys a record may leave out (added after protocol 1 shipped: an older gateway's batches
# still ingest; the collector stores None for them). A Raspberry Pi's ``throttled`` bits; the
# ``software_version``; a health record's clock: ``clock_synced`` (the kernel's word, null
# when it could not be asked) and ``clock_source`` (ntp, the collector's time, or none); the
# ``policy_version`` the gateway runs (issue #15: sent only when it runs one). A usage
# record's ``key_period``: the pseudonym key's period its client was named in. The HTTPS
# certificate the gateway has installed (``cert_name``, ``cert_not_after``; issue #15: sent
# only with one, expired included), beside the one the collector issued.
OPTIONAL: dict[str, frozenset[str]] = {
    "usage": frozenset({"key_period"}),
    "health": frozenset(
        {
            "throttled",
            "software_version",
            "clock_synced",
            "clock_source",
            "policy_version",
            "cert_name",
            "cert_not_after",
        }
    ),
}
CLOCK_SOURCES = ("ntp", "collector", "none")
_CERT_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*$")
_KEY_PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])(-\d{2})?$|^\d{4}-W\d{2}$")

FIELDS = {
    "usage": {"kind", "client", "period_start", "seconds", "bytes_down", "bytes_up", "key_period"},
    "health": {"kind", *HEALTH_FIELDS},
    "sales": {"kind", "month", "package", "count", "rupiah", "rev"},
    "gateway": {"kind", "rev", "village", "timezone", "version"},
    "outage": {"kind", "started_at", "ended_at", "cause", "rev"},
}
OUTAGE_CAUSES = ("link", "unreachable")


def validate_record(rec: Any) -> dict[str, Any]:
    """A record, checked and normalised (times as naive UTC datetimes)."""
    if not isinstance(rec, dict):
        raise WireError("a record must be an object")
    kind = rec.get("kind")
    if kind not in FIELDS:
        raise WireError(f"unknown kind {str(kind)[:20]!r}")
    extra = set(rec) - FIELDS[kind]
    missing = FIELDS[kind] - set(rec) - OPTIONAL.get(kind, frozenset())
    if extra or missing:
        raise WireError(
            f"{kind} record: unknown keys {sorted(extra)[:5]}, missing {sorted(missing)[:5]}"
        )
    if kind == "usage":
        out: dict[str, Any] = {
            "kind": kind,
            "client": _str(rec, "client", _CLIENT),
            "period_start": _hour(rec["period_start"]),
            "seconds": _int(rec, "seconds", 0, 86_400),
            "bytes_down": _int(rec, "bytes_down"),
            "bytes_up": _int(rec, "bytes_up"),
        }
        if "key_period" in rec:
            out["key_period"] = _str(rec, "key_period", _KEY_PERIOD)
        return out
    if kind == "health":
        ok = rec.get("uplink_ok")
        if ok is not None and not isinstance(ok, bool):
            raise WireError("uplink_ok must be true, false or null")
        synced = rec.get("clock_synced")
        if synced is not None and not isinstance(synced, bool):
            raise WireError("clock_synced must be true, false or null")
        source = rec.get("clock_source")
        if source is not None and source not in CLOCK_SOURCES:
            raise WireError(f"clock_source must be one of {', '.join(CLOCK_SOURCES)} or null")
        return {
            "kind": kind,
            "sampled_at": parse_iso(rec["sampled_at"], "sampled_at"),
            "cpu_pct": _num(rec, "cpu_pct", 0, 100),
            "load1": _num(rec, "load1", 0, 10_000),
            "load5": _num(rec, "load5", 0, 10_000),
            "load15": _num(rec, "load15", 0, 10_000),
            "mem_pct": _num(rec, "mem_pct", 0, 100),
            "disk_pct": _num(rec, "disk_pct", 0, 100),
            "disk_free_mb": _int(rec, "disk_free_mb", 0, 1 << 40),
            "temp_c": _num(rec, "temp_c", -100, 250, optional=True),
            "uptime_s": _int(rec, "uptime_s", 0, 1 << 40),
            "uplink_ok": ok,
            "uplink_ms": _num(rec, "uplink_ms", 0, 600_000, optional=True),
            "clients_online": _int(rec, "clients_online", 0, 1 << 20),
            "backlog": _int(rec, "backlog", 0, 1 << 40),
            # A Raspberry Pi's get_throttled bits (None: not a Pi, or not said)
            "throttled": None
            if rec.get("throttled") is None
            else _int(rec, "throttled", 0, 0xFFFFFFFF),
            "software_version": (
                None
                if rec.get("software_version") is None
                else _str(rec, "software_version", SOFTWARE_VERSION)
            ),
            # always present once validated (null when not sent), so that samples of old and
            # new gateways are stored alike
            "clock_synced": synced,
            "clock_source": source,
            # The province's policy the gateway runs (issue #15); None: none, or older.
            "policy_version": None
            if rec.get("policy_version") is None
            else _int(rec, "policy_version", 1, (1 << 53) - 1),
            # The certificate installed (issue #15); None: none, or an older gateway.
            "cert_name": None
            if rec.get("cert_name") is None
            else _str(rec, "cert_name", _CERT_NAME),
            "cert_not_after": None
            if rec.get("cert_not_after") is None
            else parse_iso(rec["cert_not_after"], "cert_not_after"),
        }
    if kind == "sales":
        month = _str(rec, "month", _MONTH)
        return {
            "kind": kind,
            "month": month,
            "package": _str(rec, "package", _PACKAGE),
            "count": _int(rec, "count", 0, 1 << 31),
            "rupiah": _int(rec, "rupiah", 0, 1 << 50),
            "rev": _int(rec, "rev", 1),
        }
    if kind == "outage":
        started = parse_iso(rec["started_at"], "started_at")
        ended = None if rec["ended_at"] is None else parse_iso(rec["ended_at"], "ended_at")
        if ended is not None and ended < started:
            raise WireError("an outage cannot end before it started")
        if rec["cause"] not in OUTAGE_CAUSES:
            raise WireError(f"cause must be one of {', '.join(OUTAGE_CAUSES)}")
        return {
            "kind": kind,
            "started_at": started,
            "ended_at": ended,
            "cause": rec["cause"],
            "rev": _int(rec, "rev", 1),
        }
    village = rec.get("village")
    if not isinstance(village, str) or not 0 < len(village) <= 100:
        raise WireError("village must be a string of 1 to 100 characters")
    return {
        "kind": kind,
        "rev": _int(rec, "rev", 1),
        "village": village,
        "timezone": _str(rec, "timezone", _TZ),
        "version": _str(rec, "version", _VERSION),
    }


def dump_record(rec: Mapping[str, Any]) -> str:
    """A record as stored in the outbox and sent (times back to ISO strings)."""
    out = {k: (iso(v) if isinstance(v, dt.datetime) else v) for k, v in rec.items()}
    return json.dumps(out, separators=(",", ":"), sort_keys=True)
