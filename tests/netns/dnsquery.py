"""A DNS stub for the netns tests, run as a script inside a namespace.

    python3 dnsquery.py SERVER NAME [TYPE] [--tcp] [--port N] [--sport N] [--timeout S]
    python3 dnsquery.py --batch < [{"server": …, "name": …, "type": …, "tcp": …}, …]

sends one query (TYPE: A, AAAA, TXT, NULL, … or a number; A by default) and prints one line
of JSON: ``{"rcode": 0, "answers": [[type, ttl, data], …], "authority": [[type, ttl], …]}``
(data: the address of an A/AAAA record, the name of a CNAME, the bytes' length otherwise),
or ``{"error": "timeout"}`` when no answer came. ``--sport`` pins the source port (the same
socket tuple as an earlier query: conntrack sees one flow). ``--batch`` reads a JSON list of
queries (keys as the options, plus ``server`` and ``name``), asks them all at once and prints
a JSON list of results in the same order. Standard library only: this file is executed by
path, not imported from the project.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
from concurrent.futures import ThreadPoolExecutor

TYPES = {
    "A": 1,
    "NS": 2,
    "CNAME": 5,
    "SOA": 6,
    "NULL": 10,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
    "ANY": 255,
}


def build(name: str, qtype: int, ident: int) -> bytes:
    q = struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # RD
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    return q + struct.pack(">HH", qtype, 1)


def _skip_name(r: bytes, i: int) -> int:
    while True:
        n = r[i]
        if n & 0xC0 == 0xC0:
            return i + 2
        if n == 0:
            return i + 1
        i += n + 1


def _name(r: bytes, i: int) -> str:
    labels = []
    for _ in range(128):
        n = r[i]
        if n & 0xC0 == 0xC0:
            i = ((n & 0x3F) << 8) | r[i + 1]
            continue
        if n == 0:
            break
        labels.append(r[i + 1 : i + 1 + n].decode(errors="replace"))
        i += n + 1
    return ".".join(labels)


def parse(r: bytes, ident: int) -> dict:
    rid, flags, qd, an, ns, _ar = struct.unpack(">HHHHHH", r[:12])
    if rid != ident or not flags & 0x8000:
        return {"error": f"not our answer (id {rid:#x}, flags {flags:#x})"}
    i = 12
    for _ in range(qd):
        i = _skip_name(r, i) + 4
    out: dict = {"rcode": flags & 0xF, "answers": [], "authority": []}
    for section, count in (("answers", an), ("authority", ns)):
        for _ in range(count):
            i = _skip_name(r, i)
            rtype, _rclass, ttl, rdlen = struct.unpack(">HHIH", r[i : i + 10])
            i += 10
            data = r[i : i + rdlen]
            if section == "authority":
                out[section].append([rtype, ttl])
            elif rtype == 1:
                out[section].append([rtype, ttl, socket.inet_ntop(socket.AF_INET, data)])
            elif rtype == 28:
                out[section].append([rtype, ttl, socket.inet_ntop(socket.AF_INET6, data)])
            elif rtype == 5:
                out[section].append([rtype, ttl, _name(r, i)])
            else:
                out[section].append([rtype, ttl, len(data)])
            i += rdlen
    return out


def query(
    server: str, name: str, qtype: int, tcp: bool, port: int, sport: int, timeout: float
) -> dict:
    ident = random.randrange(1, 0xFFFF)
    q = build(name, qtype, ident)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", sport))
        if tcp:
            s.connect((server, port))
            s.sendall(struct.pack(">H", len(q)) + q)
            head = s.recv(2)
            (length,) = struct.unpack(">H", head)
            r = b""
            while len(r) < length:
                chunk = s.recv(length - len(r))
                if not chunk:
                    break
                r += chunk
        else:
            s.sendto(q, (server, port))
            r, _ = s.recvfrom(65535)
    except (TimeoutError, ConnectionError, OSError, struct.error) as exc:
        return {"error": "timeout" if isinstance(exc, TimeoutError) else str(exc)}
    finally:
        s.close()
    return parse(r, ident)


def _type(qtype: str | int) -> int:
    return int(qtype) if str(qtype).isdigit() else TYPES[str(qtype).upper()]


def batch(queries: list[dict]) -> list[dict]:
    def one(q: dict) -> dict:
        return query(
            q["server"],
            q["name"],
            _type(q.get("type", "A")),
            bool(q.get("tcp")),
            int(q.get("port", 53)),
            int(q.get("sport", 0)),
            float(q.get("timeout", 2)),
        )

    with ThreadPoolExecutor(max_workers=32) as pool:
        return list(pool.map(one, queries))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--batch"]:
        print(json.dumps(batch(json.load(sys.stdin))))
        return
    args, opts = [], {"--port": "53", "--sport": "0", "--timeout": "2"}
    tcp = False
    it = iter(argv)
    for a in it:
        if a == "--tcp":
            tcp = True
        elif a in opts:
            opts[a] = next(it)
        else:
            args.append(a)
    server, name = args[0], args[1]
    code = _type(args[2] if len(args) > 2 else "A")
    print(
        json.dumps(
            query(
                server,
                name,
                code,
                tcp,
                int(opts["--port"]),
                int(opts["--sport"]),
                float(opts["--timeout"]),
            )
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
