"""Send one CoA- or Disconnect-Request (RFC 5176) and print the answer as JSON; run inside a
namespace by the tests: ``python dynauth_send.py HOST PORT SECRET coa|disconnect ATTRS_JSON
[--age SECONDS] [--source ADDR] [--save FILE | --replay FILE] [--no-ma] [--raw HEX]``.

``--age`` back-dates Event-Timestamp (a stale request); ``--save`` keeps the exact bytes
sent, ``--replay`` sends such bytes again unchanged (a captured request replayed);
``--raw`` sends arbitrary bytes (garbage). Prints ``{"code": N, "attributes": {...}}`` or
``{"timeout": true}``.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from pyrad import packet

from hotspot.radius.packets import dictionary, reply_attributes


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("secret")
    p.add_argument("kind", choices=("coa", "disconnect"))
    p.add_argument("attrs")
    p.add_argument("--age", type=int, default=0)
    p.add_argument("--source", default="")
    p.add_argument("--save", default="")
    p.add_argument("--replay", default="")
    p.add_argument("--raw", default="")
    p.add_argument("--no-ma", action="store_true")
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    secret = args.secret.encode()
    code = packet.CoARequest if args.kind == "coa" else packet.DisconnectRequest
    pkt = packet.CoAPacket(code=code, secret=secret, dict=dictionary())
    if args.replay:
        raw = Path(args.replay).read_bytes()
        pkt = packet.CoAPacket(packet=raw, secret=secret, dict=dictionary())
    elif args.raw:
        raw = bytes.fromhex(args.raw)
    else:
        if not args.no_ma:
            pkt.add_message_authenticator()
        for name, value in json.loads(args.attrs).items():
            pkt[name] = value
        pkt["Event-Timestamp"] = int(time.time()) - args.age
        raw = pkt.RequestPacket()
    if args.save:
        Path(args.save).write_bytes(raw)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        if args.source:
            sock.bind((args.source, 0))
        sock.settimeout(args.timeout)
        sock.sendto(raw, (args.host, args.port))
        try:
            data = sock.recv(4096)
        except (TimeoutError, ConnectionRefusedError):
            print(json.dumps({"timeout": True}))
            return 0
    reply = packet.CoAPacket(packet=data, secret=secret, dict=dictionary())
    attrs = {k: [str(v) for v in vs] for k, vs in reply_attributes(reply).items()}
    print(json.dumps({"code": reply.code, "attributes": attrs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
