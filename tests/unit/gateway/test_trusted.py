"""Trusted devices (issue #13, item 5) in the session engine, against the fake data path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot import protocol as proto
from hotspot.control import ControlClient
from hotspot.errors import ErrorCode, NotFound, Refused, UsageError
from hotspot.model import ClientSession, HourlyUsage, Source
from hotspot.units import MB
from tests.unit.commands import hotspot_in_process
from tests.unit.fakes import FakeDataPath

PC, PC_IP = "02:00:00:00:0a:01", "10.10.0.21"
CCTV, CCTV_IP = "02:00:00:00:0a:02", "10.10.0.22"


def running(db, mac):
    with Session(db) as s:
        return s.scalar(
            select(ClientSession).where(ClientSession.mac == mac, ClientSession.ended_at.is_(None))
        )


def test_trusted_device_gets_a_session_when_seen(engine, datapath, db):
    out = engine.trust(mac=PC, label="PC kantor desa", tier="free", created_by="admin")
    assert out["session"] is None and out["label"] == "PC kantor desa"
    assert engine.tick().ended == [] and running(db, PC) is None  # not on the LAN yet
    datapath.neighbours[PC_IP] = PC
    engine.tick()
    sess = running(db, PC)
    assert sess.source is Source.TRUSTED and sess.ip == PC_IP and sess.tier == "free"
    assert sess.expires_at is None and sess.idle_minutes == 0
    assert (PC_IP, PC) in datapath.state.authorized
    assert engine.trusted()[0]["ip"] == PC_IP


def test_trust_of_a_device_on_the_lan_lets_it_out_at_once(engine, datapath, db):
    datapath.neighbours[PC_IP] = PC
    out = engine.trust(mac=PC, label="PC", tier="premium")
    assert out["ip"] == PC_IP and (PC_IP, PC) in datapath.state.authorized


def test_unlimited_tier_has_the_uplinks_rates_and_no_limits(engine, datapath, db, cfg):
    datapath.neighbours[CCTV_IP] = CCTV
    engine.trust(mac=CCTV, label="CCTV", tier="unlimited")
    sess = running(db, CCTV)
    assert sess.tier == "unlimited"
    assert sess.down_kbps == cfg.network.uplink_down_kbps
    assert sess.up_kbps == cfg.network.uplink_up_kbps
    # "unlimited" is for trusted devices only: nobody else may be let out on it.
    with pytest.raises(UsageError):
        engine.authorize(ip="10.10.0.30", mac="02:00:00:00:0a:30", tier="unlimited")


def test_unknown_tier_refused(engine):
    with pytest.raises(UsageError):
        engine.trust(mac=PC, label="PC", tier="gold")
    assert engine.trusted() == []


def test_survives_an_engine_restart(cfg, db, datapath, clock, engine):
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    clock.advance(days=3)  # far past any session length or idle timeout
    fresh = FakeDataPath()  # the kernel after a reboot: empty
    fresh.neighbours[PC_IP] = PC
    again = SessionEngine(cfg, db, fresh, clock=clock, monotonic=clock.monotonic)
    again.start()
    assert (PC_IP, PC) in fresh.state.authorized
    again.tick()
    assert (PC_IP, PC) in fresh.state.authorized
    assert running(db, PC).source is Source.TRUSTED


def test_trust_survives_a_restart_while_the_device_is_away(cfg, db, clock, engine):
    engine.trust(mac=PC, label="PC", tier="free")
    fresh = FakeDataPath()
    again = SessionEngine(cfg, db, fresh, clock=clock, monotonic=clock.monotonic)
    again.start()
    again.tick()
    assert fresh.state.authorized == set()
    fresh.neighbours[PC_IP] = PC
    again.tick()
    assert (PC_IP, PC) in fresh.state.authorized


def test_untrust_ends_the_session_and_walls_it_again(engine, datapath, db):
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    sid = running(db, PC).id
    assert engine.untrust(mac=PC) == {"mac": PC, "ended_session": sid}
    assert datapath.state.authorized == set()
    with Session(db) as s:
        assert s.get(ClientSession, sid).end_reason == "untrusted"
    engine.tick()
    assert running(db, PC) is None and datapath.state.authorized == set()
    with pytest.raises(NotFound) as err:
        engine.untrust(mac=PC)
    assert err.value.code is ErrorCode.NOT_TRUSTED


def test_blocked_device_cannot_be_trusted(engine, datapath, db):
    engine.block(mac=PC, reason="abuse")
    datapath.neighbours[PC_IP] = PC
    with pytest.raises(Refused) as err:
        engine.trust(mac=PC, label="PC", tier="free")
    assert err.value.code is ErrorCode.BLOCKED
    assert engine.trusted() == [] and running(db, PC) is None


def test_block_wins_over_trust(engine, datapath, db):
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    engine.block(mac=PC)
    engine.tick()
    assert running(db, PC) is None and datapath.state.authorized == set()
    assert engine.trusted()[0]["blocked"] is True
    engine.unblock(mac=PC)
    engine.tick()
    assert running(db, PC).source is Source.TRUSTED


def test_no_daily_allowance_and_no_timeouts(engine, datapath, db, clock):
    """The free tier's 120 minutes and 300 MB a day do not hold a trusted device back."""
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    for _ in range(5):
        clock.advance(hours=1)
        datapath.traffic(PC_IP, down=100 * MB)
        assert engine.tick().ended == []
    out = engine.client(mac=PC)["session"]
    assert out["source"] == "trusted" and out["seconds_remaining"] is None
    assert out["bytes_remaining"] is None


