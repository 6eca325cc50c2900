"""The portal's peers as the engine reads them (gateway/datapath.py): the tick's whole view
for returning devices, and a login's view of one address. The kernel's set is stood in for
by its listing (pure logic; the dump itself: tests/netns/gateway/test_nft_batch.py)."""

from __future__ import annotations

from types import SimpleNamespace

from gateway import ruleset
from gateway.datapath import DataPath
from gateway.nftnetlink import Peer
from hotspot.mac import is_device_mac

PHONE = ("10.10.0.7", "02:00:00:00:00:07", None, 27_000)
# A hostile villager's frames with a forged source: a group address, and zero.
FORGED = [
    ("10.10.0.7", "01:00:5e:00:00:01", None, 29_000),
    ("10.10.0.8", "00:00:00:00:00:00", None, 1),
]


class ListedSet:
    """The set's elements; records what each call asked for."""

    def __init__(self, elements: list[Peer]):
        self.elements = elements
        self.asked: list[tuple[str, str | None]] = []

    def peers(self, name: str, at: str | None = None) -> list[Peer]:
        self.asked.append((name, at))
        return [e for e in self.elements if at is None or e[0] == at]


def test_a_login_asks_for_its_address_only_and_counts_a_forged_sender():
    nft = ListedSet([PHONE, *FORGED, ("10.10.0.9", "02:00:00:00:00:09", None, 1)])
    datapath = SimpleNamespace(nft=nft)
    seen = DataPath.macs_seen_at(datapath, "10.10.0.7")  # type: ignore[arg-type]
    assert nft.asked == [(ruleset.PORTAL_PEERS, "10.10.0.7")]
    # The group address is another sender at the phone's address: a login by that address
    # is refused (engine._check_requester), not failed on a MAC it cannot parse.
    assert seen == {"02:00:00:00:00:07", "01:00:5e:00:00:01"}


def test_the_ticks_view_skips_forged_sources_and_keeps_the_ages():
    datapath = SimpleNamespace(nft=ListedSet([PHONE, *FORGED]))
    peers = DataPath.portal_peers(datapath)  # type: ignore[arg-type]
    assert peers == {("10.10.0.7", "02:00:00:00:00:07"): ruleset.PEERS_TIMEOUT - 27.0}


def test_a_device_mac_is_canonical_unicast_and_not_zero():
    assert is_device_mac("02:00:00:00:00:07")
    assert is_device_mac("a4:5e:60:00:00:01")
    assert not is_device_mac("01:00:5e:00:00:01")  # multicast
    assert not is_device_mac("ff:ff:ff:ff:ff:ff")
    assert not is_device_mac("00:00:00:00:00:00")
    assert not is_device_mac("A4:5E:60:00:00:01")  # not canonical: callers normalise first
    assert not is_device_mac("a4:5e:60:00:00")
