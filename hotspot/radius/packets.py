"""RADIUS packets with pyrad: the dictionary, the requests this gateway sends, and the checks
on a CoA-Request or Disconnect-Request it receives (RFC 5176). No sockets here.
"""

from __future__ import annotations

import datetime as dt
import functools
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyrad import packet as rp
from pyrad.dictionary import Dictionary

DICTIONARY = Path(__file__).with_name("dictionary")
MAX_PACKET = 4096  # RFC 2865 section 3: a longer datagram is not RADIUS

ACCESS_ACCEPT = rp.AccessAccept
ACCESS_REJECT = rp.AccessReject
ACCESS_CHALLENGE = rp.AccessChallenge
ACCOUNTING_RESPONSE = rp.AccountingResponse
COA_REQUEST = rp.CoARequest
DISCONNECT_REQUEST = rp.DisconnectRequest
COA_ACK, COA_NAK = rp.CoAACK, rp.CoANAK
DISCONNECT_ACK, DISCONNECT_NAK = rp.DisconnectACK, rp.DisconnectNAK

# What a malformed packet can raise inside pyrad's decoder: all of it means "not a packet".
DECODE_ERRORS = (
    rp.PacketError,
    struct.error,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    UnicodeDecodeError,
)


@functools.cache
def dictionary() -> Any:
    """The shipped dictionary (read once per process)."""
    return Dictionary(str(DICTIONARY))


@dataclass(frozen=True)
class Nas:
    """How this gateway names itself to the server."""

    identifier: str
    ip_address: str = ""  # NAS-IP-Address; "" = not sent
    called_station: str = ""  # Called-Station-Id (e.g. "AA-BB-CC-DD-EE-FF:WiFi Desa")


def _nas(pkt: Any, nas: Nas) -> None:
    pkt["NAS-Identifier"] = nas.identifier
    if nas.ip_address:
        pkt["NAS-IP-Address"] = nas.ip_address
    if nas.called_station:
        pkt["Called-Station-Id"] = nas.called_station


def access_request(
    secret: bytes,
    nas: Nas,
    *,
    username: str,
    password: str,
    calling_station: str,
    framed_ip: str,
) -> Any:
    """An Access-Request with PAP (User-Password hidden with the secret, RFC 2865 5.2) and a
    Message-Authenticator as its first attribute (RFC 3579, and against BlastRADIUS)."""
    pkt = rp.AuthPacket(code=rp.AccessRequest, secret=secret, dict=dictionary())
    pkt.add_message_authenticator()
    pkt["User-Name"] = username
    pkt["User-Password"] = pkt.PwCrypt(password)
    pkt["Service-Type"] = 1  # Login-User
    pkt["NAS-Port-Type"] = 19  # Wireless-802.11
    pkt["Calling-Station-Id"] = calling_station
    pkt["Framed-IP-Address"] = framed_ip
    _nas(pkt, nas)
    return pkt


def accounting_request(
    secret: bytes, nas: Nas, attributes: Mapping[str, Any], delay_seconds: int, event_time: int
) -> Any:
    """An Accounting-Request from a queued record (see attributes.accounting_attributes)."""
    pkt = rp.AcctPacket(code=rp.AccountingRequest, secret=secret, dict=dictionary())
    for name, value in attributes.items():
        if name == "Class":
            pkt[name] = [bytes.fromhex(v) for v in value]
        else:
            pkt[name] = value
    pkt["Acct-Delay-Time"] = max(0, min(delay_seconds, 2**32 - 1))
    pkt["Event-Timestamp"] = event_time
    _nas(pkt, nas)
    return pkt


def reply_attributes(reply: Any) -> dict[str, list[Any]]:
    """A decoded reply's attributes by name (unknown attributes left out)."""
    out: dict[str, list[Any]] = {}
    for key in reply.keys():
        if not isinstance(key, str):
            continue  # not in the dictionary: we do not act on what we cannot name
        try:
            out[key] = list(reply[key])
        except DECODE_ERRORS:
            continue
    return out


# -- dynamic authorization (RFC 5176) ---------------------------------------------------------


class DynAuthRefused(Exception):
    """A CoA/Disconnect-Request that is silently dropped (RFC 5176 section 3.4: one that does
    not authenticate is discarded without a reply, so a forger learns nothing)."""


