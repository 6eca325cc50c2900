"""A slowloris client: ``python -m testsupport.slowloris HOST PORT COUNT SECONDS``.

Opens COUNT connections to HOST:PORT, sends a request line and then one header line every
half second, never finishing the headers, for at most SECONDS. Prints one JSON object: for
every connection whether it was refused and, if the server closed it, after how many seconds.
Used by the tests and by ``bench/slowloris.py``; it attacks only the address it is given.
"""

from __future__ import annotations

import errno
import json
import selectors
import socket
import sys
import time
from typing import Any

TRICKLE_SECONDS = 0.5


def attack(host: str, port: int, count: int, seconds: float) -> dict[str, Any]:
    start = time.monotonic()
    sel = selectors.DefaultSelector()
    conns: list[dict[str, Any]] = []
    for i in range(count):
        sock = socket.socket()
        sock.settimeout(2)
        entry: dict[str, Any] = {"refused": False, "closed_after": None}
        try:
            sock.connect((host, port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n" % host.encode())
        except OSError:
            entry["refused"] = True
            sock.close()
            conns.append(entry)
            continue
        sock.setblocking(False)
        entry["opened"] = time.monotonic() - start
        sel.register(sock, selectors.EVENT_READ, i)
        entry["sock"] = sock
        conns.append(entry)
    next_trickle = time.monotonic() + TRICKLE_SECONDS
    while time.monotonic() - start < seconds and sel.get_map():
        for key, _ in sel.select(timeout=0.1):
            entry = conns[key.data]
            try:
                data = key.fileobj.recv(4096)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                entry["closed_after"] = round(time.monotonic() - start - entry["opened"], 3)
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]
        if time.monotonic() >= next_trickle:
            next_trickle += TRICKLE_SECONDS
            for key in list(sel.get_map().values()):
                try:
                    key.fileobj.send(b"X-Slow: %d\r\n" % int(time.monotonic()))  # type: ignore[union-attr]
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EPIPE, errno.ECONNRESET):
                        raise
    for key in list(sel.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    for entry in conns:
        entry.pop("sock", None)
    return {
        "connections": conns,
        "refused": sum(c["refused"] for c in conns),
        "accepted": sum(not c["refused"] for c in conns),
        "still_open": sum(not c["refused"] and c["closed_after"] is None for c in conns),
    }


def main() -> int:
    host, port, count, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    print(json.dumps(attack(host, port, count, seconds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
