"""The ARP frames of gateway/arp.py (the probe that replaced scapy's srp1): the request is
what a who-has must be on the wire, and only a well-formed reply from the probed address
counts; anything else a neighbour sends is skipped."""

from __future__ import annotations

import socket
import struct

from gateway.arp import FRAME_LEN, reply_sender, request_frame

OWN_MAC = bytes.fromhex("020000000001")
PHONE_MAC = bytes.fromhex("02aabbccddee")
OWN_IP = socket.inet_aton("10.10.0.1")
TARGET = socket.inet_aton("10.10.0.11")


def arp(op: int, sender_mac: bytes, sender_ip: bytes, target_ip: bytes, hlen: int = 6) -> bytes:
    return (
        OWN_MAC
        + sender_mac
        + b"\x08\x06"
        + struct.pack("!HHBBH", 1, 0x0800, hlen, 4, op)
        + sender_mac
        + sender_ip
        + OWN_MAC
        + target_ip
    )


def test_the_request_is_a_broadcast_who_has_from_our_addresses():
    frame = request_frame(OWN_MAC, OWN_IP, TARGET)
    assert len(frame) == FRAME_LEN == 42
    assert frame[:6] == b"\xff" * 6 and frame[6:12] == OWN_MAC and frame[12:14] == b"\x08\x06"
    assert struct.unpack("!HHBBH", frame[14:22]) == (1, 0x0800, 6, 4, 1)
    assert frame[22:28] == OWN_MAC and frame[28:32] == OWN_IP
    assert frame[32:38] == bytes(6) and frame[38:42] == TARGET


def test_only_a_reply_from_the_probed_address_counts():
    assert reply_sender(arp(2, PHONE_MAC, TARGET, OWN_IP), TARGET) == PHONE_MAC
    assert reply_sender(arp(2, PHONE_MAC, TARGET, OWN_IP) + bytes(18), TARGET) == PHONE_MAC


def test_what_a_hostile_neighbour_sends_is_skipped():
    other = socket.inet_aton("10.10.0.77")
    reply = arp(2, PHONE_MAC, TARGET, OWN_IP)
    skipped = [
        arp(2, PHONE_MAC, other, OWN_IP),  # a reply about another address
        arp(1, PHONE_MAC, TARGET, OWN_IP),  # a (gratuitous) request claiming the address
        arp(2, PHONE_MAC, TARGET, OWN_IP, hlen=8),  # wrong lengths
        reply[:30],  # truncated
        b"",
        reply[:12] + b"\x08\x00" + reply[14:],  # not ARP at all
        reply[:14] + struct.pack("!H", 6) + reply[16:],  # an IEEE 802 hardware type
    ]
    assert [reply_sender(f, TARGET) for f in skipped] == [None] * len(skipped)
