"""Traffic shaping with real TCP flows (iperf3 through the real gateway).

What is compared: iperf3 reports TCP *goodput* (payload bits per second at the receiver).
HTB shapes whole Ethernet frames, so a tier of R kbit/s carries R * MSS / (MSS + 66) of
payload (66 = Ethernet 14 + IPv4 20 + TCP 20 + timestamp option 12; with MSS 1448 that is
95.6 %). The tests convert the measured goodput back to the frame rate HTB enforced
(:attr:`helpers.IperfResult.wire_bps`) and require it within ±10 % of the tier. The first
second of every run (slow start, HTB's initial burst) is omitted (iperf3 ``-O 1``).

The rate tests run with MTU-sized frames on the veth links (:func:`helpers.mtu_sized_frames`),
as on real Ethernet; :func:`test_slow_tier_is_smooth_with_super_packets` shows what the
shaper does with the 64 KB super-packets a veth (or GRO on a real NIC) hands it.
"""

from __future__ import annotations

import time

import pytest

from tests.netns.helpers import (
    authorize,
    client_minor,
    iperf3,
    iperf3_result,
    iperf3_start,
    mtu_sized_frames,
    rule_count,
    sample_class_bytes,
    set_elements,
    start_iperf_server,
    tc_classes,
    tc_filters,
    tier,
)

TOLERANCE = 0.10
STARVED_RETRIES = 2  # measurements again of a rate below the tier (see test_rate_matches_tier)
RATES_KBPS = [1000, 5000, 20000]


def within(measured_bps: float, expected_bps: float, tol: float = TOLERANCE) -> bool:
    return abs(measured_bps - expected_bps) <= tol * expected_bps


@pytest.mark.parametrize("direction", ["download", "upload"])
@pytest.mark.parametrize("kbps", RATES_KBPS, ids=[f"{k // 1000}mbit" for k in RATES_KBPS])
def test_rate_matches_tier(testbed, upstream, gateway_factory, kbps, direction, record_property):
    gw = gateway_factory(
        {
            "network": {"uplink_down_kbps": 100000, "uplink_up_kbps": 100000},
            "tiers": {"rated": tier(kbps)},
        }
    )
    mtu_sized_frames(testbed)
    phone = testbed.phones[0]
    authorize(gw, phone, "rated")

    expected = kbps * 1000
    # The shaper caps a flow; a machine short of CPU (the other test worker's crowd, say)
    # can only make it slower. A run below the tier is measured again, at most twice, and
    # the fastest counts; one above the tier fails at once.
    result = iperf3(testbed, phone.ns, reverse=direction == "download", seconds=3, omit=1)
    for _ in range(STARVED_RETRIES):
        if result.wire_bps >= (1 - TOLERANCE) * expected:
            break
        print(f"\nRATE {direction} {kbps} kbit/s: {result.wire_bps / 1e3:.0f} kbit/s, again")
        again = iperf3(testbed, phone.ns, reverse=direction == "download", seconds=3, omit=1)
        result = max(result, again, key=lambda r: r.wire_bps)
    record_property("goodput_bps", round(result.goodput_bps))
    record_property("wire_bps", round(result.wire_bps))
    print(
        f"\nRATE {direction} tier {kbps} kbit/s: goodput {result.goodput_bps / 1e6:.3f} "
        f"Mbit/s, on the wire {result.wire_bps / 1e6:.3f} Mbit/s "
        f"({result.wire_bps / expected:.1%} of the tier)"
    )
    assert within(result.wire_bps, expected), (
        f"{direction} on a {kbps} kbit/s tier: {result.wire_bps / 1e3:.0f} kbit/s on the wire "
        f"(goodput {result.goodput_bps / 1e3:.0f} kbit/s), outside ±{TOLERANCE:.0%}"
    )


