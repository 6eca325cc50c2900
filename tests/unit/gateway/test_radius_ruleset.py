"""The uplink lets CoA/Disconnect-Requests in only from the RADIUS servers (docs/radius.md)."""

from __future__ import annotations

import json

from gateway import ruleset
from gateway.ruleset import Layout
from hotspot import config as config_mod
from tests.unit.gateway.test_ruleset import rules_of


def wan_rules(radius=None):
    cfg = config_mod.load(overrides={"radius": radius} if radius else None)
    return [
        json.dumps(r)
        for r in rules_of(ruleset.table_commands(Layout.from_config(cfg)), "wan_input")
    ]


def test_no_radius_no_rule():
    assert not any("3799" in r for r in wan_rules())


def test_coa_only_from_the_servers():
    rules = wan_rules(
        {
            "enabled": True,
            "servers": ["10.20.0.5", "10.20.0.6:11812"],
            "secret_file": "/etc/hotspot/radius.secret",
        }
    )
    [coa] = [r for r in rules if "3799" in r]
    assert '"saddr"' in coa and "10.20.0.5" in coa and "10.20.0.6" in coa and '"udp"' in coa
    assert rules.index(coa) == len(rules) - 2  # before the final counted drop
    off = wan_rules({"enabled": True, "servers": ["10.20.0.5"], "secret_file": "/x", "coa_port": 0})
    assert not any("3799" in r or '"dport": 0' in r for r in off)
