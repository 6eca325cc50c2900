"""Logout, accept and voucher by address alone (issue #10, item 7), against the real gateway
and the real portal (`hotspot portal run`) in network namespaces (root only).

Phone B takes phone A's address while A sleeps and posts the portal's forms. On an open SSID
an attacker hears the frames sent to A (monitor mode); here B's namespace is made to hear
them: with A's port down the bridge floods frames for A's MAC to every port, and an
ingress rule in B's namespace takes those frames as its own. So B's requests really reach
the portal and their answers really reach B — only with B's own MAC.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.netns.helpers import (
    GW_LAN_IP,
    portal_exchange,
    readdress,
    splash_csrf_token,
    wait_until,
)
from testsupport import testbed as tb
from testsupport.testbed import Phone

NOT_YOURS = "Ini bukan sesi Anda"


@pytest.fixture
def village(gateway_factory, upstream, tmp_path):
    gw = gateway_factory(
        {
            "portal": tb.portal_settings(tmp_path, workers=2),
            "packages": {
                "harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24}
            },
        }
    )
    gw.start_portal()
    return gw


def post(bed: tb.Testbed, phone: Phone, path: str, jar: str, **fields: str) -> tuple[int, str]:
    """Open the splash (for a CSRF token), then post ``fields`` to ``path``: (status, body)."""
    token = splash_csrf_token(bed, phone, jar)
    return portal_exchange(bed, phone, path, jar, timeout=10, csrf_token=token, **fields)


def session_of(gw, mac: str) -> dict | None:
    return gw.call("client", mac=mac)["session"]


def test_another_device_at_my_address_cannot_end_or_change_my_session(testbed, village, tmp_path):
    a, b = testbed.phones[0], testbed.phones[1]
    jar_a, jar_b = str(tmp_path / "a.jar"), str(tmp_path / "b.jar")
    status, _ = post(testbed, a, "/accept", jar_a)
    assert status == 303
    before = session_of(village, a.mac)
    assert before and before["ip"] == a.ip and before["tier"] == "free"
    batch = json.loads(
        village.cli("vouchers", "create", "--package", "harian", "--count", "1", "--json").stdout
    )
    code = batch["codes"][0]

    # B fetches a form (and its CSRF token) from its own address first, like any visitor.
    token = splash_csrf_token(testbed, b, jar_b)

    # A sleeps; B takes A's address and hears what the gateway sends to A's MAC.
    testbed.run(a.ns, "ip", "link", "set", "eth0", "down")
    readdress(testbed, b, a.ip)
    testbed.run(
        b.ns,
        "nft",
        "-f",
        "-",
        input=(
            "table netdev air {\n chain ingress {\n"
            "  type filter hook ingress device eth0 priority 0;\n"
            f"  ether daddr {a.mac} meta pkttype set host\n }}\n}}\n"
        ),
    )
    for path, fields in (
        ("/logout", {}),
        ("/accept", {}),
        ("/voucher", {"code": code}),
    ):
        status, body = portal_exchange(
            testbed, b, path, jar_b, timeout=10, csrf_token=token, **fields
        )
        # The request reached the portal from A's address (the attack is real) and was refused.
        assert status == 403, (path, status, body[:300])
        assert NOT_YOURS in body
    after = session_of(village, a.mac)
    assert after["id"] == before["id"] and after["tier"] == "free" and after["voucher_id"] is None
    assert village.call("list")[0]["id"] == before["id"] and len(village.call("list")) == 1
    unused = json.loads(village.cli("vouchers", "print", str(batch["batch"]), "--json").stdout)
    assert [v["code"] for v in unused] == [code]  # the voucher was not used up

    # B leaves A's address, A wakes up: A's own logout works (once B's frames are a minute old
    # at most: until then the address is contested and nothing is done for anyone).
    testbed.run(b.ns, "nft", "delete", "table", "netdev", "air")
    readdress(testbed, b, b.ip)
    testbed.run(a.ns, "ip", "link", "set", "eth0", "up")
    testbed.run(a.ns, "ip", "route", "replace", "default", "via", GW_LAN_IP)

    def logged_out() -> bool:
        status, _ = post(testbed, a, "/logout", jar_a)
        if status != 303:
            time.sleep(1)
            return False
        return True

    wait_until(logged_out, timeout=45, what="A's own logout")
    assert session_of(village, a.mac) is None
    last = village.call("client", mac=a.mac)["last_session"]
    assert last["id"] == before["id"] and last["end_reason"] == "logout"
