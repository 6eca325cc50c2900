"""Building requests and checking CoA/Disconnect-Requests (hotspot/radius/packets.py), and
one exchange over loopback UDP (hotspot/radius/transport.py)."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest
from pyrad import packet as rp

from hotspot.radius.packets import (
    DynAuthRefused,
    Nas,
    ReplayGuard,
    access_request,
    accounting_request,
    dictionary,
    dynauth_reply,
    parse_dynauth,
)
from hotspot.radius.transport import NoAnswer, Server, exchange

SECRET = b"rahasia-desa"
NAS = Nas("desa-uji", "192.0.2.1")


def coa(code=rp.CoARequest, secret=SECRET, age=0, ma=True, **attrs):
    pkt = rp.CoAPacket(code=code, secret=secret, dict=dictionary())
    if ma:
        pkt.add_message_authenticator()
    for k, v in attrs.items():
        pkt[k.replace("_", "-")] = v
    pkt["Event-Timestamp"] = int(time.time()) - age
    return pkt.RequestPacket()


def check(raw, **kw):
    kw.setdefault("now", time.time())
    kw.setdefault("window_seconds", 300)
    return parse_dynauth(raw, SECRET, **kw)


def test_access_request_hides_the_password_and_carries_a_message_authenticator():
    pkt = access_request(
        SECRET,
        NAS,
        username="budi",
        password="rahasia",
        calling_station="02-00-00-00-00-01",
        framed_ip="10.10.0.11",
    )
    raw = pkt.RequestPacket()
    assert b"rahasia" not in raw
    assert raw[20] == 80  # Message-Authenticator first (RFC 3579, BlastRADIUS)
    back = rp.AuthPacket(packet=raw, secret=SECRET, dict=dictionary())
    assert back.PwDecrypt(back["User-Password"][0]) == "rahasia"
    assert back.verify_message_authenticator(SECRET)
    assert back["NAS-Identifier"] == ["desa-uji"]
    assert back["Framed-IP-Address"] == ["10.10.0.11"]


def test_accounting_request_from_a_queued_record():
    attrs = {"Acct-Status-Type": 2, "Acct-Session-Id": "X", "Class": ["6b656c6173"]}
    pkt = accounting_request(SECRET, NAS, attrs, delay_seconds=42, event_time=1_800_000_000)
    back = rp.AcctPacket(packet=pkt.RequestPacket(), secret=SECRET, dict=dictionary())
    assert back.VerifyAcctRequest()
    assert back["Class"] == [b"kelas"] and back["Acct-Delay-Time"] == [42]


def test_a_good_coa_request_is_read():
    req = check(coa(Acct_Session_Id="ABC", WISPr_Bandwidth_Max_Down=5_000_000))
    assert req.code == rp.CoARequest
    assert req.attributes["Acct-Session-Id"] == ["ABC"]
    assert req.attributes["WISPr-Bandwidth-Max-Down"] == [5_000_000]
    reply = rp.CoAPacket(packet=dynauth_reply(req, ack=True), secret=SECRET, dict=dictionary())
    assert reply.code == rp.CoAACK


def test_a_disconnect_nak_carries_its_error_cause():
    req = check(coa(code=rp.DisconnectRequest, Acct_Session_Id="ABC"))
    raw = dynauth_reply(req, ack=False, error_cause=503)
    reply = rp.CoAPacket(packet=raw, secret=SECRET, dict=dictionary())
    assert reply.code == rp.DisconnectNAK
    assert reply["Error-Cause"] == ["Session-Context-Not-Found"]


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: coa(secret=b"tebakan", Acct_Session_Id="A"), "Request Authenticator"),
        (lambda: coa(ma=False, Acct_Session_Id="A"), "no Message-Authenticator"),
        (lambda: coa(age=600, Acct_Session_Id="A"), "stale"),
        (lambda: coa(age=-600, Acct_Session_Id="A"), "stale"),
        (lambda: b"\x2b" * 10, "no RADIUS packet"),
        (lambda: b"\x2b\x01\x00\x30" + b"\0" * 16, "length field"),
        (lambda: struct.pack("!BBH", 1, 1, 20) + b"\0" * 16, "neither"),
        (lambda: b"\x2b\x01" + struct.pack("!H", 5000) + b"\0" * 4996, "no RADIUS packet"),
        (lambda: os.urandom(2) + b"\x00\x40" + os.urandom(60), ""),
    ],
    ids=["secret", "no-ma", "stale", "future", "short", "length", "neither", "long", "random"],
)
def test_forged_stale_or_malformed_requests_are_refused(make, why):
    # Made when the test runs, not when it is collected: a packet stamped at collection time
    # 600 s in the future is fresh by the time a long suite reaches it.
    with pytest.raises(DynAuthRefused) as err:
        check(make())
    assert why in str(err.value)


def test_a_request_without_event_timestamp_is_refused():
    pkt = rp.CoAPacket(code=rp.CoARequest, secret=SECRET, dict=dictionary())
    pkt.add_message_authenticator()
    pkt["Acct-Session-Id"] = "A"
    with pytest.raises(DynAuthRefused, match="Event-Timestamp"):
        check(pkt.RequestPacket())


def test_a_tampered_message_authenticator_is_refused():
    raw = bytearray(coa(Acct_Session_Id="A"))
    raw[22] ^= 1  # inside the Message-Authenticator (the first attribute)
    body = bytes(raw[20:])
    # Re-sign the Request Authenticator so that only the HMAC is wrong.
    auth = hashlib.md5(bytes(raw[:4]) + b"\0" * 16 + body + SECRET).digest()
    with pytest.raises(DynAuthRefused, match="Message-Authenticator"):
        check(bytes(raw[:4]) + auth + body)


def test_replay_guard_answers_a_copy_once_seen_and_forgets_after_the_window():
    guard = ReplayGuard(window_seconds=300)
    assert guard.answered("192.0.2.9", b"a" * 16, now=0) is None
    guard.remember("192.0.2.9", b"a" * 16, b"reply", now=0)
    assert guard.answered("192.0.2.9", b"a" * 16, now=100) == b"reply"
    assert guard.answered("192.0.2.8", b"a" * 16, now=100) is None
    assert guard.answered("192.0.2.9", b"a" * 16, now=301) is None
    small = ReplayGuard(window_seconds=300, limit=2)
    for i in range(3):
        small.remember("s", bytes([i]) * 16, b"r", now=0)
    assert small.answered("s", b"\0" * 16, now=1) is None


# -- one exchange over loopback ---------------------------------------------------------------


def serve(replies):
    """A UDP server on loopback answering each request with the next of ``replies``
    (functions of the request's bytes); returns its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)

    def run():
        with sock:
            for make in replies:
                try:
                    data, peer = sock.recvfrom(8192)
                except TimeoutError:
                    return
                out = make(data)
                if out is not None:
                    sock.sendto(out, peer)

    port = sock.getsockname()[1]
    threading.Thread(target=run, daemon=True).start()
    return port


def accept(data, secret=SECRET):
    req = rp.AuthPacket(packet=data, secret=secret, dict=dictionary())
    reply = req.CreateReply()
    reply.code = rp.AccessAccept
    reply.add_message_authenticator()
    reply["Session-Timeout"] = 60
    return reply.ReplyPacket()


def grant(station: str, password: str | None = None):
    """A server's reply function: check the request's Calling-Station-Id (and password),
    then accept it with an hour, 2 Mbit/s down and a Class to echo."""

    def reply_to(data):
        req = rp.AuthPacket(packet=data, secret=SECRET, dict=dictionary())
        if password is not None:
            assert req.PwDecrypt(req["User-Password"][0]) == password
        assert req["Calling-Station-Id"] == [station]
        reply = req.CreateReply()
        reply.code = rp.AccessAccept
        reply.add_message_authenticator()
        reply["Session-Timeout"] = 3600
        reply["WISPr-Bandwidth-Max-Down"] = 2_000_000
        reply["Class"] = b"kelas"
        return reply.ReplyPacket()

    return reply_to


def request():
    return access_request(
        SECRET, NAS, username="u", password="p", calling_station="x", framed_ip="10.10.0.11"
    )


def test_garbage_and_forged_replies_are_ignored_until_a_good_one():
    port = serve(
        [
            lambda d: os.urandom(50) + b"\0" * 10,  # garbage
            lambda d: b"\x02" + d[1:2] + b"\x17\x70" + os.urandom(6000),  # oversized
            lambda d: accept(d, secret=b"another"),  # signed with another secret
            accept,
        ]
    )
    reply, server = exchange(
        request(),
        [Server("127.0.0.1", port)],
        timeout=0.5,
        attempts=4,
        require_message_authenticator=True,
    )
    assert reply.code == rp.AccessAccept and reply["Session-Timeout"] == [60]


def test_a_reply_without_message_authenticator_is_refused_when_required():
    def unsigned(data):
        req = rp.AuthPacket(packet=data, secret=SECRET, dict=dictionary())
        reply = rp.AuthPacket(
            code=rp.AccessAccept,
            id=req.id,
            secret=SECRET,
            authenticator=req.authenticator,
            dict=dictionary(),
        )
        raw = reply.ReplyPacket()
        assert b"\x50\x12" not in raw[20:22]  # no Message-Authenticator
        return raw

    port = serve([unsigned])
    with pytest.raises(NoAnswer):
        exchange(
            request(),
            [Server("127.0.0.1", port)],
            timeout=0.3,
            attempts=1,
            require_message_authenticator=True,
        )


def test_silence_ends_within_the_deadline_and_the_next_server_is_tried():
    silent = serve([lambda d: None] * 4)
    good = serve([accept])
    started = time.monotonic()
    reply, server = exchange(
        request(),
        [Server("127.0.0.1", silent), Server("127.0.0.1", good)],
        timeout=0.3,
        attempts=2,
    )
    assert server.port == good and reply.code == rp.AccessAccept
    assert time.monotonic() - started < 1.5
