"""The nftables table is built as data: check its shape without a kernel."""

from __future__ import annotations

import dataclasses
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
        c
        for c in ruleset.table_commands(lay, clients)
        if "add" in c
        and "element" in c["add"]
        and c["add"]["element"]["name"] != ruleset.DOH_ADDRESSES  # the static DoH list
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
    assert kinds[2] == "drop"  # LAN to LAN (hairpin)
    assert kinds[-2:] == ["reject", "reject"]


def _text(rule):
    return json.dumps(rule)


def test_lan_to_lan_forwarding_is_dropped_and_counted_before_any_accept():
    from_lan = rules_of(ruleset.table_commands(layout(lan_interface="br0")), "from_lan")
    hairpin = next(
        i for i, r in enumerate(from_lan) if '"oifname"' in _text(r) and '"br0"' in _text(r)
    )
    assert {"counter": None} in from_lan[hairpin] and from_lan[hairpin][-1] == {"drop": None}
    first_accept = next(
        i
        for i, r in enumerate(from_lan)
        if r[-1] in ({"accept": None},) or '"jump"' in _text(r[-1])
    )
    assert hairpin < first_accept


def test_walled_garden_opens_only_web_ports():
    from_lan = rules_of(
        ruleset.table_commands(layout(walled_garden=["203.0.113.0/24"])), "from_lan"
    )
    walled = [r for r in from_lan if "@walled_garden" in _text(r)]
    assert len(walled) == 2  # by address and by name
    web = {"set": [{"concat": ["tcp", 80]}, {"concat": ["tcp", 443]}, {"concat": ["udp", 443]}]}
    for rule in walled:
        assert any(e.get("match", {}).get("right") == web for e in rule), rule
        assert rule[-1] == {"accept": None}


def test_dns_before_login_goes_to_the_walled_resolver_before_the_walled_garden():
    nat = rules_of(ruleset.table_commands(layout(walled_dns_port=5399)), "captive_nat")
    texts = [_text(r) for r in nat]
    # First, DNS filtering's redirect (logged-in devices, only while dns_filtered has the LAN).
    assert "@dns_filtered" in texts[0] and "@authorized" in texts[0]
    assert '"redirect": {"port": 53}' in texts[0]
    assert "@authorized" in texts[1] and texts[1].endswith('{"return": null}]')
    dns = texts[2]
    assert '"redirect": {"port": 5399}' in dns and '"right": 53' in dns
    assert '{"set": ["tcp", "udp"]}' in dns
    assert "daddr" not in dns  # whatever address the phone asked
    assert all("@walled_garden" in t for t in texts[3:5])  # the garden comes after


def test_dns_filtering_is_switched_by_one_set_in_one_transaction():
    lay = layout()
    off = ruleset.table_commands(lay)
    on = ruleset.table_commands(dataclasses.replace(lay, dns_filter=True))
    rules = [c for c in off if "add" in c and "rule" in c["add"]]
    assert rules == [c for c in on if "add" in c and "rule" in c["add"]]  # rules never change
    filtered = [
        c["add"]["element"]["elem"]
        for c in on
        if "add" in c and "element" in c["add"] and c["add"]["element"]["name"] == "dns_filtered"
    ]
    assert filtered == [[{"prefix": {"addr": "10.10.0.0", "len": 22}}]]
    assert ruleset.dns_filter_commands(lay, False) == [
        {"flush": {"set": {"family": "inet", "table": "hotspot", "name": "dns_filtered"}}}
    ]
    assert len(ruleset.dns_filter_commands(lay, True)) == 2
    from_lan = [_text(r) for r in rules_of(off, "from_lan")]
    up = next(i for i, t in enumerate(from_lan) if "client_up" in t)
    before = " ".join(from_lan[:up])  # refused before a logged-in device is let out
    assert '"right": 853' in before and "@doh_addresses" in before


