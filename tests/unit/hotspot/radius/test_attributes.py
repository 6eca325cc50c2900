"""An Access-Accept's attributes → the session's limits; end reasons → Acct-Terminate-Cause;
the accounting records' attributes (hotspot/radius/attributes.py)."""

from __future__ import annotations

import pytest

from hotspot.model import EndReason
from hotspot.radius.attributes import (
    GIGA,
    MAX_BYTES,
    MAX_SESSION_SECONDS,
    AccountingFigures,
    DataLimitAttribute,
    StatusType,
    TerminateCause,
    accounting_attributes,
    calling_station_id,
    grant_from_attributes,
    octets,
    parse_mikrotik_rate,
    terminate_cause,
)

CHILLI = DataLimitAttribute.CHILLISPOT


def test_standard_and_wispr_attributes_set_the_session():
    g = grant_from_attributes(
        {
            "Session-Timeout": [3600],
            "Idle-Timeout": [90],
            "WISPr-Bandwidth-Max-Down": [2_000_000],
            "WISPr-Bandwidth-Max-Up": [512_500],
            "ChilliSpot-Max-Total-Octets": [1_000_000],
            "ChilliSpot-Max-Total-Gigawords": [1],
            "Acct-Interim-Interval": [600],
            "Class": [b"kelas-a", b"billing-7"],
            "Reply-Message": ["Selamat datang"],
        },
        CHILLI,
    )
    assert g.session_seconds == 3600
    assert g.idle_minutes == 2  # 90 s, rounded up to whole minutes
    assert (g.down_kbps, g.up_kbps) == (2000, 513)  # bits per second → kbit/s, rounded up
    assert g.bytes_limit == GIGA + 1_000_000
    assert g.interim_seconds == 600
    assert g.classes == (b"kelas-a", b"billing-7")
    assert g.reply_message == "Selamat datang"
    assert g.problems == ()


def test_nothing_said_means_the_tiers_own_limits():
    g = grant_from_attributes({}, CHILLI)
    assert (g.session_seconds, g.idle_minutes, g.down_kbps, g.up_kbps, g.bytes_limit) == (
        None,
        None,
        None,
        None,
        None,
    )


def test_the_data_limit_attribute_is_the_configured_vendors():
    attrs = {"ChilliSpot-Max-Total-Octets": [5000], "Mikrotik-Total-Limit": [7000]}
    assert grant_from_attributes(attrs, CHILLI).bytes_limit == 5000
    assert grant_from_attributes(attrs, DataLimitAttribute.MIKROTIK).bytes_limit == 7000
    attrs = {"Mikrotik-Total-Limit": [0], "Mikrotik-Total-Limit-Gigawords": [2]}
    assert grant_from_attributes(attrs, DataLimitAttribute.MIKROTIK).bytes_limit == 2 * GIGA


def test_out_of_range_values_are_clamped_and_wrong_kinds_named():
    g = grant_from_attributes(
        {
            "Session-Timeout": [2**32 - 1],
            "WISPr-Bandwidth-Max-Down": [2**32 - 1],
            "ChilliSpot-Max-Total-Octets": [2**32 - 1],
            "ChilliSpot-Max-Total-Gigawords": [2**32 - 1],
            "Acct-Interim-Interval": [5],  # RFC 2869: not more often than once a minute
            "Idle-Timeout": ["soon"],
        },
        CHILLI,
    )
    assert g.session_seconds == MAX_SESSION_SECONDS
    assert g.down_kbps == 4_294_968
    assert g.bytes_limit == MAX_BYTES
    assert g.interim_seconds == 60
    assert g.idle_minutes is None and g.problems == ("Idle-Timeout",)


def test_mikrotik_rate_limit_when_no_wispr():
    assert parse_mikrotik_rate("512k/2M") == (2000, 512)  # rx/tx: the client's up/down
    assert parse_mikrotik_rate("1M") == (1000, 1000)
    assert parse_mikrotik_rate("1M/4M 2M/8M 1M/4M 10/10") == (4000, 1000)
    g = grant_from_attributes({"Mikrotik-Rate-Limit": ["256k/1M"]}, CHILLI)
    assert (g.down_kbps, g.up_kbps) == (1000, 256)
    for bad in ("", "fast", "0/0", "1x/2y"):
        with pytest.raises(ValueError):
            parse_mikrotik_rate(bad)
    assert grant_from_attributes({"Mikrotik-Rate-Limit": ["??"]}, CHILLI).problems == (
        "Mikrotik-Rate-Limit",
    )


@pytest.mark.parametrize(
    ("reason", "cause"),
    [
        (EndReason.LOGOUT, TerminateCause.USER_REQUEST),
        (EndReason.IDLE, TerminateCause.IDLE_TIMEOUT),
        (EndReason.SESSION, TerminateCause.SESSION_TIMEOUT),
        (EndReason.QUOTA, TerminateCause.SESSION_TIMEOUT),
        (EndReason.KICK, TerminateCause.ADMIN_RESET),
        (EndReason.BLOCKED, TerminateCause.ADMIN_RESET),
        (EndReason.REPLACED, TerminateCause.LOST_CARRIER),
        (None, TerminateCause.NAS_REQUEST),
    ],
)
def test_every_end_reason_has_a_terminate_cause(reason, cause):
    assert terminate_cause(reason) is cause


def test_every_end_reason_is_mapped():
    assert {terminate_cause(r) for r in EndReason} <= set(TerminateCause)
    from hotspot.radius.attributes import TERMINATE_CAUSES

    assert set(TERMINATE_CAUSES) == set(EndReason)


def test_octets_and_gigawords():
    assert octets(0) == (0, 0)
    assert octets(GIGA - 1) == (GIGA - 1, 0)
    assert octets(5 * GIGA + 7) == (7, 5)
    assert octets(-3) == (0, 0)


def test_accounting_attributes_by_status():
    base = dict(
        acct_session_id="ABC",
        username="budi",
        framed_ip="10.10.0.11",
        calling_station="02-00-00-00-00-01",
        session_seconds=61,
        bytes_from_client=3 * GIGA + 5,
        bytes_to_client=1000,
        classes=(b"\x01\x02",),
    )
    start = accounting_attributes(AccountingFigures(status=StatusType.START, **base))
    assert start["Acct-Status-Type"] == 1 and "Acct-Input-Octets" not in start
    assert start["Class"] == ["0102"]
    interim = accounting_attributes(AccountingFigures(status=StatusType.INTERIM, **base))
    assert (interim["Acct-Input-Octets"], interim["Acct-Input-Gigawords"]) == (5, 3)
    assert (interim["Acct-Output-Octets"], interim["Acct-Output-Gigawords"]) == (1000, 0)
    assert interim["Acct-Session-Time"] == 61 and "Acct-Terminate-Cause" not in interim
    stop = accounting_attributes(
        AccountingFigures(status=StatusType.STOP, cause=TerminateCause.IDLE_TIMEOUT, **base)
    )
    assert stop["Acct-Terminate-Cause"] == 4


def test_calling_station_id_is_rfc3580():
    assert calling_station_id("02:ab:00:00:00:01") == "02-AB-00-00-00-01"