@dataclass(frozen=True)
class DynAuthRequest:
    code: int
    ident: int
    authenticator: bytes
    attributes: dict[str, list[Any]]
    packet: Any  # the decoded pyrad packet, for the reply


def parse_dynauth(
    raw: bytes,
    secret: bytes,
    *,
    now: float,
    window_seconds: int,
    require_message_authenticator: bool = True,
) -> DynAuthRequest:
    """Check one datagram claimed to be a CoA- or Disconnect-Request from the server:
    size, code, Request Authenticator (MD5 over the packet and the shared secret),
    Message-Authenticator (HMAC-MD5) and Event-Timestamp within ``window_seconds`` of now
    (RFC 5176 section 3.4: the replay protection). Raises :class:`DynAuthRefused`."""
    if len(raw) < 20 or len(raw) > MAX_PACKET:
        raise DynAuthRefused(f"{len(raw)} bytes is no RADIUS packet")
    code, ident, length = struct.unpack("!BBH", raw[:4])
    if code not in (COA_REQUEST, DISCONNECT_REQUEST):
        raise DynAuthRefused(f"code {code} is neither CoA- nor Disconnect-Request")
    if length != len(raw):
        raise DynAuthRefused(f"length field {length} but {len(raw)} bytes came")
    try:
        pkt = rp.CoAPacket(packet=raw, secret=secret, dict=dictionary())
    except DECODE_ERRORS as exc:
        raise DynAuthRefused(f"malformed: {exc}") from None
    if not pkt.VerifyCoARequest():
        raise DynAuthRefused("bad Request Authenticator (wrong shared secret?)")
    if pkt.message_authenticator:
        try:
            good = pkt.verify_message_authenticator(secret)
        except DECODE_ERRORS:
            good = False
        if not good:
            raise DynAuthRefused("bad Message-Authenticator")
    elif require_message_authenticator:
        raise DynAuthRefused("no Message-Authenticator")
    attrs = reply_attributes(pkt)
    stamp = attrs.get("Event-Timestamp")
    if not stamp:
        raise DynAuthRefused("no Event-Timestamp (needed against replays)")
    sent = stamp[0]
    sent_at = sent.timestamp() if isinstance(sent, dt.datetime) else float(sent)
    if abs(now - sent_at) > window_seconds:
        raise DynAuthRefused(f"Event-Timestamp {int(now - sent_at)} s off (stale or replayed)")
    return DynAuthRequest(code, ident, bytes(pkt.authenticator), attrs, pkt)


class ReplayGuard:
    """Requests already answered, by (source, authenticator), for the window: a copy within
    it gets the first answer again and changes nothing (RFC 5176 section 2.3: duplicate
    detection); outside the window the Event-Timestamp check refuses it."""

    def __init__(self, window_seconds: int, limit: int = 4096):
        self.window = window_seconds
        self.limit = limit
        self._seen: OrderedDict[tuple[str, bytes], tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def answered(self, source: str, authenticator: bytes, now: float | None = None) -> bytes | None:
        """The reply already sent to this request, if it was seen within the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._expire(now)
            hit = self._seen.get((source, authenticator))
            return hit[1] if hit else None

    def remember(
        self, source: str, authenticator: bytes, reply: bytes, now: float | None = None
    ) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._seen[(source, authenticator)] = (now, reply)
            while len(self._seen) > self.limit:
                self._seen.popitem(last=False)

    def _expire(self, now: float) -> None:
        while self._seen:
            first = next(iter(self._seen.values()))
            if now - first[0] <= self.window:
                break
            self._seen.popitem(last=False)


def dynauth_reply(request: DynAuthRequest, ack: bool, error_cause: int | None = None) -> bytes:
    """The ACK or NAK to a checked request, with a Message-Authenticator."""
    reply = request.packet.CreateReply()
    if not ack:
        reply.code = DISCONNECT_NAK if request.code == DISCONNECT_REQUEST else COA_NAK
        if error_cause is not None:
            reply["Error-Cause"] = error_cause
    reply.add_message_authenticator()
    raw: bytes = reply.ReplyPacket()
    return raw
