"""The control socket's protocol: every request and reply, defined once.

One JSON object per line each way over a Unix stream socket::

    → {"op": "authorize", "ip": "10.10.0.42", "tier": "free"}
    ← {"ok": true, "result": {...}}
    ← {"ok": false, "error": {"code": "quota-exhausted", "message": "..."}}

A request is one of the ``*Request`` dataclasses below; :func:`parse_request` is the only
place that checks what arrives on the socket (types, ranges, required and unknown fields) and
raises :class:`~hotspot.errors.UsageError` (``bad-request``) with a message naming the field.
The gateway's dispatcher calls it once per line; the client sends ``request.to_wire()``.

Each request class is generic in its result, a TypedDict (or a list of them), so
``ControlClient.send(ClientRequest(ip=...))`` is typed as :class:`ClientInfo`.
Requests built in code are trusted to the type checker; only the wire is checked at run time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, NotRequired, TypeAlias, TypedDict, TypeVar

from hotspot.errors import ErrorCode, UsageError
from hotspot.mac import normalize_mac
from hotspot.model import EndReason, Source
from hotspot.timeutil import iso, naive_utc, parse_utc

MAX_LINE = 64 * 1024  # a request
MAX_REPLY = 64 * 1024 * 1024  # a reply (a list of thousands of sessions is a few hundred KB)

MAX_MINUTES = 525_600  # a year: an authorization or an extension
MAX_BYTES_LIMIT = 1 << 50
MAX_VOUCHER_ID = 1 << 62  # fits SQLite's signed 64-bit integer
MAX_TIER_NAME = 64
MAX_REASON = 1000  # the engine keeps the first 200 characters
MAX_LABEL = 80  # a trusted device's label
MAX_OPERATOR_NAME = 64
# Far enough for any voucher, near enough that adding an extension never overflows datetime.
LATEST_EXPIRY = dt.datetime(9000, 1, 1)


# -- results -----------------------------------------------------------------------------------


class PingResult(TypedDict):
    pong: bool
    version: str


class StatusResult(TypedDict):
    version: str
    uptime_seconds: int
    village: str
    table: str
    lan_interface: str
    wan_interface: str
    leaf_qdisc: str
    sessions: int
    ticks: int
    last_tick_error: str | None
    tiers: dict[str, dict[str, Any]]


class SessionInfo(TypedDict):
    """A session, running or ended. Times are ISO 8601 UTC with a ``Z``."""

    id: int
    mac: str
    ip: str
    tier: str
    source: str
    state: Literal["active", "ended"]
    started_at: str | None
    expires_at: str | None
    ended_at: str | None
    end_reason: str | None
    down_kbps: int  # the rates in force now (a speed schedule's window, if one is on)
    up_kbps: int
    speed_window: Literal["faster", "slower"] | None  # a window of the tier's schedule is on
    speed_until: str | None  # … until then
    bytes_down: int
    bytes_up: int
    seconds_remaining: int | None
    bytes_remaining: int | None
    bytes_limit: int | None
    voucher_id: int | None
    rate_down_bps: int
    rate_up_bps: int
    # An online-time voucher's session: the voucher's online seconds left (None otherwise).
    online_seconds_remaining: NotRequired[int | None]
    last_activity_at: str | None


class Allowance(TypedDict):
    """What is left of today's fair-use allowance on one tier (None: unlimited)."""

    seconds_left: int | None
    bytes_left: int | None
    seconds_used: int | None
    bytes_used: int | None
    resets_at: str | None
    exhausted: bool


class ClientInfo(TypedDict):
    """Everything the portal shows a device."""

    ip: str | None
    mac: str | None
    blocked: bool
    session: SessionInfo | None
    last_session: SessionInfo | None
    allowance: dict[str, Allowance]


class BlockResult(TypedDict):
    mac: str
    blocked: Literal[True]
    ended_session: int | None


class UnblockResult(TypedDict):
    mac: str
    blocked: Literal[False]


class BlockedDevice(TypedDict):
    mac: str
    blocked_at: str | None
    reason: str | None


