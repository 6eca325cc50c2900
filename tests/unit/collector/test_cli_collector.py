"""``hotspot collector …`` as a process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.commands import hotspot_in_process, hotspot_process


def process(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return hotspot_process(config, "collector", *args)


@pytest.fixture
def run(capsys):
    """In-process ``hotspot --config FILE collector ARGS``: (returncode, stdout, stderr)."""

    def call(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return hotspot_in_process(capsys, config, "collector", *args)

    return call


def test_gateways_and_tokens(tmp_path, run):
    config = tmp_path / "collector.toml"
    config.write_text(f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n')
    out = process(config, "gateways", "add", "muaro-jambi-01", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"id", "secret"} and data["id"] == "muaro-jambi-01"
    assert len(data["secret"]) >= 32
    again = run(config, "gateways", "add", "muaro-jambi-01")
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    human = run(config, "gateways", "add", "desa-dua")
    assert 'gateway_id = "desa-dua"' in human.stdout and "secret = " in human.stdout
    bad = run(config, "gateways", "add", "Not Valid")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    listed = json.loads(run(config, "gateways", "list", "--json").stdout)
    assert [g["id"] for g in listed] == ["desa-dua", "muaro-jambi-01"]
    assert not listed[0]["online"]
    rotated = json.loads(run(config, "gateways", "rotate", "desa-dua", "--json").stdout)
    assert rotated["secret"] != data["secret"]

    tok = run(config, "tokens", "create", "diskominfo", "--json")
    assert tok.returncode == 0
    t = json.loads(tok.stdout)
    assert set(t) == {"name", "token"} and t["name"] == "diskominfo" and len(t["token"]) > 30
    assert run(config, "tokens", "create", "diskominfo").returncode == 1
    assert "diskominfo" in run(config, "tokens", "list").stdout
    assert run(config, "tokens", "revoke", "diskominfo").returncode == 0
    assert run(config, "tokens", "revoke", "diskominfo").returncode == 1


def test_config_errors_exit_2_naming_the_key(tmp_path, run):
    config = tmp_path / "collector.toml"
    config.write_text('[collector]\nbind = "nowhere"\n')
    out = run(config, "gateways", "list")
    assert out.returncode == 2
    assert out.stderr.strip() == "hotspot: config error: collector.bind: 'nowhere' is not HOST:PORT"
    good = tmp_path / "good.toml"
    good.write_text(f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n')
    out = run(good, "run", "--bind", "0.0.0.0")
    assert out.returncode == 2 and "--bind" in out.stderr
