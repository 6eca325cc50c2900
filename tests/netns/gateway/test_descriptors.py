"""The running gateway's open descriptors stay flat under connection churn (issue #11, found
by ``bench.soak``): every control connection runs in a thread of its own, and pyroute2 0.9
gave each thread that looked up a neighbour or forgot a client's conntrack entries its own
netlink socket, never closed — two descriptors per connection, thousands a day."""

from __future__ import annotations

import os

from hotspot.control import ControlClient


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_control_connections_leave_no_descriptor_behind(testbed, gateway):
    phone = testbed.phones[0]
    pid = gateway.proc.pid  # `ip netns exec` execs the gateway in place

    def churn(rounds: int) -> None:
        # What the portal and the CLI do, each on a new connection (a new server thread):
        # the page's question (a neighbour lookup), a login, a kick (a conntrack flush).
        for _ in range(rounds):
            with ControlClient(gateway.socket) as ctl:
                ctl.call("client", ip=phone.ip)
            with ControlClient(gateway.socket) as ctl:
                ctl.call("authorize", ip=phone.ip, mac=phone.mac)
            with ControlClient(gateway.socket) as ctl:
                ctl.call("deauthorize", mac=phone.mac)

    churn(3)  # the first calls open what the daemon keeps for its life
    before = open_fds(pid)
    churn(20)
    after = open_fds(pid)
    assert after - before <= 2, f"{after - before} descriptors more after 60 connections"
