"""Speed schedules (issue #13, item 6) against the real gateway and the real kernel: a
window of the tier's schedule begins while a download runs, the client's HTB class changes
in place (``tc class change``), and the same TCP connection goes on at the window's rate;
when the window ends the class goes back to the tier's own rate."""

from __future__ import annotations

import datetime as dt
import statistics
import time
import zoneinfo

from tests.netns.helpers import (
    TCP_FRAME_OVERHEAD,
    authorize,
    client_minor,
    iperf3_result,
    iperf3_start,
    mtu_sized_frames,
    tc_classes,
    tier,
    wait_until,
)

BASE_KBPS = 1000
BOOST_KBPS = 4000
LEAD_SECONDS = 12  # at least this long from now to the window's start (gateway start-up)


def _window_from_now(tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dict[str, object]]:
    """A one-minute window starting at the next whole minute at least LEAD_SECONDS away,
    on the village's wall clock (schedules are minute-precise)."""
    soon = dt.datetime.now(tz) + dt.timedelta(seconds=LEAD_SECONDS)
    start = soon.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    end = start + dt.timedelta(minutes=1)
    window = {
        "from": start.strftime("%H:%M"),
        "to": end.strftime("%H:%M"),
        "down_kbps": BOOST_KBPS,
        "up_kbps": BOOST_KBPS,
    }
    return start, window


def _ceils(bed, minor: int) -> tuple[int, int]:
    return tc_classes(bed, "br-lan")[minor].ceil_bps, tc_classes(bed, "eth0")[minor].ceil_bps


def test_a_window_changes_a_running_download_without_dropping_it(
    testbed, upstream, gateway_factory
):
    tz = zoneinfo.ZoneInfo("Asia/Jakarta")
    start, window = _window_from_now(tz)
    gw = gateway_factory(
        {
            "village": {"timezone": "Asia/Jakarta"},
            "network": {"uplink_down_kbps": 100000, "uplink_up_kbps": 100000},
            "tiers": {"night": {**tier(BASE_KBPS), "schedule": [window]}},
        }
    )
    mtu_sized_frames(testbed)
    phone = testbed.phones[0]
    session = authorize(gw, phone, "night")
    minor = client_minor(phone.ip)
    assert _ceils(testbed, minor) == (BASE_KBPS * 1000, BASE_KBPS * 1000)
    assert session["speed_window"] is None

    edge = start.timestamp()
    time.sleep(max(0.0, edge - 7 - time.time()))
    began = time.time()
    run = iperf3_start(testbed, phone.ns, reverse=True, seconds=16, omit=0)
    try:
        wait_until(
            lambda: _ceils(testbed, minor) == (BOOST_KBPS * 1000, BOOST_KBPS * 1000),
            20,
            interval=0.1,
            what="the class at the window's rate",
        )
        changed_at = time.time()
        result = iperf3_result(run, timeout=40)  # an error here = the connection broke
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    # One connection the whole time, and it carried data in every second of it.
    streams = {s["socket"] for s in result.raw["start"]["connected"]}
    assert len(streams) == 1
    intervals = [i["sum"] for i in result.raw["intervals"]]
    assert len(intervals) >= 15 and all(i["bytes"] > 0 for i in intervals), intervals

    def wire_kbps(i: dict) -> float:
        return i["bits_per_second"] * (result.mss + TCP_FRAME_OVERHEAD) / result.mss / 1000

    before = [wire_kbps(i) for i in intervals if 2 <= i["start"] and began + i["end"] < edge]
    after = [wire_kbps(i) for i in intervals if began + i["start"] > changed_at + 1.0]
    print(
        f"\nSPEED SCHEDULE edge at {start:%H:%M:%S %Z}, class changed "
        f"{changed_at - edge:+.2f} s after it; kbit/s on the wire before "
        f"{[round(k) for k in before]}, after {[round(k) for k in after]}"
    )
    assert before and after, (before, after)
    # A hang bound (the change comes at the first tick after the edge; a loaded machine
    # delays ticks): the rates before and after below are what is tested.
    assert changed_at - edge < 6.0, "the class did not change at the edge"
    assert abs(statistics.median(before) - BASE_KBPS) <= 0.2 * BASE_KBPS, before
    assert abs(statistics.median(after) - BOOST_KBPS) <= 0.2 * BOOST_KBPS, after

    (now,) = gw.call("list")
    assert now["id"] == session["id"]  # the same session: nothing was re-authorized
    assert (now["down_kbps"], now["speed_window"]) == (BOOST_KBPS, "faster")
    assert now["speed_until"] is not None
    log = gw.log.read_text()
    assert f"speed schedule: tier night now at {BOOST_KBPS}/{BOOST_KBPS}" in log
    assert "kernel differed from database" not in log  # an edge is not a drift

    # The window ends a minute later: back to the tier's own rate, still the same session.
    wait_until(
        lambda: _ceils(testbed, minor) == (BASE_KBPS * 1000, BASE_KBPS * 1000),
        75,
        interval=0.2,
        what="the class back at the tier's rate",
    )
    (after_end,) = gw.call("list")
    assert after_end["id"] == session["id"] and after_end["speed_window"] is None
