"""The memory ceiling (``[gateway] restart_above_mb``, hotspot/memory.py), the real daemon:
past it, the gateway stops as it does for systemd — one warning naming both figures, the
counters flushed, the kernel state left — and exits 75 for systemd's ``Restart=always`` to
start it again; the phone rides through and is still logged in after the next start,
without logging in again. (The booted device's test shows systemd restarting the daemon
whatever its exit: tests/netns/provisioning/test_booted_device.py.)
"""

from __future__ import annotations

import os
import time

from tests.netns.helpers import authorize, authorized, is_online, wait_until
from testsupport.testbed import write_toml

EXIT_MEMORY_CEILING = 75


def test_past_the_ceiling_the_gateway_stops_and_the_phone_stays_logged_in(
    testbed, upstream, gateway_factory
):
    gw = gateway_factory()
    phone = testbed.phones[0]
    authorize(gw, phone)
    assert is_online(testbed, phone.ns)
    [session] = gw.call("list")
    gw.stop()

    # The same gateway with a ceiling below its own size (about 70 MB at start).
    write_toml(
        gw.config_path,
        {**gw.settings, "gateway": {**gw.settings["gateway"], "restart_above_mb": 32}},
    )
    if os.path.exists(gw.socket):
        os.unlink(gw.socket)
    proc = testbed.popen(testbed.gw, *gw.hotspot("gateway", "run"), log_path=gw.log)
    started = time.monotonic()
    assert proc.wait(timeout=60) == EXIT_MEMORY_CEILING, gw.log.read_text()
    assert time.monotonic() - started < 30
    log = gw.log.read_text()
    warning = [ln for ln in log.splitlines() if "restart_above_mb" in ln]
    assert len(warning) == 1, log
    assert "past [gateway] restart_above_mb = 32: stopping to be started again" in warning[0]
    assert "gateway stopped; kernel state left in place" in log.split(warning[0])[1]
    assert "Traceback" not in log
    # Between the two processes the kernel keeps the phone out on the internet.
    assert (phone.ip, phone.mac) in authorized(testbed)
    assert is_online(testbed, phone.ns)

    write_toml(gw.config_path, gw.settings)  # systemd's restart, on the usual figure
    gw.start()
    wait_until(lambda: is_online(testbed, phone.ns), 10, 0.2, what="the phone online again")
    [again] = gw.call("list")
    assert again["id"] == session["id"] and again["mac"] == phone.mac
