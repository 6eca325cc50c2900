"""Slowloris against the real portal behind the real gateway (issue #10, item 15).

One walled phone opens 4 × workers × threads connections to the portal and trickles header
lines, never finishing a request. The gateway's ``portal_conns`` meter refuses what is over
``portal_conn_limit``; the portal's worker cuts every slow socket after ``read_timeout``; a
second phone's ``GET /`` keeps answering quickly meanwhile.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.netns.helpers import GW_LAN_IP, PORTAL_PORT, curl, wait_until
from testsupport.testbed import portal_settings

WORKERS = 2
THREADS = 4
READ_TIMEOUT = 3
CONN_LIMIT = 3  # below THREADS, as the defaults are (10 < 16)
ATTACK_SECONDS = READ_TIMEOUT + 6


@pytest.fixture
def portal_village(gateway_factory, upstream, tmp_path):
    gw = gateway_factory(
        {
            "network": {"portal_conn_limit": CONN_LIMIT},
            "portal": portal_settings(
                tmp_path, workers=WORKERS, threads=THREADS, read_timeout=READ_TIMEOUT
            ),
        }
    )
    gw.start_portal()
    return gw


def _slowloris(testbed, ns: str, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *testbed.ns_exec(ns),
            sys.executable,
            "-m",
            "testsupport.slowloris",
            GW_LAN_IP,
            str(PORTAL_PORT),
            str(count),
            str(ATTACK_SECONDS),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_one_phone_trickling_headers_does_not_freeze_the_portal(portal_village, testbed):
    attacker, villager = testbed.phones[0], testbed.phones[1]
    url = f"http://{GW_LAN_IP}:{PORTAL_PORT}/"
    assert curl(testbed, villager.ns, url, timeout=5).code == "200"

    count = 4 * WORKERS * THREADS
    attack = _slowloris(testbed, attacker.ns, count)
    try:
        time.sleep(1)  # the attack's sockets are open and trickling
        slowest = 0.0
        while attack.poll() is None:
            started = time.monotonic()
            answer = curl(testbed, villager.ns, url, timeout=5)
            took = time.monotonic() - started
            assert answer.code == "200", answer
            slowest = max(slowest, took)
            time.sleep(0.3)
        assert slowest < 2.0, f"the villager waited {slowest:.2f} s"
        out, _ = attack.communicate(timeout=30)
    finally:
        if attack.poll() is None:
            attack.kill()
    result = json.loads(out)
    # The gateway let no more than portal_conn_limit sockets of one phone through ...
    assert result["accepted"] <= CONN_LIMIT, result
    assert result["refused"] >= count - CONN_LIMIT, result
    # ... and the portal cut every one of them within its read timeout.
    assert result["still_open"] == 0, result
    for conn in result["connections"]:
        if not conn["refused"]:
            assert conn["closed_after"] <= READ_TIMEOUT + 1.5, conn
    # Connections are counted while open only: once cut, the phone may come back.
    wait_until(
        lambda: curl(testbed, attacker.ns, url, timeout=5).code == "200",
        10,
        what="the attacker's own plain GET after the attack",
    )
