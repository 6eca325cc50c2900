from __future__ import annotations

import ipaddress

import pytest

from gateway import shaping
from gateway.nftables import parse_elements
from gateway.reconcile import Snapshot, Wanted, plan

NET = ipaddress.IPv4Network("10.10.0.0/22")


def test_classid_is_the_host_index():
    assert shaping.client_minor("10.10.0.42", NET) == 0x2A
    assert shaping.classid_str(0x2A) == "1:2a"
    assert shaping.client_minor("10.10.3.254", NET) == 1022
    assert shaping.client_ip(0x2A, NET) == "10.10.0.42"
    for bad in ("10.10.0.0", "10.10.3.255", "10.10.4.1"):
        with pytest.raises(ValueError):
            shaping.client_minor(bad, NET)


def test_largest_allowed_subnet_stays_below_reserved_minors():
    net = ipaddress.IPv4Network("10.0.0.0/18")
    assert shaping.client_minor("10.0.63.254", net) < shaping.DEFAULT_MINOR


def test_client_classes_borrow_everything_up_to_the_tier():
    cls = shaping.client_class(0x2A, 5120)
    assert cls.parent_minor == shaping.BACKHAUL_MINOR
    assert cls.ceil_kbps == 5120 and cls.rate_kbps == shaping.GUARANTEED_KBPS
    lan = shaping.skeleton(20000, 1_000_000)
    wan = shaping.skeleton(5000, None)
    assert lan[1].parent_minor is None  # local traffic is not capped by the backhaul
    assert wan[1].parent_minor == shaping.BACKHAUL_MINOR


def test_burst_and_ip_bytes():
    assert shaping.burst_bytes(1000) == 1600
    assert shaping.burst_bytes(20000) == 10000
    assert shaping.ip_layer_bytes(1514 * 10, 10) == 1500 * 10


def test_plan_is_set_arithmetic_and_idempotent():
    wanted = [
        Wanted("10.10.0.11", "02:00:00:00:00:01", 1024, 512),
        Wanted("10.10.0.12", "02:00:00:00:00:02", 5120, 2048),
    ]
    empty = plan(wanted, {"02:00:00:00:00:09"}, Snapshot(), NET)
    assert [c.ip for c in empty.add_clients] == ["10.10.0.11", "10.10.0.12"]
    assert empty.add_map["down_class"] == {"10.10.0.11": "1:b", "10.10.0.12": "1:c"}
    assert [(c.minor, c.kbps, c.new) for c in empty.down_set] == [
        (11, 1024, True),
        (12, 5120, True),
    ]
    assert empty.add_blocked == ["02:00:00:00:00:09"]
    done = Snapshot(
        authorized={(w.ip, w.mac) for w in wanted},
        down_map={"10.10.0.11": "1:b", "10.10.0.12": "1:c"},
        up_map={"10.10.0.11": "1:b", "10.10.0.12": "1:c"},
        blocked={"02:00:00:00:00:09"},
        down_ceil={11: 1024, 12: 5120},
        up_ceil={11: 512, 12: 2048},
    )
    assert plan(wanted, {"02:00:00:00:00:09"}, done, NET).empty


def test_plan_removes_strangers_and_fixes_rates():
    snap = Snapshot(
        authorized={("10.10.0.11", "02:00:00:00:00:01"), ("10.10.0.50", "02:00:00:00:00:50")},
        down_map={"10.10.0.11": "1:b", "10.10.0.50": "1:32"},
        up_map={"10.10.0.11": "1:ffff"},
        down_ceil={11: 999, 50: 1024},
        up_ceil={11: 512},
    )
    p = plan([Wanted("10.10.0.11", "02:00:00:00:00:01", 1024, 512)], set(), snap, NET)
    assert [c.ip for c in p.del_clients] == ["10.10.0.50"] and p.flush_ips == ["10.10.0.50"]
    assert p.del_map == {"down_class": ["10.10.0.50"], "up_class": ["10.10.0.11"]}
    assert p.add_map["up_class"] == {"10.10.0.11": "1:b"}
    assert [(c.minor, c.kbps, c.new) for c in p.down_set] == [(11, 1024, False)]
    assert p.down_del == [50]


def test_parse_elements_of_a_listing():
    raw = {
        "authorized": [{"concat": ["10.10.0.11", "02:00:00:00:00:01"]}],
        "down_class": [["10.10.0.11", "1:b"]],
        "up_class": [],
        "blocked": ["02:00:00:00:00:09", {"elem": {"val": "02:00:00:00:00:08", "counter": {}}}],
    }
    authorized, down, up, blocked = parse_elements(raw)
    assert authorized == {("10.10.0.11", "02:00:00:00:00:01")}
    assert down == {"10.10.0.11": "1:b"} and up == {}
    assert blocked == {"02:00:00:00:00:09", "02:00:00:00:00:08"}


def test_plan_pins_the_wanted_addresses_and_only_those():
    wanted = [
        Wanted("10.10.0.11", "02:00:00:00:00:01", 1024, 512),
        Wanted("10.10.0.12", "02:00:00:00:00:02", 1024, 512),
    ]
    snap = Snapshot(pinned={"10.10.0.11": "02:00:00:00:00:66", "10.10.0.13": "02:00:00:00:00:03"})
    p = plan(wanted, set(), snap, NET)
    assert p.add_pins == {"10.10.0.11": "02:00:00:00:00:01", "10.10.0.12": "02:00:00:00:00:02"}
    assert p.del_pins == {"10.10.0.13": "02:00:00:00:00:03"}
    assert "+2/-1 pinned neighbours" in p.summary()
    # Pins not looked at (None) are left alone.
    assert not plan(wanted, set(), Snapshot(), NET).add_pins
    done = plan(wanted, set(), Snapshot(pinned={w.ip: w.mac for w in wanted}), NET)
    assert not done.add_pins and not done.del_pins
