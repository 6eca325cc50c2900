"""dnsmasq's name-based walled-garden entries survive a gateway restart (the table is
replaced atomically at start, and dnsmasq answers from its cache without re-adding them)."""


def test_walled_dns_entries_survive_restart(testbed, gateway):
    testbed.nft_element("add", "walled_garden_dns", "{ 198.51.100.10 timeout 30m }")
    gateway.stop()
    gateway.start()
    listing = testbed.run(
        testbed.gw, "nft", "list", "set", "inet", "hotspot", "walled_garden_dns"
    ).stdout
    assert "198.51.100.10" in listing
    # And the walled-garden address is reachable before login.
    phone = testbed.phones[0]
    out = testbed.run(
        phone.ns, "curl", "-s", "-m", "3", "http://198.51.100.10/index.html", check=False
    )
    assert "upstream ok" in out.stdout
