"""A login forgets the client's walled flows (NAT sent its DNS to the walled resolver and its
web connections to the portal) after its reply, in batches, a removal all its flows at once;
with fakes for the kernel (no root)."""

from __future__ import annotations

from types import SimpleNamespace

from gateway import conntrack as ct_mod
from gateway import ruleset
from gateway.datapath import DataPath
from gateway.netlink import NetlinkError
from gateway.reconcile import Plan
from gateway.ruleset import Client, Layout
from hotspot import config as config_mod


class FakeConntrack:
    def __init__(self):
        self.calls = []

    def flush_client(self, ip):
        self.calls.append(("all", ip))

    def add(self, ip):
        self.calls.append(("walled, after the reply", ip))


class FakeShaper:
    def apply_bulk(self, changes, deletes):
        pass

    def reading(self, minor):
        return None


class FakeNft:
    def __init__(self):
        self.applied = []

    def apply(self, cmds):
        self.applied.append(cmds)


def datapath():
    dp = object.__new__(DataPath)
    cfg = config_mod.load()
    dp.layout, dp.network = Layout.from_config(cfg), cfg.network.lan_network
    dp.conntrack = dp.walled_sweep = FakeConntrack()
    dp.nft = FakeNft()
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
    assert dp.conntrack.calls == [("all", "10.10.0.43"), ("walled, after the reply", "10.10.0.42")]
    assert len(dp.nft.applied) == 1  # after the table changed


class FakeNetlink:
    """pyroute2's Conntrack as the sweep uses it: a mark-filtered dump, deletes."""

    def __init__(self, entries):
        self.entries = entries
        self.dumps = []
        self.deleted = []

    def dump_entries(self, mark=None):
        self.dumps.append(mark)
        return [e for e in self.entries if e.mark == mark]

    def delete(self, entry):
        self.deleted.append(entry)


def ct_entry(saddr, mark=ruleset.WALLED_CT_MARK):
    return SimpleNamespace(tuple_orig=SimpleNamespace(saddr=saddr), mark=mark)


def sweep_with(entries):
    sweep = ct_mod.WalledSweep(mark=ruleset.WALLED_CT_MARK, delay=0.0)
    fake = FakeNetlink(entries)
    sweep._conntrack._ct = SimpleNamespace(
        dump_entries=fake.dump_entries, delete=fake.delete, soon=lambda work: None
    )
    return sweep, fake


def test_one_walk_serves_every_login_since_the_last_and_spares_the_walled():
    logged_in = [ct_entry("10.10.0.42"), ct_entry("10.10.0.42"), ct_entry("10.10.0.44")]
    still_walled = ct_entry("10.10.0.43")  # its redirect is still its portal
    not_redirected = ct_entry("10.10.0.42", mark=0)  # never marked: not the sweep's
    sweep, fake = sweep_with([*logged_in, still_walled, not_redirected])
    scheduled = []
    sweep._conntrack._ct.soon = scheduled.append
    for ip in ("10.10.0.42", "10.10.0.44", "10.10.0.42"):
        sweep.add(ip)
    assert len(scheduled) == 1, "one sweep for the logins of one batch"
    assert scheduled[0]() == 3
    assert fake.dumps == [ruleset.WALLED_CT_MARK]  # one walk, filtered by the mark in the kernel
    assert fake.deleted == logged_in
    sweep.add("10.10.0.43")  # a login after the sweep: the next batch
    assert len(scheduled) == 2


def test_an_entry_gone_meanwhile_is_no_failure():
    gone = ct_entry("10.10.0.42")
    sweep, fake = sweep_with([gone])

    def vanished(entry):
        raise NetlinkError(2, "No such file or directory")

    sweep._conntrack._ct.delete = vanished
    sweep.add("10.10.0.42")
    assert sweep._sweep() == 0


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
