"""Time without a real-time clock (issue #11, item 2) against the real gateway: the wall
clock of ``hotspot gateway run`` is stepped while phones are online — three days forward
(NTP at last, days after a Pi booted on its saved time), an hour back (a clock corrected),
a year forward and back across a local midnight — and sessions and vouchers keep the time
they really have: the step neither ends them nor extends them.

The daemon's wall clock is the machine's plus the seconds in a file the test rewrites
(``HOTSPOT_TEST_CLOCK_SHIFT_FILE``, hotspot.timeutil.ShiftedClock); its monotonic clock is
the machine's. libfaketime is not used: Debian's 0.9.10 with the monotonic clock left alone
breaks Python's ``time.sleep`` (libfaketime #426). Half-second ticks; each test takes
seconds, not the minutes it models (a 2-minute session is one of 20 s here)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from sqlalchemy import select

from hotspot.db import open_database
from hotspot.model import Voucher
from hotspot.timeutil import TEST_CLOCK_SHIFT_ENV, ShiftedClock, iso, utcnow
from hotspot.vouchers.keys import load_key
from hotspot.vouchers.redemption import VoucherService
from tests.netns.helpers import GW_LAN_IP, is_online, is_walled, ping, wait_until

DAY = 86400.0


@pytest.fixture
def shift_file(tmp_path, monkeypatch):
    path = tmp_path / "clock-shift"
    path.write_text("0")
    monkeypatch.setenv(TEST_CLOCK_SHIFT_ENV, str(path))
    return path


@pytest.fixture
def clock_gateway(gateway_factory, upstream, shift_file, tmp_path):
    return gateway_factory(
        {
            "gateway": {"flush_seconds": 1},
            "tiers": {"premium": {"idle_minutes": 0}},
            "portal": {
                "voucher_key_file": str(tmp_path / "voucher.key"),
                "secret_key_file": str(tmp_path / "portal.secret"),
            },
            "packages": {
                "sejam": {"title": "1 Jam", "price": 1000, "tier": "premium", "hours": 1},
            },
        }
    )


def step_clock(gw, shift_file, seconds: float) -> None:
    """Step the daemon's wall clock to ``seconds`` from the machine's, and wait until a tick
    has seen it (the gateway logs each step it follows)."""
    before = gw.log.read_text().count("clock stepped by")
    shift_file.write_text(str(seconds))
    wait_until(
        lambda: gw.log.read_text().count("clock stepped by") > before,
        10,
        interval=0.1,
        what="the gateway noticing the step",
    )


def session_of(gw, phone):
    return gw.call("client", mac=phone.mac)["session"]


def test_a_step_of_three_days_forward_ends_no_60_minute_session(testbed, clock_gateway, shift_file):
    gw, phone = clock_gateway, testbed.phones[0]
    gw.call("authorize", mac=phone.mac, ip=phone.ip, tier="premium", source="admin", minutes=60)
    assert is_online(testbed, phone.ns)
    step_clock(gw, shift_file, 3 * DAY)
    time.sleep(1.5)  # three more ticks on the new clock
    sess = session_of(gw, phone)
    assert sess is not None and sess["state"] == "active"
    assert 58 * 60 <= sess["seconds_remaining"] <= 60 * 60
    assert is_online(testbed, phone.ns)
    assert "clock stepped by +259200 s" in gw.log.read_text()


def test_a_step_of_an_hour_back_does_not_keep_a_short_session_alive(
    testbed, clock_gateway, shift_file
):
    gw, phone = clock_gateway, testbed.phones[0]
    end = ShiftedClock(str(shift_file))() + dt.timedelta(seconds=20)
    gw.call(
        "authorize",
        mac=phone.mac,
        ip=phone.ip,
        tier="premium",
        source="admin",
        expires_at=iso(end, exact=True),
    )
    started = time.monotonic()
    assert is_online(testbed, phone.ns)
    step_clock(gw, shift_file, -3600)
    assert session_of(gw, phone) is not None  # not ended by the step either
    wait_until(lambda: session_of(gw, phone) is None, 90, interval=0.25, what="the end")
    took = time.monotonic() - started
    # 20 s as granted (give or take a loaded machine's ticks), not an hour and 20 s; and not
    # ended by the step itself either.
    assert 15 <= took <= 90, took
    last = gw.call("client", mac=phone.mac)["last_session"]
    assert last["end_reason"] == "session-timeout"
    assert is_walled(testbed, phone.ns)


def test_a_voucher_across_a_year_forward_and_back_around_midnight(
    testbed, clock_gateway, shift_file, tmp_path
):
    """The gateway's clock reads 23:59:50 in Jakarta when an hour's voucher is first used;
    a bad clock then jumps a year ahead and is corrected back: the phone stays online, and
    the voucher ends an hour after its first use, as sold."""
    gw, phone = clock_gateway, testbed.phones[0]
    now = utcnow()
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(17, 0))
    shift_file.write_text(str((midnight - dt.timedelta(seconds=10) - now).total_seconds()))
    time.sleep(1.5)  # the gateway follows that first step before the voucher is used
    made = gw.cli("vouchers", "create", "--package", "sejam", "--count", "1", "--json")
    code = json.loads(made.stdout)["codes"][0]
    db = open_database(gw.settings["database"]["url"])
    service = VoucherService(
        db, load_key(str(tmp_path / "voucher.key")), gw.client, clock=ShiftedClock(str(shift_file))
    )
    ping(testbed, phone.ns, GW_LAN_IP)
    done = service.redeem(code, ip=phone.ip, mac=phone.mac)
    first_end = done.expires_at
    assert is_online(testbed, phone.ns)
    base = float(shift_file.read_text())
    step_clock(gw, shift_file, base + 365 * DAY)
    time.sleep(1.0)
    assert session_of(gw, phone) is not None and is_online(testbed, phone.ns)
    step_clock(gw, shift_file, base)
    time.sleep(1.0)
    sess = session_of(gw, phone)
    assert sess is not None and is_online(testbed, phone.ns)
    assert 3600 - 180 <= sess["seconds_remaining"] <= 3600
    with db.connect() as conn:
        end = conn.execute(select(Voucher.expires_at)).scalar_one()
    assert abs((end - first_end).total_seconds()) < 5  # back where it was: forward and back
    db.dispose()
