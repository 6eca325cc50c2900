"""What RADIUS attributes mean for a session, both ways. Pure: no sockets, no database.

An Access-Accept → :class:`Grant` (the session's limits); an end reason → Acct-Terminate-Cause;
a session's figures → the attributes of an Accounting-Request. docs/radius.md lists them.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hotspot.model import EndReason

GIGA = 1 << 32  # one gigaword: the high 32 bits of a 64-bit octet count
MAX_SESSION_SECONDS = 525_600 * 60  # a year, the control protocol's longest authorization
MAX_KBPS = 10_000_000  # 10 Gbit/s: above this a value is a mistake, not a plan
MAX_BYTES = 1 << 50  # the control protocol's largest data cap
MAX_CLASS = 253  # one attribute's value
MAX_USERNAME = 253


class DataLimitAttribute(enum.StrEnum):
    """Which vendor's attribute carries a session's data cap (``[radius] data_limit``)."""

    CHILLISPOT = "chillispot"  # ChilliSpot-Max-Total-Octets (+ -Gigawords), vendor 14559
    MIKROTIK = "mikrotik"  # Mikrotik-Total-Limit (+ -Gigawords), vendor 14988


class StatusType(enum.IntEnum):
    START = 1
    STOP = 2
    INTERIM = 3


class TerminateCause(enum.IntEnum):
    """RFC 2866 section 5.10 (the values this gateway sends)."""

    USER_REQUEST = 1
    LOST_CARRIER = 2
    IDLE_TIMEOUT = 4
    SESSION_TIMEOUT = 5
    ADMIN_RESET = 6
    NAS_REQUEST = 10


# Our end reasons (hotspot.model.EndReason) → the cause a billing system understands.
# A data cap reached ends the session like its time running out (as CoovaChilli reports it).
TERMINATE_CAUSES: dict[EndReason, TerminateCause] = {
    EndReason.LOGOUT: TerminateCause.USER_REQUEST,
    EndReason.IDLE: TerminateCause.IDLE_TIMEOUT,
    EndReason.SESSION: TerminateCause.SESSION_TIMEOUT,
    EndReason.QUOTA: TerminateCause.SESSION_TIMEOUT,
    EndReason.KICK: TerminateCause.ADMIN_RESET,  # an operator, or a Disconnect-Request
    EndReason.BLOCKED: TerminateCause.ADMIN_RESET,
    # The device came back at another address, or another device took its address over.
    EndReason.REPLACED: TerminateCause.LOST_CARRIER,
    # Taken off the trusted list (a trusted session is never a RADIUS one; mapped for
    # completeness).
    EndReason.UNTRUSTED: TerminateCause.ADMIN_RESET,
}


def terminate_cause(reason: EndReason | None) -> TerminateCause:
    if reason is None:
        return TerminateCause.NAS_REQUEST
    return TERMINATE_CAUSES.get(reason, TerminateCause.NAS_REQUEST)


@dataclass(frozen=True)
class Grant:
    """What an Access-Accept (or a CoA-Request) sets for a session; None = not said (the
    tier's own value then). ``problems`` names attributes that were present but unusable."""

    session_seconds: int | None = None
    idle_minutes: int | None = None
    down_kbps: int | None = None
    up_kbps: int | None = None
    bytes_limit: int | None = None
    interim_seconds: int | None = None
    classes: tuple[bytes, ...] = ()
    reply_message: str = ""
    problems: tuple[str, ...] = field(default=(), compare=False)


def _ints(attrs: Mapping[str, Sequence[Any]], name: str) -> int | None:
    values = attrs.get(name)
    if not values:
        return None
    value = values[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(name)
    if value < 0:
        raise ValueError(name)
    return value


def _kbps(bps: int) -> int:
    return max(1, min(MAX_KBPS, math.ceil(bps / 1000)))


_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)([kKmMgG]?)\s*$")
_UNITS = {"": 1, "k": 1000, "m": 1_000_000, "g": 1_000_000_000}


def parse_mikrotik_rate(text: str) -> tuple[int, int]:
    """``Mikrotik-Rate-Limit`` ``"rx/tx ..."`` (the router's receive = the client's upload)
    → (down_kbps, up_kbps). Only the first pair (the steady rate) counts: bursts are not
    shaped here."""
    first = text.split()[0] if text.split() else ""
    rx, sep, tx = first.partition("/")
    rates = []
    for part in (tx, rx) if sep else (first, first):
        m = _RATE.match(part)
        if m is None or float(m.group(1)) <= 0:
            raise ValueError("Mikrotik-Rate-Limit")
        rates.append(_kbps(int(float(m.group(1)) * _UNITS[m.group(2).lower()])))
    return rates[0], rates[1]


def grant_from_attributes(
    attrs: Mapping[str, Sequence[Any]], data_limit: DataLimitAttribute
) -> Grant:
    """The session limits an Access-Accept or a CoA-Request carries. ``attrs`` maps attribute
    names to their decoded values (pyrad's ``{name: [value, …]}``). A value out of range is
    clamped; one of the wrong kind is left out and named in ``problems`` — the villager is
    still let in on the tier's own limits rather than turned away for the server's typo."""
    problems: list[str] = []

    def read(name: str) -> int | None:
        try:
            return _ints(attrs, name)
        except ValueError:
            problems.append(name)
            return None

    seconds = read("Session-Timeout")
    if seconds is not None:
        seconds = max(1, min(MAX_SESSION_SECONDS, seconds))
    idle = read("Idle-Timeout")
    idle_minutes = None if idle is None else max(1, min(525_600, math.ceil(idle / 60)))
    down_bps = read("WISPr-Bandwidth-Max-Down")
    up_bps = read("WISPr-Bandwidth-Max-Up")
    down = None if not down_bps else _kbps(down_bps)
    up = None if not up_bps else _kbps(up_bps)
    if down is None and up is None and attrs.get("Mikrotik-Rate-Limit"):
        text = attrs["Mikrotik-Rate-Limit"][0]
        try:
            if not isinstance(text, str):
                raise ValueError("Mikrotik-Rate-Limit")
            down, up = parse_mikrotik_rate(text)
        except ValueError:
            problems.append("Mikrotik-Rate-Limit")
    if data_limit is DataLimitAttribute.CHILLISPOT:
        low, high = read("ChilliSpot-Max-Total-Octets"), read("ChilliSpot-Max-Total-Gigawords")
    else:
        low, high = read("Mikrotik-Total-Limit"), read("Mikrotik-Total-Limit-Gigawords")
    total = (low or 0) + (high or 0) * GIGA
    bytes_limit = min(MAX_BYTES, total) if total > 0 else None
    interim = read("Acct-Interim-Interval")
    if interim is not None:
        interim = max(60, min(86_400, interim))  # RFC 2869: no more often than once a minute
    classes = tuple(
        c[:MAX_CLASS] for c in attrs.get("Class", ()) if isinstance(c, bytes | bytearray)
    )[:4]
    message = attrs.get("Reply-Message")
    reply = (
        "".join(m for m in message if isinstance(m, str))[:200] if message else ""  # shown as text
    )
    return Grant(
        session_seconds=seconds,
        idle_minutes=idle_minutes,
        down_kbps=down,
        up_kbps=up,
        bytes_limit=bytes_limit,
        interim_seconds=interim,
        classes=tuple(bytes(c) for c in classes),
        reply_message=reply,
        problems=tuple(problems),
    )


def octets(total: int) -> tuple[int, int]:
    """A 64-bit count → (octets mod 2³², gigawords) as RFC 2869 sends it."""
    total = max(0, total)
    return total % GIGA, total // GIGA


@dataclass(frozen=True)
class AccountingFigures:
    """One accounting record's figures for one session."""

    status: StatusType
    acct_session_id: str
    username: str
    framed_ip: str
    calling_station: str
    session_seconds: int = 0
    bytes_from_client: int = 0  # Acct-Input-*: what the NAS received from the client (upload)
    bytes_to_client: int = 0  # Acct-Output-*: what it sent the client (download)
    cause: TerminateCause | None = None
    classes: tuple[bytes, ...] = ()
    interim_seconds: int | None = None


def accounting_attributes(figures: AccountingFigures) -> dict[str, Any]:
    """The attributes of one Accounting-Request (besides the NAS's own and the delay), as
    JSON-friendly values: Class goes as hex, turned back into octets when sent."""
    attrs: dict[str, Any] = {
        "Acct-Status-Type": int(figures.status),
        "Acct-Session-Id": figures.acct_session_id,
        "Acct-Authentic": 1,  # RADIUS
        "User-Name": figures.username,
        "Framed-IP-Address": figures.framed_ip,
        "Calling-Station-Id": figures.calling_station,
    }
    if figures.classes:
        attrs["Class"] = [c.hex() for c in figures.classes]
    if figures.status is not StatusType.START:
        in_low, in_high = octets(figures.bytes_from_client)
        out_low, out_high = octets(figures.bytes_to_client)
        attrs.update(
            {
                "Acct-Session-Time": max(0, figures.session_seconds),
                "Acct-Input-Octets": in_low,
                "Acct-Input-Gigawords": in_high,
                "Acct-Output-Octets": out_low,
                "Acct-Output-Gigawords": out_high,
            }
        )
    if figures.status is StatusType.STOP:
        attrs["Acct-Terminate-Cause"] = int(figures.cause or TerminateCause.NAS_REQUEST)
    return attrs


def calling_station_id(mac: str) -> str:
    """A MAC as RFC 3580 section 3.21 writes it: ``AA-BB-CC-DD-EE-FF``."""
    return mac.upper().replace(":", "-")
