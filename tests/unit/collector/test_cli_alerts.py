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