class TrustedDeviceInfo(TypedDict):
    """A device on the trusted list, and whether it has a session now."""

    mac: str
    label: str
    tier: str
    created_at: str | None
    created_by: str | None
    blocked: bool
    session: int | None  # the running session's id
    ip: str | None  # the running session's address


class UntrustResult(TypedDict):
    mac: str
    ended_session: int | None


class ReconcileResult(TypedDict):
    changed: str  # a summary of what had to change; empty when the kernel already matched


# -- the envelope ------------------------------------------------------------------------------


class ErrorBody(TypedDict):
    code: str
    message: str


class OkReply(TypedDict):
    ok: Literal[True]
    result: Any


class ErrorReply(TypedDict):
    ok: Literal[False]
    error: ErrorBody


Reply: TypeAlias = OkReply | ErrorReply


def ok_reply(result: Any) -> OkReply:
    return {"ok": True, "result": result}


def error_reply(code: ErrorCode, message: str) -> ErrorReply:
    return {"ok": False, "error": {"code": code.value, "message": message}}


def encode(message: Mapping[str, Any]) -> bytes:
    """One line of the protocol."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# -- reading a request's fields ----------------------------------------------------------------

E = TypeVar("E", bound=enum.Enum)
V = TypeVar("V")


def bad(field: str, problem: str) -> UsageError:
    return UsageError(f"{field}: {problem}")


def required(field: str, value: V | None) -> V:
    """``value``, read from ``field``; refused as missing if the request left it out."""
    if value is None:
        raise bad(field, "missing")
    return value


class Fields:
    """The arguments of one request as they came off the wire, read one field at a time.
    Every reader checks type and range and names the field when it refuses; :meth:`finish`
    refuses whatever no reader asked for."""

    def __init__(self, op: str, raw: Mapping[str, object]):
        self.op = op
        self._raw = {k: v for k, v in raw.items() if k != "op"}
        self._read: set[str] = set()

    def _get(self, name: str) -> object:
        self._read.add(name)
        return self._raw.get(name)

    def finish(self) -> None:
        unknown = sorted(set(self._raw) - self._read)
        if unknown:
            raise bad(
                unknown[0],
                f"not an argument of {self.op!r}"
                + (f" (nor are {', '.join(unknown[1:])})" if unknown[1:] else ""),
            )

    def text(self, name: str, max_len: int) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad(name, "must be text")
        if len(value) > max_len:
            raise bad(name, f"at most {max_len} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800") would fail in the database
            raise bad(name, "not valid text") from None
        return value

    def whole(self, name: str, lo: int, hi: int) -> int | None:
        value = self._get(name)
        if value is None:
            return None
        # bool is an int to Python, and a float (NaN, 1e999, 1.5) is never a whole number here
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(name, "must be a whole number")
        if not lo <= value <= hi:
            raise bad(name, f"must be from {lo} to {hi}")
        return value

    def flag(self, name: str) -> bool | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise bad(name, "must be true or false")
        return value

    def ipv4(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad(name, "must be an IPv4 address as text")
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:  # AddressValueError is a ValueError
            raise bad(name, f"not an IPv4 address: {value[:40]!r}") from None

    def mac(self, name: str) -> str | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad(name, "must be a MAC address as text")
        if len(value) > 64:
            raise bad(name, "not a MAC address (too long)")
        try:
            return normalize_mac(value)
        except UsageError as exc:
            raise bad(name, exc.message) from None

    def utc_time(self, name: str) -> dt.datetime | None:
        """ISO 8601 → naive UTC; a time without a zone is taken as UTC."""
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise bad(name, "must be an ISO 8601 time as text")
        try:
            ts = parse_utc(value)
        except ValueError:
            raise bad(name, f"not an ISO 8601 time: {value[:40]!r}") from None
        except OverflowError:  # 9999-12-31T23:59:59-23:59 is after the last datetime
            raise bad(name, "out of range") from None
        if ts >= LATEST_EXPIRY:
            raise bad(name, f"must be before {LATEST_EXPIRY.year}")
        return ts

    def choice(self, name: str, kind: type[E]) -> E | None:
        value = self._get(name)
        if value is None:
            return None
        for member in kind:
            if member.value == value:
                return member
        known = ", ".join(str(m.value) for m in kind)
        raise bad(name, f"must be one of {known}")

    def ip_or_mac(self) -> tuple[str | None, str | None]:
        ip, mac = self.ipv4("ip"), self.mac("mac")
        if ip is None and mac is None:
            raise bad("ip", "give ip or mac")
        return ip, mac


# -- requests ----------------------------------------------------------------------------------

R = TypeVar("R")


def _wire_value(value: object) -> object:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return iso(naive_utc(value), exact=True)
    return value


@dataclass(frozen=True)
class Request(Generic[R]):
    """A control request whose reply's result is an ``R``."""

    op: ClassVar[str]

    @classmethod
    def read(cls, fields: Fields) -> Request[R]:
        """Build the request from checked fields (a request without arguments has none)."""
        return cls()

    def to_wire(self) -> dict[str, object]:
        out: dict[str, object] = {"op": self.op}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = _wire_value(value)
        return out


