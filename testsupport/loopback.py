"""Servers the tests and benchmarks start on a loopback address: a free port to give one,
and waiting until it listens."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on at ``host`` just now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def wait_listening(host: str, port: int, proc: subprocess.Popen[Any], timeout: float = 30) -> bool:
    """Wait until ``host:port`` accepts connections: True then; False once the server
    ``proc`` has exited or ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while not listening(host, port):
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
