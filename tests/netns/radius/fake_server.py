"""A broken RADIUS server for the tests: answers every request on HOST:PORT with MODE —
``garbage`` (random bytes), ``oversized`` (a 6000-byte datagram that starts like a reply),
``wrong-auth`` (a well-formed Access-Accept signed with another secret), ``short`` (a header
whose length field lies). Counts what it got in FILE."""

from __future__ import annotations

import hashlib
import os
import socket
import struct
import sys


def main() -> None:
    host, port, mode, count_file = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    seen = 0
    with open(count_file, "w") as fh:  # bound: the test may start asking
        fh.write("0")
    while True:
        data, peer = sock.recvfrom(65535)
        seen += 1
        with open(count_file, "w") as fh:
            fh.write(str(seen))
        ident, authenticator = data[1], data[4:20]
        if mode == "garbage":
            reply = os.urandom(64)
        elif mode == "oversized":
            body = b"\x1b\xff" + b"A" * 253
            attrs = body * 23
            reply = struct.pack("!BBH", 2, ident, 20 + len(attrs)) + b"\0" * 16 + attrs
        elif mode == "short":
            reply = struct.pack("!BBH", 2, ident, 4000) + b"\0" * 16
        else:  # wrong-auth
            attrs = bytes([27, 6]) + struct.pack("!I", 3600)
            head = struct.pack("!BBH", 2, ident, 20 + len(attrs))
            digest = hashlib.md5(head + authenticator + attrs + b"not-the-secret").digest()
            reply = head + digest + attrs
        sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
