"""`hotspot gateway run` sets the interpreter's switch interval to a millisecond before the
daemon starts (gateway/cli.py): a thread back from the kernel waits for a busy thread's
interval to end, and five milliseconds was the aim a login must not wait (issue #12)."""

from __future__ import annotations

import argparse
import sys

import gateway.daemon
from gateway import cli


def test_the_daemon_runs_with_a_one_millisecond_switch_interval(monkeypatch, tmp_path):
    seen: list[float] = []

    class Stand:
        def __init__(self, *args, **kwargs):
            pass

        def run(self) -> int:
            seen.append(sys.getswitchinterval())
            return 0

    monkeypatch.setattr(gateway.daemon, "Gateway", Stand)
    monkeypatch.setattr(cli, "setup_logging", lambda level: None)
    before = sys.getswitchinterval()
    try:
        config = tmp_path / "hotspot.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/h.db"\n')
        assert cli._run(argparse.Namespace(config=str(config), log_level="INFO")) == 0
    finally:
        sys.setswitchinterval(before)
    assert seen == [cli.SWITCH_INTERVAL_S] and cli.SWITCH_INTERVAL_S == 0.001
