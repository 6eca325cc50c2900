"""The nftables table is built as data: check its shape without a kernel."""

from __future__ import annotations

import json

from gateway import ruleset
from gateway.ruleset import Client, Layout
from hotspot import config as config_mod


def layout(**net):
    return Layout.from_config(config_mod.load(overrides={"network": net} if net else None))


def rules_of(cmds, chain):
    return [
        c["add"]["rule"]["expr"]
        for c in cmds
        if "rule" in c.get("add", {}) and c["add"]["rule"]["chain"] == chain
    ]


def test_table_is_replaced_atomically_and_touches_nothing_else():
    cmds = ruleset.table_commands(layout())
    assert cmds[:3] == [
        {"add": {"table": {"family": "inet", "name": "hotspot"}}},
        {"delete": {"table": {"family": "inet", "name": "hotspot"}}},
        {"add": {"table": {"family": "inet", "name": "hotspot"}}},
    ]
    for c in cmds[3:]:
        ((verb, obj),) = c.items()
        ((_kind, body),) = obj.items()
        assert body["table"] == "hotspot" and body["family"] == "inet"


def test_rule_count_does_not_depend_on_clients():
    lay = layout()
    clients = [
        Client(f"10.10.1.{i}", f"02:00:00:00:01:{i:02x}", f"1:{256 + i:x}") for i in range(1, 200)
    ]
    few = [c for c in ruleset.table_commands(lay) if "add" in c and "rule" in c["add"]]
    many = [c for c in ruleset.table_commands(lay, clients) if "add" in c and "rule" in c["add"]]
    assert len(few) == len(many)
    elements = [
        c for c in ruleset.table_commands(lay, clients) if "add" in c and "element" in c["add"]
    ]
    assert {e["add"]["element"]["name"] for e in elements} == {
        "authorized",
        "down_class",
        "up_class",
    }
    assert all(len(e["add"]["element"]["elem"]) == 199 for e in elements)


def test_priority_is_set_from_maps_in_forward_not_prerouting():
    cmds = ruleset.table_commands(layout())
    text = json.dumps(rules_of(cmds, "client_up") + rules_of(cmds, "to_lan"))
    assert '"data": "@up_class"' in text and '"data": "@down_class"' in text
    assert "priority" not in json.dumps(rules_of(cmds, "prerouting"))


def test_captive_redirect_and_interfaces_come_from_config():
    lay = layout(
        lan_interface="br0",
        wan_interface="wwan0",
        portal_port=8888,
        walled_garden=["203.0.113.0/24", "198.51.100.7"],
    )
    cmds = ruleset.table_commands(lay)
    nat = json.dumps(rules_of(cmds, "captive_nat"))
    assert '"redirect": {"port": 8888}' in nat
    assert '"br0"' in json.dumps(rules_of(cmds, "prerouting"))
    assert '"wwan0"' in json.dumps(rules_of(cmds, "postrouting"))
    walled = [
        c
        for c in cmds
        if "add" in c and "element" in c["add"] and c["add"]["element"]["name"] == "walled_garden"
    ]
    assert walled[0]["add"]["element"]["elem"] == [
        {"prefix": {"addr": "203.0.113.0", "len": 24}},
        "198.51.100.7",
    ]


def test_unauthorized_traffic_is_refused_and_ipv6_dropped():
    from_lan = rules_of(ruleset.table_commands(layout()), "from_lan")
    kinds = [list(expr[-1])[0] for expr in from_lan]
    assert kinds[0] == "drop"  # blocked MACs first
    assert kinds[1] == "drop"  # IPv6 forwarding
    assert kinds[-2:] == ["reject", "reject"]


def test_client_commands_add_and_delete():
    lay = layout()
    c = Client("10.10.0.42", "02:00:00:00:00:2a", "1:2a")
    add = ruleset.client_commands(lay, "add", [c])
    assert add[0]["add"]["element"]["elem"] == [{"concat": ["10.10.0.42", "02:00:00:00:00:2a"]}]
    assert add[1]["add"]["element"]["elem"] == [["10.10.0.42", "1:2a"]]
    delete = ruleset.client_commands(lay, "delete", [c])
    assert delete[2]["delete"]["element"]["elem"] == ["10.10.0.42"]
    assert ruleset.element_command(lay, "add", "blocked", []) == []


def test_walled_garden_dns_entries_survive_a_table_replace():
    from gateway.nftables import parse_walled_dns

    raw = {
        "walled_garden_dns": [{"elem": {"val": "203.0.113.5", "timeout": 3600, "expires": 1200}}]
    }
    kept = parse_walled_dns(raw)
    assert kept == [("203.0.113.5", 1200)]
    cmds = ruleset.table_commands(layout(), walled_dns=kept)
    assert cmds[-1] == {
        "add": {
            "element": {
                "family": "inet",
                "table": "hotspot",
                "name": "walled_garden_dns",
                "elem": [{"elem": {"val": "203.0.113.5", "timeout": 1200}}],
            }
        }
    }
    # Using a name-based entry refreshes its timeout.
    from_lan = json.dumps(rules_of(cmds, "from_lan"))
    assert '"op": "update"' in from_lan and '"set": "@walled_garden_dns"' in from_lan


def test_https_portal_port_is_open_only_with_tls(tmp_path):
    plain = rules_of(ruleset.table_commands(layout()), "lan_input")
    assert '"right": 8080' in json.dumps(plain) and "443" not in json.dumps(plain)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cfg = config_mod.load(
        overrides={
            "portal": {
                "hostname": "portal.desa.example",
                "tls_cert": str(cert),
                "tls_key": str(key),
            }
        }
    )
    tls = rules_of(ruleset.table_commands(Layout.from_config(cfg)), "lan_input")
    assert '{"set": [8080, 443]}' in json.dumps(tls)
