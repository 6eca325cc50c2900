"""A login forgets the client's DNS flows (NAT sent them to the walled resolver), a removal
all its flows; with fakes for the kernel (no root)."""

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

    def flush_client_dns(self, ip):
        self.calls.append(("dns", ip))


class FakeShaper:
    def apply_bulk(self, changes, deletes):
        pass


class FakeNft:
    def __init__(self):
        self.applied = []

    def apply(self, cmds):
        self.applied.append(cmds)


def datapath():
    dp = object.__new__(DataPath)
    dp.layout = Layout.from_config(config_mod.load())
    dp.conntrack, dp.nft = FakeConntrack(), FakeNft()
    dp.down, dp.up = FakeShaper(), FakeShaper()
    return dp


def test_a_login_forgets_the_dns_flows_a_removal_everything():
    dp = datapath()
    plan = Plan(
        add_clients=[Client("10.10.0.42", "02:00:00:00:00:2a", "1:2a")],
        del_clients=[Client("10.10.0.43", "02:00:00:00:00:2b", "")],
        flush_ips=["10.10.0.43"],
    )
    dp.apply(plan)
    assert dp.conntrack.calls == [("all", "10.10.0.43"), ("dns", "10.10.0.42")]
    assert len(dp.nft.applied) == 1  # after the table changed


def entry(proto, dport):
    return SimpleNamespace(tuple_orig=SimpleNamespace(proto=proto, dport=dport))


def test_which_flows_are_dns():
    assert ct_mod._is_dns(entry(socket.IPPROTO_UDP, 53))
    assert ct_mod._is_dns(entry(socket.IPPROTO_TCP, 53))
    assert not ct_mod._is_dns(entry(socket.IPPROTO_TCP, 80))
    assert not ct_mod._is_dns(entry(socket.IPPROTO_ICMP, None))
