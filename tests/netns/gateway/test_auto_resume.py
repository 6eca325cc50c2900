"""No retyping (issue #13, item 2) against the real kernel: a phone whose voucher session idled
out is let out again by the gateway when it is used again — its first request (a captive
probe, a page) reaches the portal; no code, nobody taps — and stays walled while it is away;
a phone that stays on the WiFi unused (it answers ARP, sends nothing) is not let out and its
free minutes stay; an operator's kick ends the auto-resume until the villager logs in
again; the devices that may resume survive kill -9."""

from __future__ import annotations

from sqlalchemy import create_engine

from hotspot.control import ControlClient
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.packages import sync_packages
from hotspot.vouchers.redemption import VoucherService
from tests.netns.helpers import (
    GW_LAN_IP,
    PORTAL_MARKER,
    UPSTREAM_IP,
    authorized,
    curl,
    is_online,
    ping,
    wait_until,
)

KEY = b"k" * 32


def _page(bed, phone) -> str:
    return curl(bed, phone.ns, f"http://{UPSTREAM_IP}/index.html").body


def _opens_a_page(testbed, phone) -> str:
    """The villager picks the phone up and opens a page (or its OS probes the network on
    reassociation): while walled, the request lands on the portal — the sign of use."""
    return _page(testbed, phone)


def _ticks(gateway, n: int) -> None:
    start = gateway.call("status")["ticks"]
    wait_until(lambda: gateway.call("status")["ticks"] >= start + n, 15, what=f"{n} ticks")


def _left(testbed, gateway, phone, reason: str) -> None:
    """The phone's session ends (``reason``) and the phone is gone: the gateway unpins its
    address, and its neighbour entry goes with it."""
    gateway.call("deauthorize", mac=phone.mac, reason=reason)
    testbed.run(testbed.gw, "ip", "neigh", "flush", "to", phone.ip, "dev", "br-lan", check=False)


def test_returning_phone_resumes_its_voucher_without_the_portal(
    testbed, gateway_factory, upstream, portal
):
    gateway = gateway_factory(
        {"packages": {"harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24}}}
    )
    db = create_engine(gateway.settings["database"]["url"])
    sync_packages(db, gateway_packages(gateway))
    code = create_batch(db, KEY, "harian", 1).codes[0]
    phone, other = testbed.phones
    ping(testbed, phone.ns, GW_LAN_IP)
    ctl = ControlClient(gateway.socket)
    try:
        VoucherService(db, KEY, ctl).redeem(code, ip=phone.ip, mac=phone.mac)
    finally:
        ctl.close()
    assert is_online(testbed, phone.ns)

    # It idles out (the villager went home): walled, and not let out while it is away.
    _left(testbed, gateway, phone, "idle-timeout")
    _ticks(gateway, 3)
    assert (phone.ip, phone.mac) not in authorized(testbed)

    # Back on the WiFi, but unused (it answers ARP, sends nothing of its own): still walled.
    ping(testbed, testbed.gw, phone.ip)
    _ticks(gateway, 3)
    assert (phone.ip, phone.mac) not in authorized(testbed)

    # Used: its first request reaches the portal, the next tick lets it out. (That request,
    # in the moment before the tick, meets the splash, as a captive probe would; nobody taps
    # anything.)
    assert PORTAL_MARKER in _opens_a_page(testbed, phone)
    wait_until(lambda: is_online(testbed, phone.ns), 10, what="the phone online again")
    (session,) = gateway.call("list")
    assert session["source"] == "voucher" and session["mac"] == phone.mac
    seen_by_portal = len(portal.received())
    assert _page(testbed, phone) == "<h1>upstream ok</h1>"
    assert len(portal.received()) == seen_by_portal, "the resumed phone hit the portal"
    # The phone next to it, without a voucher, is still walled.
    ping(testbed, other.ns, GW_LAN_IP)
    _ticks(gateway, 2)
    assert PORTAL_MARKER in _page(testbed, other)

    # It leaves again; the gateway restarts (kill -9) meanwhile: still resumable.
    _left(testbed, gateway, phone, "idle-timeout")
    gateway.kill9()
    gateway.start()
    _opens_a_page(testbed, phone)
    wait_until(lambda: is_online(testbed, phone.ns), 10, what="online after a restart")

    # The operator kicks it: that ends the auto-resume — it is on the LAN and sending,
    # and stays walled.
    gateway.cli("clients", "kick", phone.mac)
    for _ in range(3):
        ping(testbed, phone.ns, GW_LAN_IP)
        _ticks(gateway, 2)
        assert PORTAL_MARKER in _page(testbed, phone), "a kicked phone was let out again"
    assert gateway.call("list") == []
    db.dispose()


def _neighbour_state(testbed, ip: str) -> str:
    out = testbed.run(testbed.gw, "ip", "neigh", "show", "to", ip, "dev", "br-lan").stdout
    return out.split()[-1] if out.strip() else "NONE"


def test_a_free_phone_on_the_wifi_unused_is_not_let_out_until_it_is_used(
    testbed, gateway_factory, upstream, portal
):
    """The defect of issue #13 item 2: a free-tier phone that stays associated but unused was
    let out again after every idle timeout (its neighbour entry sufficed) until the day's
    free minutes were gone. Now: REACHABLE for many ticks, sending nothing → walled, no
    session, not a second of the allowance used; one HTTP request → let out again (free,
    no terms), and its next request is forwarded, not the portal's."""
    gateway = gateway_factory()
    phone = testbed.phones[0]
    ping(testbed, phone.ns, GW_LAN_IP)
    gateway.call("authorize", mac=phone.mac, ip=phone.ip, tier="free", source="free")
    assert is_online(testbed, phone.ns)
    _left(testbed, gateway, phone, "idle-timeout")  # the villager put the phone down
    used = gateway.call("client", ip=phone.ip, mac=phone.mac)["allowance"]["free"]["seconds_used"]

    # Several rounds, each as long as the old defect needed to let it out again (one tick):
    # the gateway asks for the phone (ARP), the phone answers, and sends nothing else.
    for _ in range(3):
        assert ping(testbed, testbed.gw, phone.ip)
        assert _neighbour_state(testbed, phone.ip) in ("REACHABLE", "DELAY", "STALE")
        _ticks(gateway, 3)
        assert (phone.ip, phone.mac) not in authorized(testbed), "an unused phone was let out"
    assert gateway.call("list") == []
    free = gateway.call("client", ip=phone.ip, mac=phone.mac)["allowance"]["free"]
    assert free["seconds_used"] == used and not free["exhausted"]

    # The villager opens a page: that one meets the portal; the next tick lets it out.
    seen_by_portal = len(portal.received())
    assert PORTAL_MARKER in _opens_a_page(testbed, phone)
    wait_until(
        lambda: (phone.ip, phone.mac) in authorized(testbed), 10, what="the used phone let out"
    )
    (session,) = gateway.call("list")
    assert session["source"] == "free" and session["mac"] == phone.mac
    assert _page(testbed, phone) == "<h1>upstream ok</h1>"
    assert len(portal.received()) == seen_by_portal + 1, "forwarded, not the portal's"


def gateway_packages(gateway):
    from hotspot.config import load

    return load(gateway.config_path).packages.values()
