"""``hotspot collector alerts …`` and ``gateways set``: JSON out, one line and exit 2 for a bad
argument or configuration."""

from __future__ import annotations

import json

import pytest

from tests.unit.commands import hotspot_in_process


@pytest.fixture
def run(capsys):
    def call(config, *args):
        return hotspot_in_process(capsys, config, "collector", *args)

    return call


def test_alerts_run_list_and_gateways_set(tmp_path, run):
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n'
        "[alerts]\nnot_reporting_minutes = 1\n"
    )
    assert run(config, "gateways", "add", "desa-satu").returncode == 0
    out = run(
        config,
        "gateways",
        "set",
        "desa-satu",
        "--kabupaten",
        "Muaro Jambi",
        "--kecamatan",
        "Sekernan",
        "--lat",
        "-1.55",
        "--lon",
        "103.45",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "id": "desa-satu",
        "kabupaten": "Muaro Jambi",
        "kecamatan": "Sekernan",
        "latitude": -1.55,
        "longitude": 103.45,
    }
    res = run(config, "alerts", "run", "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["skipped"] is False and got["villages"] == 1 and got["raised"] == 0  # never seen
    listed = run(config, "alerts", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert run(config, "alerts", "list").stdout.strip() == "no alerts"
    for bad in (
        ("gateways", "set", "desa-satu", "--lat", "91", "--lon", "0"),
        ("gateways", "set", "desa-satu", "--lat", "1"),
        ("gateways", "set", "desa-satu", "--kecamatan", "a\nb"),
        ("gateways", "set", "desa-satu", "--lat", "north", "--lon", "0"),
    ):
        r = run(config, *bad)
        assert r.returncode == 2, (bad, r)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert run(config, "gateways", "set", "nowhere", "--kabupaten", "x").returncode == 1


def test_bad_alerts_table_is_one_line_and_exit_2(tmp_path, run):
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n[alerts]\nquiet_hours = "late"\n'
    )
    r = run(config, "alerts", "run")
    assert r.returncode == 2 and "alerts.quiet_hours" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_the_running_collector_evaluates_by_itself(tmp_path, run):
    """`collector run` (gunicorn, two workers): each worker's loop evaluates; nobody runs a
    command, and the alert is raised once."""
    import subprocess
    import sys
    import time

    from collector import config as cc
    from collector.app import create_app
    from tests.unit.collector.helpers import SECRET, health_record, post, register
    from testsupport.loopback import free_port

    port = free_port("127.0.0.1")
    db = f"sqlite:///{tmp_path}/c.db"
    config = tmp_path / "collector.toml"
    config.write_text(
        f'[collector]\ndatabase_url = "{db}"\nbind = "127.0.0.1:{port}"\nworkers = 2\n'
        "[alerts]\ninterval_seconds = 1\nraise_after_minutes = 0\n"
    )
    app = create_app(cc.load(config))
    register(app, "desa-uji", SECRET)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    assert post(app.test_client(), [health_record(sampled_at=stamp)]).status_code == 200
    app.extensions["collector_db"].dispose()
    server = subprocess.Popen(
        [sys.executable, "-m", "hotspot_cli", "--config", str(config), "collector", "run"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        kinds: list[str] = []
        while time.monotonic() < deadline and len(kinds) < 2:
            time.sleep(0.5)
            listed = run(config, "alerts", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            kinds = sorted(a["kind"] for a in json.loads(listed.stdout))
        assert kinds == ["disk", "temperature"]  # the helpers' record: disk 91 %, 80.5 °C
    finally:
        server.terminate()
        server.wait(timeout=15)