@dataclass(frozen=True)
class PingRequest(Request[PingResult]):
    op = "ping"


@dataclass(frozen=True)
class StatusRequest(Request[StatusResult]):
    op = "status"


@dataclass(frozen=True)
class AuthorizeRequest(Request[SessionInfo]):
    """Let a device out. The session ends at ``expires_at`` if given, else after ``minutes``,
    else after the tier's session length; ``bytes_limit`` caps its data (a voucher's whole
    quota with a ``voucher_id``). The MAC is looked up by the gateway unless an operator
    names both. ``expect_mac`` (with ``ip`` alone): refused with ``conflict``, nothing done,
    unless the MAC the gateway finds at ``ip`` is this one — the portal's, which linked that
    MAC to the device's identity from its splash's answer instead of asking again."""

    op = "authorize"
    ip: str | None = None
    mac: str | None = None
    tier: str = "free"
    source: Source = Source.FREE
    minutes: int | None = None
    expires_at: dt.datetime | None = None
    bytes_limit: int | None = None
    voucher_id: int | None = None
    expect_mac: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> AuthorizeRequest:
        ip, mac = fields.ip_or_mac()
        expect_mac = fields.mac("expect_mac")
        if expect_mac is not None and (ip is None or mac is not None):
            raise bad("expect_mac", "only with ip, and not with mac")
        minutes = fields.whole("minutes", 0, MAX_MINUTES)
        expires_at = fields.utc_time("expires_at")
        if minutes is not None and expires_at is not None:
            raise bad("minutes", "give minutes or expires_at, not both")
        tier = fields.text("tier", MAX_TIER_NAME)
        return cls(
            ip=ip,
            mac=mac,
            tier="free" if tier is None else tier,
            source=_not_trusted(fields.choice("source", Source) or Source.FREE),
            minutes=minutes,
            expires_at=expires_at,
            bytes_limit=fields.whole("bytes_limit", 1, MAX_BYTES_LIMIT),
            voucher_id=fields.whole("voucher_id", 1, MAX_VOUCHER_ID),
            expect_mac=expect_mac,
        )


def _not_trusted(source: Source) -> Source:
    """Only the gateway makes trusted sessions (for the devices on its list): a request
    cannot claim the source and its freedom from allowances and timeouts."""
    if source is Source.TRUSTED:
        raise bad("source", "trusted sessions are made by the gateway; use the trust request")
    return source


MAX_KBPS = 10_000_000
MAX_RADIUS_NAME = 253  # one attribute's value
MAX_CLASSES = 4 * (2 * 253 + 1)  # up to four Class values, hex, comma-separated


