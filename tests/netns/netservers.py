"""Tiny network services for the netns tests, run as a script inside a namespace.

    python3 netservers.py udp  HOST PORT LOG READY   record every datagram (one line each)
    python3 netservers.py tcp  HOST PORT LOG READY   record every accepted connection
    python3 netservers.py http HOST PORT LOG READY MARKER
                                                     answer every GET with MARKER (200)

Each line of LOG is ``<peer address> <peer port> <first bytes of the payload, repr>``;
READY is created once the socket is bound, so a test never races the listener. Standard
library only: this file is executed by path, not imported from the project.
"""

from __future__ import annotations

import http.server
import socket
import socketserver
import sys
from pathlib import Path


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _record(log: Path, peer: tuple, payload: bytes) -> None:
    with log.open("a") as fh:
        fh.write(f"{peer[0]} {peer[1]} {payload[:64]!r}\n")
        fh.flush()


def udp(host: str, port: int, log: Path, ready: Path) -> None:
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((host, port))
    ready.touch()
    while True:
        data, peer = sock.recvfrom(65535)
        _record(log, peer, data)


def tcp(host: str, port: int, log: Path, ready: Path) -> None:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    ready.touch()
    while True:
        conn, peer = sock.accept()
        _record(log, peer, b"<connect>")
        conn.close()


def http_marker(host: str, port: int, log: Path, ready: Path, marker: str) -> None:
    body = marker.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            request = f"GET {self.headers.get('Host')} {self.path}"
            _record(log, self.client_address, request.encode())
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        address_family = _family(host)

        def server_bind(self) -> None:
            # HTTPServer's own server_bind does a reverse DNS lookup (getfqdn): no resolver
            # is reachable from a namespace, so it would hang.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = host, port

    server = Server((host, port), Handler)
    ready.touch()
    server.serve_forever()


def main(argv: list[str]) -> None:
    kind, host, port, log, ready = argv[:5]
    log_path, ready_path = Path(log), Path(ready)
    log_path.touch()
    if kind == "udp":
        udp(host, int(port), log_path, ready_path)
    elif kind == "tcp":
        tcp(host, int(port), log_path, ready_path)
    elif kind == "http":
        http_marker(host, int(port), log_path, ready_path, argv[5])
    else:
        raise SystemExit(f"unknown service {kind!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