def test_counted_in_usage(engine, datapath, db, clock):
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    clock.advance(seconds=30)
    datapath.traffic(PC_IP, down=5000, up=700)
    engine.tick(force_flush=True)
    with Session(db) as s:
        rows = list(s.scalars(select(HourlyUsage).where(HourlyUsage.mac == PC)))
    assert sum(r.bytes_down for r in rows) == 5000 and sum(r.bytes_up for r in rows) == 700


def test_a_kick_is_undone_by_the_next_tick(engine, datapath, db):
    """An operator's kick does not take a trusted device off: only untrust or block does."""
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    engine.deauthorize(mac=PC)
    engine.tick()
    assert running(db, PC).source is Source.TRUSTED


def test_a_free_session_becomes_trusted(engine, datapath, db):
    datapath.neighbours[PC_IP] = PC
    engine.authorize(ip=PC_IP, mac=PC, tier="free")
    engine.trust(mac=PC, label="PC", tier="free")
    assert running(db, PC).source is Source.TRUSTED


def test_changing_the_tier_moves_the_session(engine, datapath, db):
    datapath.neighbours[PC_IP] = PC
    engine.trust(mac=PC, label="PC", tier="free")
    engine.trust(mac=PC, label="PC desa", tier="premium")
    assert running(db, PC).tier == "premium"
    assert [t["label"] for t in engine.trusted()] == ["PC desa"]


# -- the control socket and the CLI ---------------------------------------------------------


def hotspot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hotspot_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_over_the_socket(server, cfg, datapath, engine):
    datapath.neighbours[PC_IP] = PC
    with ControlClient(cfg.control.socket) as ctl:
        out = ctl.send(proto.TrustRequest(mac=PC, label="PC", tier="free", created_by="admin"))
        assert out["ip"] == PC_IP and out["created_by"] == "admin"
        assert [t["mac"] for t in ctl.send(proto.TrustedRequest())] == [PC]
        with pytest.raises(UsageError):
            ctl.send(proto.TrustRequest(mac=CCTV, label="CCTV", tier="gold"))
        engine.block(mac=CCTV)
        with pytest.raises(Refused) as err:
            ctl.send(proto.TrustRequest(mac=CCTV, label="CCTV", tier="free"))
        assert err.value.code is ErrorCode.BLOCKED
        assert ctl.send(proto.UntrustRequest(mac=PC))["ended_session"] is not None
        with pytest.raises(NotFound) as nf:
            ctl.send(proto.UntrustRequest(mac=PC))
        assert nf.value.code is ErrorCode.NOT_TRUSTED


def test_cli_add_list_remove(server, config_file, datapath, capsys):
    # The first command as the operator runs it (a process); the rest in this process, the
    # same parser and printing without a Python start each (that was 97 s under load).
    conf = ("--config", str(config_file))
    datapath.neighbours[PC_IP] = PC
    add = hotspot(*conf, "trusted", "add", PC, "--label", "PC kantor desa", "--tier", "unlimited")
    assert add.returncode == 0, add.stderr
    assert "trusted 02:00:00:00:0a:01 (PC kantor desa) on unlimited" in add.stdout
    listed = hotspot_in_process(capsys, config_file, "trusted", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["label"] == "PC kantor desa" and row["ip"] == PC_IP
    assert row["created_by"].startswith("cli")
    assert "PC kantor desa" in hotspot_in_process(capsys, config_file, "trusted", "list").stdout
    rm = hotspot_in_process(capsys, config_file, "trusted", "remove", PC)
    assert rm.returncode == 0 and "untrusted 02:00:00:00:0a:01" in rm.stdout
    again = hotspot_in_process(capsys, config_file, "trusted", "remove", PC)
    assert again.returncode == 1 and "not-trusted" in again.stderr
    assert again.stderr.count("\n") == 1
    listed = hotspot_in_process(capsys, config_file, "trusted", "list")
    assert listed.stdout.strip() == "no trusted devices"


@pytest.mark.parametrize(
    "args, needle",
    [
        (("trusted", "add", "not-a-mac", "--label", "PC", "--tier", "free"), "not a MAC"),
        (("trusted", "add", PC, "--tier", "free"), "--label"),
        (("trusted", "add", PC, "--label", "PC"), "--tier"),
        (("trusted", "add", PC, "--label", " ", "--tier", "free"), "--label"),
        (("trusted", "add", PC, "--label", "x" * 81, "--tier", "free"), "--label"),
        (("trusted", "remove"), "mac"),
        (("trusted", "explode"), "invalid choice"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, needle, config_file, capsys):
    out = hotspot_in_process(capsys, config_file, *args)
    assert out.returncode == 2, out
    assert needle in out.stderr and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr
