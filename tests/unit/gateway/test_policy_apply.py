"""A policy taken by the engine (SessionEngine.apply_config) against the fake data path:
running free sessions on the tier's own rates move to the new rates at once; a session whose
rates were set for it alone, and other tiers, keep theirs; new sessions get the new rates."""

from __future__ import annotations

from gateway import shaping
from hotspot import config as config_mod
from hotspot import policy
from tests.unit.hotspot.test_policy import GW, PUB, envelope

A, A_IP = "02:00:00:00:0c:01", "10.10.0.41"
B, B_IP = "02:00:00:00:0c:02", "10.10.0.42"
C, C_IP = "02:00:00:00:0c:03", "10.10.0.43"
D, D_IP = "02:00:00:00:0c:04", "10.10.0.44"


def ceil(cfg, datapath, ip):
    minor = shaping.client_minor(ip, cfg.network.lan_network)
    return datapath.state.down_ceil.get(minor), datapath.state.up_ceil.get(minor)


def effective(cfg, fields, version=1):
    local = config_mod.validate({**cfg.raw, "sync": {**cfg.raw.get("sync", {}), "gateway_id": GW}})
    return policy.effective_config(local, policy.verify(envelope(version, fields), PUB, GW))


def test_running_free_sessions_follow_the_new_rates(cfg, engine, datapath):
    engine.authorize(ip=A_IP, mac=A, tier="free")
    engine.authorize(ip=B_IP, mac=B, tier="premium")
    engine.authorize(ip=C_IP, mac=C, tier="free")
    sid = engine.client(ip=C_IP)["session"]["id"]
    engine.change_limits(session_id=sid, down_kbps=300, up_kbps=100)  # set for it alone
    assert ceil(cfg, datapath, A_IP) == (1024, 512)

    moved = engine.apply_config(effective(cfg, {"free_tier": {"down_kbps": 600, "up_kbps": 256}}))
    assert moved == 1
    assert ceil(cfg, datapath, A_IP) == (600, 256)
    assert ceil(cfg, datapath, B_IP) == (5120, 2048)  # another tier
    assert ceil(cfg, datapath, C_IP) == (300, 100)  # its own rates
    engine.authorize(ip=D_IP, mac=D, tier="free")
    assert ceil(cfg, datapath, D_IP) == (600, 256)
    # The next tick finds the kernel as the database says: nothing to put back.
    assert engine.reconcile() == ""


def test_a_policy_that_changes_no_rate_moves_no_session(cfg, engine, datapath):
    engine.authorize(ip=A_IP, mac=A, tier="free")
    applied = len(datapath.applied)
    assert engine.apply_config(effective(cfg, {"free_tier": {"daily_mb": 100}})) == 0
    assert len(datapath.applied) == applied
    assert engine.config.tiers["free"].daily_mb == 100


def test_the_walled_garden_changes_in_one_transaction(cfg):
    from gateway import ruleset

    layout = ruleset.Layout.from_config(cfg)
    cmds = ruleset.walled_garden_commands(layout, ("203.0.113.7/32", "198.51.100.0/24"), True)
    assert [next(iter(c)) for c in cmds] == ["flush", "add", "flush"]
    assert cmds[0]["flush"]["set"]["name"] == ruleset.WALLED
    assert cmds[1]["add"]["element"]["elem"] == [
        "203.0.113.7",
        {"prefix": {"addr": "198.51.100.0", "len": 24}},
    ]
    assert cmds[2]["flush"]["set"]["name"] == ruleset.WALLED_DNS
    # An empty garden: only the flush (and the names' set is left alone unless they changed).
    assert ruleset.walled_garden_commands(layout, ()) == cmds[:1]
