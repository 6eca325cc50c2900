"""Slowloris against the real collector under gunicorn on loopback (issue #10, item 15): a
client trickling header lines on more sockets than the collector has threads does not stop
it answering, and every slow socket is cut within ``read_timeout``. No root needed."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

from testsupport.loopback import free_port, wait_listening
from testsupport.testbed import write_toml

HOST = "127.0.0.1"
WORKERS, THREADS, READ_TIMEOUT = 1, 2, 2


def _healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - started


def test_slow_clients_do_not_freeze_the_collector(tmp_path):
    port = free_port(HOST)
    config = write_toml(
        tmp_path / "collector.toml",
        {
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "bind": f"{HOST}:{port}",
                "workers": WORKERS,
                "threads": THREADS,
                "read_timeout": READ_TIMEOUT,
            }
        },
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "hotspot_cli", "--config", str(config), "collector", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    attack = None
    try:
        assert wait_listening(HOST, port, server), "no collector"
        assert _healthz(port)[0] == 200
        count = 4 * WORKERS * THREADS
        attack = subprocess.Popen(
            [sys.executable, "-m", "testsupport.slowloris", HOST, str(port), str(count), "6"],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)
        slowest = 0.0
        while attack.poll() is None:
            status, took = _healthz(port)
            assert status == 200
            slowest = max(slowest, took)
            time.sleep(0.2)
        result = json.loads(attack.communicate(timeout=30)[0])
    finally:
        if attack is not None and attack.poll() is None:
            attack.kill()
        server.terminate()
        server.wait(timeout=15)
    # Threads are freed as slow sockets are cut, so a request waits at most one timeout.
    assert slowest < READ_TIMEOUT + 1, slowest
    assert result["accepted"] == count and result["still_open"] == 0, result
    for conn in result["connections"]:
        assert conn["closed_after"] <= READ_TIMEOUT + 1.5, conn