@dataclass(frozen=True)
class RadiusAuthorizeRequest(Request[SessionInfo]):
    """Let a device out on what a RADIUS server granted its account (issue #16): the portal
    asked the server, the gateway opens the session with these limits, keeps its accounting
    (Start, Interim-Update, Stop) and answers the server's CoA and Disconnect for it. A limit
    left out is the tier's; ``offline`` = 1 when the grant came from the login cache."""

    op = "radius-authorize"
    ip: str
    username: str
    tier: str
    expires_at: dt.datetime | None = None
    idle_minutes: int | None = None
    down_kbps: int | None = None
    up_kbps: int | None = None
    bytes_limit: int | None = None
    classes: str | None = None
    interim_seconds: int | None = None
    offline: int = 0

    @classmethod
    def read(cls, fields: Fields) -> RadiusAuthorizeRequest:
        classes = fields.text("classes", MAX_CLASSES)
        if classes and any(
            not c or len(c) % 2 or any(ch not in "0123456789abcdef" for ch in c)
            for c in classes.split(",")
        ):
            raise bad("classes", "must be lowercase hex values separated by commas")
        return cls(
            ip=required("ip", fields.ipv4("ip")),
            username=required("username", fields.text("username", MAX_RADIUS_NAME)),
            tier=required("tier", fields.text("tier", MAX_TIER_NAME)),
            expires_at=fields.utc_time("expires_at"),
            idle_minutes=fields.whole("idle_minutes", 0, MAX_MINUTES),
            down_kbps=fields.whole("down_kbps", 1, MAX_KBPS),
            up_kbps=fields.whole("up_kbps", 1, MAX_KBPS),
            bytes_limit=fields.whole("bytes_limit", 1, MAX_BYTES_LIMIT),
            classes=classes or None,
            interim_seconds=fields.whole("interim_seconds", 10, 86_400),
            offline=fields.whole("offline", 0, 1) or 0,
        )


@dataclass(frozen=True)
class DeauthorizeRequest(Request[SessionInfo]):
    """End a device's running session, recording ``reason``."""

    op = "deauthorize"
    ip: str | None = None
    mac: str | None = None
    reason: EndReason = EndReason.KICK

    @classmethod
    def read(cls, fields: Fields) -> DeauthorizeRequest:
        ip, mac = fields.ip_or_mac()
        return cls(ip=ip, mac=mac, reason=fields.choice("reason", EndReason) or EndReason.KICK)


@dataclass(frozen=True)
class ClientRequest(Request[ClientInfo]):
    """Who a device is, its session and its allowances. ``brief``: who it is (MAC, blocked)
    and its running session only — ``allowance`` empty, ``last_session`` None — what a
    login's form needs, without reading the usage of every tier (the portal's POSTs)."""

    op = "client"
    ip: str | None = None
    mac: str | None = None
    brief: bool | None = None  # None: not sent (the whole answer, as before)

    @classmethod
    def read(cls, fields: Fields) -> ClientRequest:
        ip, mac = fields.ip_or_mac()
        return cls(ip=ip, mac=mac, brief=fields.flag("brief"))


@dataclass(frozen=True)
class ExtendRequest(Request[SessionInfo]):
    """Give a running session ``minutes`` more."""

    op = "extend"
    minutes: int
    ip: str | None = None
    mac: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> ExtendRequest:
        ip, mac = fields.ip_or_mac()
        minutes = required("minutes", fields.whole("minutes", 1, MAX_MINUTES))
        return cls(ip=ip, mac=mac, minutes=minutes)


@dataclass(frozen=True)
class ListRequest(Request[list[SessionInfo]]):
    """Every running session, oldest first."""

    op = "list"


@dataclass(frozen=True)
class BlockRequest(Request[BlockResult]):
    """Never let a device out again (ends its running session)."""

    op = "block"
    mac: str
    reason: str = ""

    @classmethod
    def read(cls, fields: Fields) -> BlockRequest:
        mac = required("mac", fields.mac("mac"))
        return cls(mac=mac, reason=fields.text("reason", MAX_REASON) or "")


