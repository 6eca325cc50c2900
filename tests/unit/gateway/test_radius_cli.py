"""``hotspot radius test`` and ``hotspot radius queue`` (gateway/radius_cli.py)."""

from __future__ import annotations

import json

from hotspot.db import open_database
from tests.unit.commands import hotspot_in_process
from tests.unit.conftest import device_overrides
from tests.unit.hotspot.radius.test_packets import SECRET, grant, serve
from tests.unit.portal.test_radius_login import reject
from testsupport.testbed import write_toml

accept = grant("00-00-00-00-00-00")  # no phone: the terminal


def config(tmp_path, port: int, enabled: bool = True):
    secret = tmp_path / "radius.secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    data = device_overrides(tmp_path)
    data["radius"] = {
        "enabled": enabled,
        "servers": [f"127.0.0.1:{port}"],
        "secret_file": str(secret),
        "timeout_seconds": 0.3,
        "attempts": 1,
    }
    return write_toml(tmp_path / "hotspot.toml", data)


def test_an_accepted_account_and_what_it_sets(tmp_path, capsys):
    path = config(tmp_path, serve([accept, accept]))
    done = hotspot_in_process(capsys, path, "radius", "test", "budi", "--password", "rahasia")
    assert done.returncode == 0, done.stderr
    assert "accepted by 127.0.0.1" in done.stdout and "2000" in done.stdout
    done = hotspot_in_process(
        capsys, path, "radius", "test", "budi", "--password", "rahasia", "--json"
    )
    out = json.loads(done.stdout)
    assert out["down_kbps"] == 2000 and out["session_seconds"] == 3600
    assert out["classes"] == ["6b656c6173"]


def test_a_reject_and_silence_exit_1_with_one_line(tmp_path, capsys):
    done = hotspot_in_process(capsys, config(tmp_path, serve([reject])), "radius", "test", "x")
    assert done.returncode == 1 and "radius-reject" in done.stderr
    done = hotspot_in_process(
        capsys, config(tmp_path, serve([lambda d: None])), "radius", "test", "x"
    )
    assert done.returncode == 1 and "radius-unavailable" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_radius_off_is_a_config_error(tmp_path, capsys):
    done = hotspot_in_process(capsys, config(tmp_path, 1, enabled=False), "radius", "test", "x")
    assert done.returncode == 2 and "radius.enabled" in done.stderr


def test_the_queue(tmp_path, capsys):
    path = config(tmp_path, 1)
    open_database(f"sqlite:///{tmp_path}/hotspot.db").dispose()
    done = hotspot_in_process(capsys, path, "radius", "queue")
    assert done.returncode == 0 and "nothing waiting" in done.stdout
    done = hotspot_in_process(capsys, path, "radius", "queue", "--json")
    assert json.loads(done.stdout)["waiting"] == 0
