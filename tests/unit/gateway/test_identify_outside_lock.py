"""Which MAC is at an address is asked of the kernel before the engine lock: an ARP probe of a
silent address takes up to ``probe_timeout`` (0.5 s), and no other login may wait for it.

A hostile or departed device at one address is simulated by a data path whose ``mac_of``
for that address blocks until released; logins, kicks and lookups of other devices must
finish meanwhile."""

from __future__ import annotations

import threading

import pytest

from hotspot.errors import NotFound, Refused

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"
SILENT = "10.10.0.99"
WAIT_S = 10.0


@pytest.fixture
def slow_probe(datapath):
    """``mac_of(SILENT)`` blocks (an ARP probe nobody answers) until ``release`` is set."""
    entered, release = threading.Event(), threading.Event()
    plain = datapath.mac_of

    def mac_of(ip: str) -> str | None:
        if ip == SILENT:
            entered.set()
            release.wait(WAIT_S)
            return None
        return plain(ip)

    datapath.mac_of = mac_of
    yield entered, release
    release.set()


@pytest.mark.parametrize("op", ["authorize", "client"])
def test_a_probe_of_a_silent_address_holds_up_no_other_login(engine, datapath, slow_probe, op):
    entered, release = slow_probe
    datapath.neighbours[IP1] = MAC1
    datapath.neighbours[IP2] = MAC2
    engine.authorize(ip=IP2)
    outcome: list[BaseException | dict[str, object]] = []

    def ask_about_silent() -> None:
        try:
            outcome.append(getattr(engine, op)(ip=SILENT))
        except NotFound as exc:
            outcome.append(exc)

    probing = threading.Thread(target=ask_about_silent)
    probing.start()
    try:
        assert entered.wait(WAIT_S), "the probe never started"
        # While the probe waits: a login, a lookup and a kick of other devices go through.
        assert engine.authorize(ip=IP1)["state"] == "active"
        assert engine.client(ip=IP1)["session"] is not None
        assert engine.deauthorize(ip=IP2)["state"] != "active"
        assert probing.is_alive()  # all of that while the probe was still waiting
    finally:
        release.set()
        probing.join(WAIT_S)
    if op == "authorize":  # nobody answered: refused, as before
        assert isinstance(outcome[0], NotFound)
    else:  # the portal asking about an unknown address: no MAC, no session
        assert isinstance(outcome[0], dict) and outcome[0]["mac"] is None


def test_the_requester_check_and_the_expected_mac_still_hold(engine, datapath):
    """Moving the lookup out of the lock kept both checks that depend on it."""
    datapath.neighbours[IP1] = MAC1
    with pytest.raises(Refused):  # the portal's splash saw another MAC at this address
        engine.authorize(ip=IP1, expect_mac=MAC2)
    datapath.portal_peers_at[IP1] = {MAC1, MAC2}
    with pytest.raises(Refused):  # two devices sent from this address lately
        engine.authorize(ip=IP1)