def test_lan_input_dns_rules_come_first_and_meter_walled_devices():
    lay = layout(walled_dns_port=5399, walled_dns_rate=7)
    cmds = ruleset.table_commands(lay)
    lan_input = [_text(r) for r in rules_of(cmds, "lan_input")]
    established = next(i for i, t in enumerate(lan_input) if '"established"' in t)
    nd = next(i for i, t in enumerate(lan_input) if "nd-neighbor" in t)
    # After neighbour discovery and the IPv6 drop (the portal_peers update may come first).
    blocked, main_dns, meter, dns_ok = lan_input[nd + 2 : nd + 6]
    assert (
        "@blocked" in blocked
        and '{"set": [53, 5399]}' in blocked
        and blocked.endswith('{"drop": null}]')
    )
    assert '"right": 53' in main_dns and '"op": "!="' in main_dns and "@authorized" in main_dns
    assert '"right": 5399' in meter and '"set": "@dns_flood"' in meter
    assert '"rate": 7' in meter and '"burst": 14' in meter and meter.endswith('{"drop": null}]')
    assert dns_ok.endswith('{"accept": null}]') and established > 5
    sets = {c["add"]["set"]["name"]: c["add"]["set"] for c in cmds if "set" in c.get("add", {})}
    assert sets["dns_flood"]["flags"] == ["timeout"]


def test_ipv6_to_the_gateway_only_neighbour_discovery():
    lan_input = rules_of(ruleset.table_commands(layout()), "lan_input")
    first = next(i for i, r in enumerate(lan_input) if "nd-neighbor" in _text(r))
    # Only the portal_peers update (which accepts nothing) may come before it.
    assert all(
        not any(e in ({"accept": None}, {"drop": None}) for e in r) for r in lan_input[:first]
    )
    nd, v6 = lan_input[first], lan_input[first + 1]
    assert _text(nd).count("nd-neighbor") == 2 and "router" not in _text(nd)
    assert nd[-1] == {"accept": None}
    assert '"ipv6"' in _text(v6) and v6[-1] == {"drop": None}
    # No other rule accepts IPv6 wholesale (the old blanket accept).
    assert not any('"nfproto"' in _text(r) and r[-1] == {"accept": None} for r in lan_input)


def test_wan_input_takes_replies_and_configured_ports_only():
    cmds = ruleset.table_commands(layout(wan_interface="wwan0", wan_tcp_ports=[22]))
    inp = [_text(r) for r in rules_of(cmds, "input")]
    assert any('"wwan0"' in t and '"target": "wan_input"' in t for t in inp)
    wan = rules_of(cmds, "wan_input")
    assert '"established"' in _text(wan[0]) and wan[0][-1] == {"accept": None}
    assert "@wan_tcp_ports" in _text(wan[-2]) and wan[-1] == [{"counter": None}, {"drop": None}]
    everything = _text(wan)
    for port in ("8080", "53", "5300"):
        assert f'"right": {port}' not in everything
    elems = [c["add"]["element"] for c in cmds if "element" in c.get("add", {})]
    assert {"family": "inet", "table": "hotspot", "name": "wan_tcp_ports", "elem": [22]} in elems
    none = [
        c
        for c in ruleset.table_commands(layout())
        if "element" in c.get("add", {}) and c["add"]["element"]["name"] == "wan_tcp_ports"
    ]
    assert none == []  # nothing configured: the set stays empty


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


def test_portal_connections_per_client_are_capped_for_everyone():
    """Slowloris (issue #10, item 15): one client may hold at most portal_conn_limit open
    connections to the portal ports, walled or logged in; over that, a TCP reset."""
    cmds = ruleset.table_commands(layout(portal_conn_limit=7))
    (conns_set,) = [
        c["add"]["set"]
        for c in cmds
        if c.get("add", {}).get("set", {}).get("name") == "portal_conns"
    ]
    assert conns_set["type"] == "ipv4_addr" and "timeout" not in conns_set
    rules = rules_of(cmds, "lan_input")
    (cap,) = [r for r in rules if "portal_conns" in json.dumps(r)]
    text = json.dumps(cap)
    assert '{"ct count": {"val": 7, "inv": true}}' in text
    assert "authorized" not in text  # authorized and walled clients alike
    assert cap[-1] == {"reject": {"type": "tcp reset"}}
    # Before the accept of the portal port, and before the new-connection rate meter.
    flood = next(i for i, r in enumerate(rules) if "portal_flood" in json.dumps(r))
    assert rules.index(cap) < flood
