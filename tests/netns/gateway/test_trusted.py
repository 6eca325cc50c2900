"""Trusted devices (issue #13, item 5) against the real kernel: a device on the list goes
straight out with no portal, stays out across kill -9, and is walled again when removed; a
device not on the list gets nowhere, whatever it does on the LAN."""

from __future__ import annotations

import json

from tests.netns.helpers import (
    GW_LAN_IP,
    PORTAL_MARKER,
    UPSTREAM_IP,
    authorized,
    curl,
    is_walled,
    ping,
    wait_until,
)


def _page(bed, phone) -> str:
    return curl(bed, phone.ns, f"http://{UPSTREAM_IP}/index.html").body


def test_trusted_device_never_sees_the_portal(testbed, gateway, portal):
    pc, villager = testbed.phones
    # Both show up on the LAN (DHCP and ARP do this for a real device): the gateway's
    # neighbour table is where the engine sees them.
    for phone in (pc, villager):
        ping(testbed, phone.ns, GW_LAN_IP)
        assert PORTAL_MARKER in _page(testbed, phone), "a device off the list is not walled"

    add = gateway.cli(
        "trusted", "add", pc.mac, "--label", "PC kantor desa", "--tier", "unlimited", "--json"
    )
    assert json.loads(add.stdout)["ip"] == pc.ip, add.stdout
    # Straight to the real upstream page: no splash, no click, no redirect.
    wait_until(
        lambda: _page(testbed, pc) == "<h1>upstream ok</h1>", 5, what="the trusted PC online"
    )
    (session,) = gateway.call("list")
    assert session["source"] == "trusted" and session["expires_at"] is None
    seen_by_portal = len(portal.received())
    assert _page(testbed, pc) == "<h1>upstream ok</h1>"
    assert len(portal.received()) == seen_by_portal, "the trusted PC's request hit the portal"
    # The villager next to it is still walled.
    assert is_walled(testbed, villager.ns)

    # kill -9 and a fresh start: the list and the session are in the database.
    gateway.kill9()
    assert _page(testbed, pc) == "<h1>upstream ok</h1>", "kill -9 took the trusted PC offline"
    gateway.start()
    assert [t["mac"] for t in gateway.call("trusted")] == [pc.mac]
    assert _page(testbed, pc) == "<h1>upstream ok</h1>"
    assert (pc.ip, pc.mac) in authorized(testbed)

    # Off the list: walled again at once, the session ended as "untrusted".
    gateway.cli("trusted", "remove", pc.mac)
    assert is_walled(testbed, pc.ns)
    assert PORTAL_MARKER in _page(testbed, pc)
    assert gateway.call("list") == []
    shown = gateway.call("client", mac=pc.mac)["last_session"]
    assert shown["end_reason"] == "untrusted"
    # and it stays walled at the next ticks (nothing re-admits it)
    wait_until(lambda: gateway.call("status")["ticks"] >= 3, 15, what="three ticks")
    assert is_walled(testbed, pc.ns)


def test_a_villager_cannot_make_himself_trusted(testbed, gateway, portal):
    """Only the console's admin and root's CLI reach the trust request (the control socket
    is 0660 root:hotspot). A request to authorize as "trusted" — the one that would skip the
    allowance and every timeout — is refused even from a program that can reach the socket,
    and a blocked device cannot be put on the list."""
    pc, villager = testbed.phones
    ping(testbed, villager.ns, GW_LAN_IP)
    allowed = gateway.cli("clients", "allow", villager.mac, "--tier", "premium", "--json")
    assert allowed.returncode == 0  # an operator's allow is admin, never trusted
    assert gateway.call("list")[0]["source"] == "admin"
    gateway.call("deauthorize", mac=villager.mac)
    try:
        gateway.call("authorize", mac=villager.mac, ip=villager.ip, source="trusted")
    except Exception as exc:  # noqa: BLE001 - the error's kind is what is checked
        assert "source" in str(exc)
    else:
        raise AssertionError("an authorize claiming source=trusted was accepted")
    assert is_walled(testbed, villager.ns)
    gateway.call("block", mac=villager.mac, reason="abuse")
    blocked = gateway.cli(
        "trusted", "add", villager.mac, "--label", "HP", "--tier", "unlimited", check=False
    )
    assert blocked.returncode == 1 and "blocked" in blocked.stderr
    assert gateway.call("trusted") == [] and is_walled(testbed, villager.ns)
