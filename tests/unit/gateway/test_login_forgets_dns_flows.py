"""A login forgets the client's walled flows (NAT sent its DNS to the walled resolver and its
web connections to the portal), a removal all its flows; with fakes for the kernel (no
root)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

from gateway import conntrack as ct_mod
from gateway.datapath import DataPath
from gateway.reconcile import Plan
from gateway.ruleset import Client, Layout
from hotspot import config as config_mod


class FakeConntrack:
    def __init__(self):
        self.calls = []

    def flush_client(self, ip):
        self.calls.append(("all", ip))

    def flush_walled(self, ip, portal):
        self.calls.append(("walled", ip, portal))


class FakeShaper:
    def apply_bulk(self, changes, deletes, progress=None):
        pass

    def reading(self, minor):
        return None

    def readings(self, minors=None):
        return {}


class FakeNft:
    def __init__(self):
        self.applied = []

    def apply(self, cmds):
        self.applied.append(cmds)


def datapath():
    dp = object.__new__(DataPath)
    cfg = config_mod.load()
    dp.layout, dp.network = Layout.from_config(cfg), cfg.network.lan_network
    dp.conntrack, dp.nft = FakeConntrack(), FakeNft()
    dp.down, dp.up = FakeShaper(), FakeShaper()
    return dp


def test_a_login_forgets_the_walled_flows_a_removal_everything():
    dp = datapath()
    plan = Plan(
        add_clients=[Client("10.10.0.42", "02:00:00:00:00:2a", "1:2a")],
        del_clients=[Client("10.10.0.43", "02:00:00:00:00:2b", "")],
        flush_ips=["10.10.0.43"],
    )
    dp.apply(plan)
    portal = (dp.layout.gateway_ip, dp.layout.portal_port)
    assert dp.conntrack.calls == [("all", "10.10.0.43"), ("walled", "10.10.0.42", portal)]
    assert len(dp.nft.applied) == 1  # after the table changed


def entry(proto, dport):
    return SimpleNamespace(tuple_orig=SimpleNamespace(proto=proto, dport=dport))


def test_which_flows_are_dns():
    assert ct_mod._is_dns(entry(socket.IPPROTO_UDP, 53))
    assert ct_mod._is_dns(entry(socket.IPPROTO_TCP, 53))
    assert not ct_mod._is_dns(entry(socket.IPPROTO_TCP, 80))
    assert not ct_mod._is_dns(entry(socket.IPPROTO_ICMP, None))


def http(daddr, reply_from, dport=80, proto=socket.IPPROTO_TCP):
    return SimpleNamespace(
        tuple_orig=SimpleNamespace(proto=proto, dport=dport, daddr=daddr),
        tuple_reply=SimpleNamespace(saddr=reply_from[0], sport=reply_from[1]),
    )


def test_which_flows_were_redirected_to_the_portal():
    portal = ("10.10.0.1", 8080)
    # A page asked of any host while walled, answered by the portal: forgotten at login.
    assert ct_mod._is_redirected_http(http("198.51.100.10", portal), portal)
    # Not redirected (the walled garden, or already out): left alone.
    assert not ct_mod._is_redirected_http(http("198.51.100.10", ("198.51.100.10", 80)), portal)
    # http://<gateway>/ is the portal for everyone, logged in or not: left alone.
    assert not ct_mod._is_redirected_http(http("10.10.0.1", portal), portal)
    assert not ct_mod._is_redirected_http(http("198.51.100.10", portal, dport=443), portal)
    assert not ct_mod._is_redirected_http(
        http("198.51.100.10", portal, proto=socket.IPPROTO_UDP), portal
    )


def test_a_removed_clients_class_maps_go_after_its_connections():
    """Until its connections are forgotten a kicked client's download still flows: it must
    still meet its class (and be counted), so its map entries go in a second transaction."""
    dp = datapath()
    log = []
    dp.conntrack.flush_client = lambda ip: log.append(("flush", ip))
    dp.nft.apply = lambda cmds: log.append(("nft", [next(iter(c)) for c in cmds]))
    ip = "10.10.0.43"
    dp.apply(
        Plan(
            del_clients=[Client(ip, "02:00:00:00:00:2b", "")],
            del_map={"down_class": [ip], "up_class": [ip]},
            down_del=[0x2B],
            up_del=[0x2B],
            flush_ips=[ip],
        )
    )
    assert log == [("nft", ["delete"]), ("flush", ip), ("nft", ["delete", "delete"])]