@dataclass(frozen=True)
class UnblockRequest(Request[UnblockResult]):
    op = "unblock"
    mac: str

    @classmethod
    def read(cls, fields: Fields) -> UnblockRequest:
        return cls(mac=required("mac", fields.mac("mac")))


@dataclass(frozen=True)
class BlockedRequest(Request[list[BlockedDevice]]):
    """Every blocked device."""

    op = "blocked"


@dataclass(frozen=True)
class TrustRequest(Request[TrustedDeviceInfo]):
    """Put a device on the trusted list (or change its label or tier): the gateway lets it
    out on ``tier`` (a configured tier, or ``unlimited``) whenever it is on the LAN, with no
    portal, no timeouts and no daily allowance. A blocked device is refused."""

    op = "trust"
    mac: str
    label: str
    tier: str
    created_by: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> TrustRequest:
        label = required("label", fields.text("label", MAX_LABEL)).strip()
        if not label:
            raise bad("label", "must not be empty")
        tier = required("tier", fields.text("tier", MAX_TIER_NAME))
        return cls(
            mac=required("mac", fields.mac("mac")),
            label=label,
            tier=tier,
            created_by=fields.text("created_by", MAX_OPERATOR_NAME) or None,
        )


@dataclass(frozen=True)
class UntrustRequest(Request[UntrustResult]):
    """Take a device off the trusted list; its trusted session ends (``untrusted``)."""

    op = "untrust"
    mac: str

    @classmethod
    def read(cls, fields: Fields) -> UntrustRequest:
        return cls(mac=required("mac", fields.mac("mac")))


@dataclass(frozen=True)
class TrustedRequest(Request[list[TrustedDeviceInfo]]):
    """Every device on the trusted list."""

    op = "trusted"


@dataclass(frozen=True)
class ReconcileRequest(Request[ReconcileResult]):
    """Make the kernel match the database now."""

    op = "reconcile"


MAX_POLICY_TEXT = 40 * 1024  # hotspot/policy.py MAX_DOCUMENT_BYTES, and room to spare


@dataclass(frozen=True)
class PolicyRequest(Request[dict[str, Any]]):
    """The province's policy in force (gateway/policy.py ``status``)."""

    op = "policy"


@dataclass(frozen=True)
class PolicyApplyRequest(Request[dict[str, Any]]):
    """A signed policy envelope from the collector (the sync agent hands it over): the
    gateway verifies it before anything else (refused: ``policy-signature``,
    ``policy-replay``, ``policy-invalid``)."""

    op = "policy-apply"
    document: str
    signature: str
    key_id: str | None = None

    @classmethod
    def read(cls, fields: Fields) -> PolicyApplyRequest:
        return cls(
            document=required("document", fields.text("document", MAX_POLICY_TEXT)),
            signature=required("signature", fields.text("signature", 200)),
            key_id=fields.text("key_id", 64),
        )


REQUESTS: dict[str, type[Request[Any]]] = {
    cls.op: cls
    for cls in (
        PingRequest,
        StatusRequest,
        AuthorizeRequest,
        RadiusAuthorizeRequest,
        DeauthorizeRequest,
        ClientRequest,
        ExtendRequest,
        ListRequest,
        BlockRequest,
        UnblockRequest,
        BlockedRequest,
        TrustRequest,
        UntrustRequest,
        TrustedRequest,
        ReconcileRequest,
        PolicyRequest,
        PolicyApplyRequest,
    )
}


def parse_request(message: object) -> Request[Any]:
    """A decoded JSON line → its request; :class:`UsageError` naming the field otherwise."""
    if not isinstance(message, dict):
        raise bad("op", 'a request is a JSON object with an "op"')
    op = message.get("op")
    if op is None:
        raise bad("op", "missing")
    if not isinstance(op, str):
        raise bad("op", "must be text")
    kind = REQUESTS.get(op)
    if kind is None:
        raise bad("op", f"unknown operation {op[:40]!r} (known: {', '.join(REQUESTS)})")
    fields = Fields(op, message)
    request = kind.read(fields)
    fields.finish()
    return request
