"""The DHCP pool's HTB classes exist from start-up (issue #12, the login path): a login is
then one nftables transaction, a kick puts its class back to the pool's rates (expiry takes
the same path: tests/unit/gateway/test_pool_classes.py), and
the reconcile keeps the pool as it keeps everything else (a class deleted by hand comes
back, a stray one goes, a changed one is put back).

A small DHCP range keeps the gateway's start-up short; the phones (10.10.0.11, .12) are in
it.
"""

from __future__ import annotations

from tests.netns.helpers import (
    authorized,
    client_minor,
    is_online,
    tc_classes,
    tc_qdiscs,
    tier,
    wait_until,
)

RANGE = ("10.10.0.10", "10.10.0.30")
POOL = range(client_minor(RANGE[0]), client_minor(RANGE[1]) + 1)
FREE = (1024, 512)  # the pool's rates: the "free" tier's
REPAIR_WITHIN = 3.0  # the fixture's tick is 0.5 s; slack for a busy machine
DEVICES = (("br-lan", 0), ("eth0", 1))  # download on the bridge, upload on the uplink


def settings() -> dict:
    return {
        "dhcp": {"range_start": RANGE[0], "range_end": RANGE[1]},
        "tiers": {"free": tier(*FREE), "premium": tier(5120, 2048)},
    }


def pool_ok(bed, rates=FREE, skip=()) -> bool:
    for dev, i in DEVICES:
        classes = tc_classes(bed, dev)
        for minor in POOL:
            if minor in skip:
                continue
            cls = classes.get(minor)
            if cls is None or cls.ceil_bps != rates[i] * 1000:
                return False
    return True


def leaf_parents(bed, dev: str) -> set[int]:
    """Minors of the client classes that have a leaf qdisc under them."""
    return {int(q.parent[2:], 16) for q in tc_qdiscs(bed, dev) if q.parent.startswith("1:")}


def test_pool_classes_are_there_from_start_up_and_repaired(testbed, upstream, gateway_factory):
    # An idle pool class is read (and put right) at a tick's whole look: every second here.
    gw = gateway_factory({**settings(), "gateway": {"full_look_seconds": 1.0}})
    assert pool_ok(testbed), "a pool address has no class at the pool's rates after start-up"
    for dev, _ in DEVICES:
        assert set(POOL) <= leaf_parents(testbed, dev), f"pool classes without a leaf on {dev}"
    assert gw.call("reconcile")["changed"] == ""

    victim = POOL[5]
    for dev, _ in DEVICES:  # deleted by hand: made again, with its leaf
        testbed.run(testbed.gw, "tc", "class", "del", "dev", dev, "classid", f"1:{victim:x}")
    # (no look in between: the next tick, half a second away, may have repaired it already)
    wait_until(lambda: pool_ok(testbed), REPAIR_WITHIN, what="the deleted pool class made again")
    assert victim in leaf_parents(testbed, "br-lan")

    stray = client_minor("10.10.0.99")  # nobody's address, outside the pool
    testbed.run(
        testbed.gw,
        *f"tc class add dev br-lan parent 1:ffff classid 1:{stray:x} htb rate 8kbit ceil 9mbit".split(),
    )
    changed = POOL[7]  # someone lends a pool address more
    testbed.run(
        testbed.gw,
        *f"tc class change dev br-lan parent 1:ffff classid 1:{changed:x} htb rate 8kbit ceil 50mbit".split(),
    )
    wait_until(
        lambda: stray not in tc_classes(testbed, "br-lan") and pool_ok(testbed),
        REPAIR_WITHIN,
        what="the stray class removed and the changed one put back",
    )
    assert gw.call("reconcile")["changed"] == ""  # idempotent


def test_login_kick_and_restart_with_pool_classes(testbed, upstream, gateway_factory):
    gw = gateway_factory(settings())
    phone = testbed.phones[0]
    minor = client_minor(phone.ip)
    assert minor in POOL

    # A login on the pool's tier: the class is there already, at the right rates.
    gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="free", source="admin")
    assert is_online(testbed, phone.ns)
    assert pool_ok(testbed)

    # Another tier: the class's rates change in place; the kick puts them back.
    gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="premium", source="admin")
    for dev, i in DEVICES:
        assert tc_classes(testbed, dev)[minor].ceil_bps == (5120, 2048)[i] * 1000
    gw.call("deauthorize", mac=phone.mac)
    assert (phone.ip, phone.mac) not in authorized(testbed)
    assert pool_ok(testbed), "the kicked session's class is not back at the pool's rates"
    assert minor in leaf_parents(testbed, "br-lan")  # kept, not removed

    # A restart keeps the session and its class.
    gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="premium", source="admin")
    gw.kill9()
    gw.start()
    assert [s["ip"] for s in gw.call("list")] == [phone.ip]
    assert tc_classes(testbed, "br-lan")[minor].ceil_bps == 5_120_000
    assert pool_ok(testbed, skip={minor})
    assert is_online(testbed, phone.ns)
