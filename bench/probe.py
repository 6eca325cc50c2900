"""UDP probe for the authorize-to-first-packet benchmark; runs inside a namespace.

    python3 bench/probe.py send HOST PORT INTERVAL_US   (in the phone's namespace)
    python3 bench/probe.py recv HOST PORT GAP_MS        (on the upstream host)

The sender sends a small datagram (sequence number, CLOCK_MONOTONIC send time) every
INTERVAL_US microseconds, forever; while the phone is walled the gateway rejects them, so
nothing arrives. The receiver prints one line ``<arrival> <seq> <sent>`` (monotonic seconds)
for the first datagram after a silence of GAP_MS, i.e. the first packet forwarded after each
authorize. Namespaces share CLOCK_MONOTONIC, so the driver compares these times with its own.
Before each such line it prints ``I <mean interval µs>``: the sender's real pace during the
burst before (its datagrams that got through).
"""

from __future__ import annotations

import socket
import struct
import sys
import time

FMT = "!Qd"


def send(host: str, port: int, interval_us: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    interval = interval_us / 1e6
    seq = 0
    target = (host, port)
    pack = struct.Struct(FMT).pack
    while True:
        try:
            sock.sendto(pack(seq, time.monotonic()), target)
        except OSError:
            pass  # an ICMP error from the walled garden, or a full queue: keep going
        seq += 1
        time.sleep(interval)


def recv(host: str, port: int, gap_ms: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, port))
    gap = gap_ms / 1000
    last = 0.0
    first = last_pkt = (0, 0.0)  # (seq, sent) of the burst's first and latest datagram
    unpack = struct.Struct(FMT).unpack_from
    out = sys.stdout
    while True:
        data = sock.recv(64)
        now = time.monotonic()
        seq, sent = unpack(data)
        if now - last > gap:
            if last_pkt[0] - first[0] >= 10:
                # the sender's real pace during the burst that just ended
                out.write(f"I {(last_pkt[1] - first[1]) * 1e6 / (last_pkt[0] - first[0]):.1f}\n")
            out.write(f"{now:.6f} {seq} {sent:.6f}\n")
            out.flush()
            first = (seq, sent)
        last, last_pkt = now, (seq, sent)


if __name__ == "__main__":
    mode, host, port, arg = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    try:
        (send if mode == "send" else recv)(host, port, arg)
    except KeyboardInterrupt:
        pass
