"""No retyping (issue #13, item 2) against the real kernel: a phone whose voucher session idled
out is let out again by the gateway when it shows up on the LAN — no portal, no code — and
stays walled while it is away; an operator's kick ends that until the villager logs in
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

    # Back: its first frames put it in the neighbour table, the next tick lets it out.
    # (Its requests in the moment before that tick meet the splash, as a captive probe
    # would; nobody taps anything.)
    ping(testbed, phone.ns, GW_LAN_IP)
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
    ping(testbed, phone.ns, GW_LAN_IP)
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


def gateway_packages(gateway):
    from hotspot.config import load

    return load(gateway.config_path).packages.values()
