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


def test_policy_keygen_publish_place_show(tmp_path, run):
    config = tmp_path / "collector.toml"
    key_file = tmp_path / "keys" / "policy.key"
    config.write_text(
        f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\npolicy_key_file = "{key_file}"\n'
    )
    no_key = run(config, "policy", "publish", "province", "-")
    assert no_key.returncode == 2 and "policy_key_file" in no_key.stderr
    made = run(config, "policy", "keygen", "--json")
    assert made.returncode == 0, made.stderr
    pub = json.loads(made.stdout)["public_key"]
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    again = run(config, "policy", "keygen")
    assert again.returncode == 2 and "--force" in again.stderr
    assert run(config, "gateways", "add", "desa-satu").returncode == 0
    assert run(config, "gateways", "add", "desa-dua").returncode == 0

    good = tmp_path / "province.json"
    good.write_text(json.dumps({"free_tier": {"down_kbps": 768}, "ntp_servers": ["ntp.id"]}))
    out = run(config, "policy", "publish", "province", str(good), "--json")
    assert out.returncode == 0, out.stderr
    published = json.loads(out.stdout)
    assert published["gateways"] == ["desa-dua", "desa-satu"] and published["version"] == 1
    placed = run(config, "policy", "place", "desa-satu", "sekernan", "--json")
    assert json.loads(placed.stdout) == {"id": "desa-satu", "kecamatan": "sekernan", "version": 2}

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"walled_garden_domains": ["not a domain"]}))
    for args in (
        ("publish", "province", str(bad)),
        ("publish", "kota:jambi", str(good)),
        ("publish", "province", str(tmp_path / "missing.json")),
        ("place", "desa-satu", "!!!"),
        ("place", "desa-satu", "x" * 101),
    ):
        refused = run(config, "policy", *args)
        assert refused.returncode == 2, (args, refused)
        assert len(refused.stderr.strip().splitlines()) == 1
    shown = json.loads(run(config, "policy", "show", "--json").stdout)
    assert [s["scope"] for s in shown["scopes"]] == ["province"]
    assert {g["id"]: g["published"] for g in shown["gateways"]} == {"desa-dua": 1, "desa-satu": 2}
    doc = json.loads(run(config, "policy", "show", "--gateway", "desa-satu", "--json").stdout)
    assert doc["policy"]["free_tier"] == {"down_kbps": 768} and doc["gateway"] == "desa-satu"

    # What the gateways pin verifies what was published.
    from sqlalchemy import create_engine, text

    from hotspot import policy

    eng = create_engine(f"sqlite:///{tmp_path}/c.db")
    with eng.connect() as c:
        env = json.loads(
            c.execute(
                text("select envelope from policy_document where gateway_id='desa-dua'")
            ).scalar_one()
        )
    eng.dispose()
    assert policy.verify(env, pub, "desa-dua").version == 1
    # The dashboard's kecamatan is the policy's: a name as people write it reaches its scope,
    # and setting it on the dashboard's command signs the document again too.
    kec = tmp_path / "kec.json"
    kec.write_text(json.dumps({"free_tier": {"down_kbps": 512}}))
    assert run(config, "policy", "publish", "kecamatan:kumpeh-ulu", str(kec)).returncode == 0
    moved = run(config, "gateways", "set", "desa-dua", "--kecamatan", "Kumpeh Ulu", "--json")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["policy_version"] == "4"
    shown = json.loads(run(config, "policy", "show", "--gateway", "desa-dua", "--json").stdout)
    assert shown["version"] == 4 and shown["policy"]["free_tier"]["down_kbps"] == 512
