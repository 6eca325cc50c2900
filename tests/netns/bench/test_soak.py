"""A week in minutes, in CI: ``python3 -m bench.soak`` for about a minute (issue #11, item 6).

The whole device under churn — phones joining by DHCP, accepting, redeeming and topping up
vouchers, downloading, leaving, changing MAC, kicked mid-download; the collector going away
and coming back under the sync agent; the village clock (the gateway's, the portal's and the
agent's, ``HOTSPOT_TEST_CLOCK_SHIFT_FILE``) stepped to just before the next local midnight
every 25 s — then the invariants the long run bounds: open descriptors flat, sessions in the
database = sessions in the kernel at every check, bytes counted = bytes that crossed (±1%,
sessions ended mid-transfer included), the outbox drained once the collector is back, no
process died; and across the midnights: the free tier never granted again on the day it was
used up, no session ended early or stretched by a jump, the day's usage rows on the days the
clock showed and equal to the sessions' bytes. Long runs by hand: bench/README.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)"
)


def soak(tmp_path: Path, *args: str, timeout: float) -> dict:
    """``bench.soak ARGS`` with eight phones and a check every 5 s: its JSON result."""
    out = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--phones", "8", "--check-seconds", "5", *args]
        + ["--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.exists(), run.stderr[-3000:]
    return json.loads(out.read_text())


def test_a_short_soak_keeps_every_invariant(tmp_path):
    r = soak(tmp_path, "--hours", "0.015", "--day-seconds", "25", timeout=600)
    events = r["events"]
    # The churn happened: every kind of step at least once.
    for kind in ("join", "accept", "voucher", "download", "kick", "leave", "mac_change"):
        assert events.get(kind, 0) > 0, f"no {kind} in {events}"
    assert events.get("collector_toggle", 0) >= 2
    assert r["processes_died"] == {}
    # Compared under the gateway's lock (reconcile): the bench's own reads may catch an
    # operation between its commit and its kernel change (sessions_in_flight), not a mismatch.
    assert r["session_mismatch_count"] == 0, r["session_mismatches"]
    assert r["gateway_log"]["reconcile_client_fix_count"] == 0, r["gateway_log"]
    assert r["sessions_on_unused_vouchers"] == [], r["sessions_on_unused_vouchers"]
    assert r["sessions_at_end"] == {"db": 0, "kernel": 0}
    assert abs(r["bytes"]["diff_pct"]) <= 1.0, r["bytes"]
    assert r["outbox_pending_at_end"] == 0
    days = r["days"]
    assert len(days["midnights"]) >= 1, days  # at least one local midnight crossed
    assert len(days["days_visited"]) >= 2, days
    assert days["free_granted_twice_in_a_day"] == [], days
    assert days["sessions_ended_wrongly_count"] == 0, days["sessions_ended_wrongly"]
    assert days["usage_rows_on_unvisited_days"] == [], days
    assert abs(days["daily_vs_sessions_pct"]) <= 1.0, days
    gw = r["processes"]["gateway"]
    # Beyond its two pools, which fill when first needed, whenever that is in a short run
    # (a second SQLite connection at 41 s of 54 failed a CI): those are bounded by their
    # configuration, a leak shows in the rest.
    pooled = gw["pooled_fds_last"] - gw["pooled_fds_first"]
    assert gw["fds_last"] - gw["fds_first"] - pooled <= 3, gw
    # Its memory figures are the device's: the daemons ran with their units' environment
    # (MALLOC_ARENA_MAX=2; without it the gateway kept a malloc arena per control thread).
    assert r["environment_seen"]["gateway"] == {"MALLOC_ARENA_MAX": "2"}, r["environment_seen"]
    assert r["environment_seen"]["portal"] == {"MALLOC_ARENA_MAX": "2"}, r["environment_seen"]
    # A phone that changes its MAC gives the old MAC's lease back once its session has
    # ended (the last ones when the run ends every session): the pool then holds one lease
    # a phone, not one a MAC change (a run of 45 minutes emptied it before).
    assert 0 < events.get("dhcp_release", 0) <= events["mac_change"], events
    assert r["dhcp_pool"]["in_use_last"] <= 8, r["dhcp_pool"]
    for name in ("gateway", "dnsmasq", "walled-dns", "sync", "portal"):
        assert name in r["processes"], f"{name} gone: {sorted(r['processes'])}"
    # Phones may meet a refusal on a loaded machine (the portal's "busy" page when the
    # gateway answers slower than 5 s), never many; classified by the portal's error code.
    unexplained = sum(r["failures_unexplained_by_kind"].values())
    assert unexplained <= max(3, sum(events.values()) // 50), r["failures_unexplained"]


def test_a_short_soak_with_gateway_restarts_keeps_sessions_and_ages_vouchers(tmp_path):
    """``--restart-every``: the gateway stopped (SIGTERM, then SIGKILL) and started again
    under churn, as systemd does after an update or a crash. Every running session is kept
    (or ended by its own time meanwhile), the kernel equals the database after each start,
    the bytes still add up, and the vouchers used before a restart age on the stepped clock,
    so their MAC bindings are purged: the table shrinks (without restarts a soak's vouchers
    never age, docs/reliability.md "Still open")."""
    r = soak(
        tmp_path, "--hours", "0.03", "--day-seconds", "20", "--restart-every", "30", timeout=900
    )
    restarts = r["gateway_restarts"]
    assert [x["signal"] for x in restarts[:2]] == ["SIGTERM", "SIGKILL"], restarts
    for x in restarts:
        assert x["lost"] == [] and x["kernel_equals_db"], x
        assert x["answering_after_s"] < 30, x
    assert restarts[0]["exit_status"] == 0 and restarts[1]["exit_status"] == -9, restarts
    assert r["session_mismatch_count"] == 0, r["session_mismatches"]
    assert r["sessions_at_end"] == {"db": 0, "kernel": 0}
    assert abs(r["bytes"]["diff_pct"]) <= 1.0, r["bytes"]
    assert r["days"]["sessions_ended_wrongly_count"] == 0, r["days"]["sessions_ended_wrongly"]
    assert r["processes_died"] == {}
    bindings = [s["db_tables"].get("voucher_device", {}).get("rows", 0) for s in r["samples"]]
    assert any(b < a for a, b in zip(bindings, bindings[1:])), bindings