def test_two_clients_share_a_full_uplink_fairly(testbed, upstream, gateway_factory):
    uplink_kbps = 4000
    gw = gateway_factory(
        {"network": {"uplink_down_kbps": uplink_kbps}, "tiers": {"five": tier(5000)}}
    )
    mtu_sized_frames(testbed)
    for phone in testbed.phones:
        authorize(gw, phone, "five")
    start_iperf_server(testbed, 5202)

    runs = [
        iperf3_start(testbed, phone.ns, reverse=True, seconds=5, omit=1, port=port)
        for phone, port in zip(testbed.phones, (5201, 5202))
    ]
    a, b = (iperf3_result(run) for run in runs)

    ratio = a.wire_bps / b.wire_bps
    total = a.wire_bps + b.wire_bps
    print(
        f"\nFAIR two downloads on a {uplink_kbps} kbit/s uplink: "
        f"{a.wire_bps / 1e6:.3f} + {b.wire_bps / 1e6:.3f} = {total / 1e6:.3f} Mbit/s "
        f"on the wire (goodput {a.goodput_bps / 1e6:.3f} + {b.goodput_bps / 1e6:.3f}), "
        f"ratio {ratio:.3f}"
    )
    assert 0.8 <= ratio <= 1.25, f"unfair split: {a.wire_bps:.0f} vs {b.wire_bps:.0f} bit/s"
    assert within(total, uplink_kbps * 1000), f"the uplink cap did not hold: {total:.0f} bit/s"


@pytest.mark.parametrize("frames", ["mtu-sized", "super-packets"])
def test_slow_tier_is_smooth_with_super_packets(testbed, upstream, gateway_factory, frames):
    """A 1 Mbit/s download, watched at the client's HTB class in 100 ms windows: while the
    class is backlogged no window may be empty (a stall) or carry more than 2.5 times the
    tier's share of 12.5 kB (a burst).

    ``mtu-sized``: the senders emit 1514-byte frames (a control: HTB is smooth).
    ``super-packets``: the testbed's default, where the upstream host's TSO hands the gateway
    64 KB GSO packets - what a real gateway gets from GRO on its WAN NIC. HTB charges and
    releases each in one piece (half a second of a 1 Mbit/s tier), then stalls: bursts of
    ~5x the rate alternate with silences, and every other packet of the client (DNS, a
    video call) waits behind them."""
    kbps = 1000
    gw = gateway_factory({"tiers": {"slow": tier(kbps)}})
    if frames == "mtu-sized":
        mtu_sized_frames(testbed)
    phone = testbed.phones[0]
    authorize(gw, phone, "slow")
    run = iperf3_start(testbed, phone.ns, reverse=True, seconds=30, omit=0)
    try:
        time.sleep(1.5)  # past slow start: the class is backlogged from here on
        windows = sample_class_bytes(testbed, "br-lan", client_minor(phone.ip), 0.1, 20)
    finally:
        run.kill()
        run.wait()

    share = kbps * 1000 / 8 * 0.1
    print(f"\nSMOOTH {frames}: bytes per 100 ms window {windows} (share {share:.0f})")
    assert sum(windows) > 10 * share, f"the class was not backlogged: {windows}"
    assert max(windows) <= 2.5 * share and 0 not in windows, (
        f"with {frames} frames a 1 Mbit/s class sent up to {max(windows)} bytes in 100 ms "
        f"({max(windows) / share:.1f}x its share) and nothing in {windows.count(0)} of "
        f"{len(windows)} windows: {windows}"
    )


def test_no_per_client_rules_or_filters(testbed, gateway):
    """Authorizing clients adds set/map elements and HTB classes only: the ruleset and the
    tc filter lists stay exactly as they were."""
    rules_before = rule_count(testbed)
    clients = [(f"02:00:00:01:00:{i:02x}", f"10.10.1.{i}") for i in range(1, 21)]
    # Not needed (the MAC is given), but without these every call pays a 0.5 s ARP probe:
    # see test_control.test_authorize_with_explicit_mac_is_fast.
    testbed.gateway_neighbours([(ip, mac) for mac, ip in clients])
    for mac, ip in clients:
        gateway.call("authorize", mac=mac, ip=ip, tier="premium", source="admin")

    assert rule_count(testbed) == rules_before, "authorizing clients added nftables rules"
    assert {(ip, mac) for ip, mac in set_elements(testbed, "authorized")} == {
        (ip, mac) for mac, ip in clients
    }
    assert len(set_elements(testbed, "down_class")) == len(set_elements(testbed, "up_class")) == 20
    for dev in ("br-lan", "eth0"):
        classes = tc_classes(testbed, dev)
        minors = [client_minor(ip) for _, ip in clients]
        assert set(minors) <= set(classes), f"client classes missing on {dev}"
        for where in ((), ("parent", "1:"), ("ingress",)):
            assert tc_filters(testbed, dev, *where) == "", f"tc filters on {dev} {where}"
        for minor in minors:
            assert tc_filters(testbed, dev, "parent", f"1:{minor:x}") == ""
