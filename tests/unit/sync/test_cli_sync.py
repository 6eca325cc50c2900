"""``hotspot sync …`` as a process, against a collector served on loopback."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.unit.collector.helpers import totals
from tests.unit.commands import hotspot_in_process, hotspot_process
from tests.unit.sync.conftest import gateway_overrides, seed_usage
from testsupport.testbed import write_toml

process = hotspot_process


@pytest.fixture
def hotspot(capsys):
    """In-process ``hotspot --config FILE ARGS``: (returncode, stdout, stderr)."""

    def call(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return hotspot_in_process(capsys, config, *args)

    return call


@pytest.fixture
def served(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_once_delivers_then_fails_in_one_line_when_the_collector_is_gone(
    tmp_path, served, app, gwdb, hotspot
):
    over = gateway_overrides(tmp_path, upstream_url=served)
    config = write_toml(tmp_path / "hotspot.toml", over)
    rows = seed_usage(gwdb, devices=5, hours=48)
    out = process(config, "sync", "once", "--json")
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout)
    assert stats["pending"] == 0 and stats["delivered_records"] >= rows + 2  # + info, health
    assert len(totals(app.extensions["collector_db"])) == rows
    status = hotspot(config, "sync", "status", "--json")
    assert json.loads(status.stdout)["pending"] == 0

    dead = write_toml(
        tmp_path / "dead.toml", gateway_overrides(tmp_path, upstream_url="http://127.0.0.1:9")
    )
    # Something to send: the next health report falls due health_seconds (1 s here) after
    # the last. Without the wait, a run started within 0.9 s found nothing to send and
    # succeeded without asking the collector (seen once in CI on a quiet machine).
    time.sleep(1.0)
    failed = process(dead, "sync", "once")
    assert failed.returncode == 1
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hotspot: sync: ")
    assert "not delivered" in lines[0]
    human = hotspot(dead, "sync", "status")
    assert "pending records" in human.stdout and "Connection refused" in human.stdout


def test_the_agent_fsyncs_every_commit(tmp_path, served, gwdb, hotspot, monkeypatch):
    """A batch is stored before it is sent: with ``synchronous=NORMAL`` a power cut could
    lose it after the collector had it, and its records went again under another key (found
    by tests/integration/test_power_cut.py)."""
    from hotspot import db as hotspot_db

    engines = []
    real_open = hotspot_db.open_database

    def open_database(url, **kw):
        engines.append(real_open(url, **kw))
        return engines[-1]

    monkeypatch.setattr(hotspot_db, "open_database", open_database)
    config = write_toml(tmp_path / "hotspot.toml", gateway_overrides(tmp_path, upstream_url=served))
    seed_usage(gwdb, devices=1, hours=1)
    assert hotspot(config, "sync", "once").returncode == 0
    assert len(engines) == 1
    with engines[0].connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_past_its_memory_ceiling_the_agent_stops_to_be_started_again(tmp_path, served, app, gwdb):
    """``[sync] restart_above_mb``: the bound on whatever grows in a process that runs for
    months (the soak saw the agent's arenas creep up while its Python objects stayed level).
    Past it, after giving glibc's free pages back, ``sync run`` logs one warning and exits 75
    for systemd's ``Restart=always``; nothing is lost (the next run delivers it all)."""
    over = gateway_overrides(tmp_path, upstream_url=served)
    over["sync"]["restart_above_mb"] = 32  # below any Python process's size: at once
    config = write_toml(tmp_path / "hotspot.toml", over)
    rows = seed_usage(gwdb, devices=2, hours=24)
    out = process(config, "sync", "run")
    assert out.returncode == 75, out.stderr
    warned = [line for line in out.stderr.splitlines() if "restart_above_mb" in line]
    assert len(warned) == 1 and "past [sync] restart_above_mb = 32" in warned[0], out.stderr
    over["sync"]["restart_above_mb"] = 0  # off
    config = write_toml(tmp_path / "hotspot.toml", over)
    assert process(config, "sync", "once").returncode == 0
    assert len(totals(app.extensions["collector_db"])) == rows


def test_a_ceiling_that_is_a_mistake_of_units_is_one_line_and_exit_2(tmp_path, hotspot):
    over = gateway_overrides(tmp_path, upstream_url="http://127.0.0.1:9")
    over["sync"]["restart_above_mb"] = 16
    out = hotspot(write_toml(tmp_path / "h.toml", over), "sync", "run")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "hotspot: config error: sync.restart_above_mb: must be 0 (off) or at least 32, got 16"
    )


def test_unconfigured_sync_is_a_config_error(tmp_path, hotspot):
    over = gateway_overrides(tmp_path)
    over["sync"] = {}
    config = write_toml(tmp_path / "h.toml", over)
    out = hotspot(config, "sync", "once")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "hotspot: config error: sync.upstream_url: not set: this gateway does not report"
    )
    bad = write_toml(tmp_path / "bad.toml", {**over, "sync": {"interval_seconds": 0}})
    out = hotspot(bad, "sync", "run")
    assert out.returncode == 2 and "sync.interval_seconds" in out.stderr


def test_pseudonym_and_purge(tmp_path, gwdb, hotspot):
    config = write_toml(tmp_path / "h.toml", gateway_overrides(tmp_path))
    out = hotspot(config, "sync", "pseudonym", "02-11-22-33-44-55", "--json")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert data["mac"] == "02:11:22:33:44:55" and len(data["pseudonym"]) == 16
    again = hotspot(config, "sync", "pseudonym", "02:11:22:33:44:55")
    assert again.stdout.strip() == data["pseudonym"]
    bad = hotspot(config, "sync", "pseudonym", "not-a-mac")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    purged = hotspot(config, "sync", "purge", "--json")
    assert purged.returncode == 0 and "cutoff" in json.loads(purged.stdout)
