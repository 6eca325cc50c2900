"""The control protocol's requests: each parsed from its JSON line, good and bad."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from gateway.control_server import Dispatcher
from hotspot import protocol as proto
from hotspot.errors import ErrorCode, UsageError
from hotspot.model import EndReason, Source

MAC, IP = "02:00:00:00:00:01", "10.10.0.11"

# One of each request, with every field it has set.
EXAMPLES: list[proto.Request[Any]] = [
    proto.PingRequest(),
    proto.StatusRequest(),
    proto.AuthorizeRequest(
        ip=IP,
        mac=MAC,
        tier="premium",
        source=Source.VOUCHER,
        expires_at=dt.datetime(2026, 11, 29, 3),
        bytes_limit=10**9,
        voucher_id=7,
    ),
    proto.AuthorizeRequest(ip=IP, minutes=30),
    proto.DeauthorizeRequest(ip=IP, mac=MAC, reason=EndReason.LOGOUT),
    proto.ClientRequest(ip=IP),
    proto.ExtendRequest(mac=MAC, minutes=60),
    proto.ListRequest(),
    proto.BlockRequest(mac=MAC, reason="abuse"),
    proto.UnblockRequest(mac=MAC),
    proto.BlockedRequest(),
    proto.TrustRequest(mac=MAC, label="PC kantor desa", tier="unlimited", created_by="admin"),
    proto.UntrustRequest(mac=MAC),
    proto.TrustedRequest(),
    proto.ReconcileRequest(),
    proto.RadiusAuthorizeRequest(
        ip=IP,
        username="budi",
        tier="premium",
        expires_at=dt.datetime(2026, 11, 29, 3),
        idle_minutes=10,
        down_kbps=2000,
        up_kbps=500,
        bytes_limit=10**9,
        classes="6b656c6173",
        interim_seconds=300,
        offline=1,
    ),
    proto.PolicyRequest(),
    proto.PolicyApplyRequest(
        document='{"format":"hotspot-policy/1"}', signature="c2ln", key_id="ab"
    ),
]


def parse(line: str) -> proto.Request[Any]:
    return proto.parse_request(json.loads(line))


def test_there_is_an_example_of_every_request():
    assert {type(r) for r in EXAMPLES} == set(proto.REQUESTS.values())
    assert set(proto.REQUESTS) == {
        "ping",
        "status",
        "authorize",
        "deauthorize",
        "client",
        "extend",
        "list",
        "block",
        "unblock",
        "blocked",
        "trust",
        "untrust",
        "trusted",
        "reconcile",
        "radius-authorize",
        "policy",
        "policy-apply",
    }


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.op)
def test_every_request_survives_the_wire(request_):
    line = proto.encode(request_.to_wire())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert proto.parse_request(json.loads(line)) == request_


def test_wire_form_is_the_documented_one():
    wire = EXAMPLES[2].to_wire()
    assert wire == {
        "op": "authorize",
        "ip": IP,
        "mac": MAC,
        "tier": "premium",
        "source": "voucher",
        "expires_at": "2026-11-29T03:00:00Z",
        "bytes_limit": 10**9,
        "voucher_id": 7,
    }
    assert proto.ListRequest().to_wire() == {"op": "list"}
    aware = dt.datetime(2026, 11, 29, 10, tzinfo=dt.timezone(dt.timedelta(hours=7)))
    assert (
        proto.AuthorizeRequest(ip=IP, expires_at=aware).to_wire()["expires_at"]
        == "2026-11-29T03:00:00Z"
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ('{"op": "authorize", "ip": "10.10.0.11"}', proto.AuthorizeRequest(ip=IP)),
        (
            '{"op": "authorize", "mac": "02-00-00-00-00-01", "minutes": 0}',
            proto.AuthorizeRequest(mac=MAC, minutes=0),
        ),
        (
            '{"op": "authorize", "ip": "10.10.0.11", "expires_at": "2026-11-29T10:00:00+07:00"}',
            proto.AuthorizeRequest(ip=IP, expires_at=dt.datetime(2026, 11, 29, 3)),
        ),
        (
            '{"op": "authorize", "ip": "10.10.0.11", "expires_at": "2026-11-29T03:00:00"}',
            proto.AuthorizeRequest(ip=IP, expires_at=dt.datetime(2026, 11, 29, 3)),
        ),
        (
            '{"op": "authorize", "ip": "10.10.0.11", "tier": "premium", "source": "admin", '
            '"bytes_limit": 1125899906842624, "voucher_id": 4611686018427387904}',
            proto.AuthorizeRequest(
                ip=IP, tier="premium", source=Source.ADMIN, bytes_limit=1 << 50, voucher_id=1 << 62
            ),
        ),
        ('{"op": "deauthorize", "mac": "02:00:00:00:00:01"}', proto.DeauthorizeRequest(mac=MAC)),
        (
            '{"op": "deauthorize", "ip": "10.10.0.11", "reason": "replaced"}',
            proto.DeauthorizeRequest(ip=IP, reason=EndReason.REPLACED),
        ),
        (
            '{"op": "client", "ip": "10.10.0.11", "mac": "02:00:00:00:00:01"}',
            proto.ClientRequest(ip=IP, mac=MAC),
        ),
        (
            '{"op": "extend", "ip": "10.10.0.11", "minutes": 525600}',
            proto.ExtendRequest(ip=IP, minutes=525_600),
        ),
        ('{"op": "block", "mac": "02:00:00:00:00:01"}', proto.BlockRequest(mac=MAC)),
        (
            '{"op": "block", "mac": "02:00:00:00:00:01", "reason": "Pencurian"}',
            proto.BlockRequest(mac=MAC, reason="Pencurian"),
        ),
        ('{"op": "unblock", "mac": "02:00:00:00:00:01"}', proto.UnblockRequest(mac=MAC)),
        ('{"op": "authorize", "ip": "10.10.0.11", "minutes": null}', proto.AuthorizeRequest(ip=IP)),
        (
            '{"op": "trust", "mac": "02-00-00-00-00-01", "label": " PC desa ", "tier": "free"}',
            proto.TrustRequest(mac=MAC, label="PC desa", tier="free"),
        ),
        ('{"op": "untrust", "mac": "02:00:00:00:00:01"}', proto.UntrustRequest(mac=MAC)),
        ('{"op": "trusted"}', proto.TrustedRequest()),
    ],
)
def test_good_requests(line, expected):
    assert parse(line) == expected


# (line, the field the message must name). Each is refused with bad-request.
BAD: list[tuple[str, str]] = [
    ("[1, 2]", "op"),
    ('"ping"', "op"),
    ("{}", "op"),
    ('{"op": 5}', "op"),
    ('{"op": "explode"}', "op"),
    ('{"op": "list", "extra": 1}', "extra"),
    ('{"op": "ping", "ip": "10.10.0.11"}', "ip"),
    ('{"op": "authorize"}', "ip"),
    ('{"op": "authorize", "ip": ["10.10.0.11"]}', "ip"),
    ('{"op": "authorize", "ip": 168430091}', "ip"),
    ('{"op": "authorize", "ip": "10.10.0.011"}', "ip"),
    ('{"op": "authorize", "ip": "fe80::1"}', "ip"),
    ('{"op": "authorize", "mac": "zz:00:00:00:00:01"}', "mac"),
    ('{"op": "authorize", "mac": "01:00:5e:00:00:01"}', "mac"),
    ('{"op": "authorize", "mac": "' + "0" * 100 + '"}', "mac"),
    ('{"op": "authorize", "ip": "10.10.0.11", "tier": 5}', "tier"),
    ('{"op": "authorize", "ip": "10.10.0.11", "tier": "' + "x" * 65 + '"}', "tier"),
    ('{"op": "authorize", "ip": "10.10.0.11", "tier": "\\ud800"}', "tier"),
    ('{"op": "authorize", "ip": "10.10.0.11", "source": "magic"}', "source"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": -1}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": 525601}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": ' + "9" * 30 + "}", "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": 1.5}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": NaN}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": Infinity}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": 1e999}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": true}', "minutes"),
    ('{"op": "authorize", "ip": "10.10.0.11", "minutes": "30"}', "minutes"),
    (
        '{"op": "authorize", "ip": "10.10.0.11", "minutes": 5, '
        '"expires_at": "2026-11-29T03:00:00Z"}',
        "minutes",
    ),
    (
        '{"op": "authorize", "ip": "10.10.0.11", "expires_at": "9999-12-31T23:59:59-23:59"}',
        "expires_at",
    ),
    (
        '{"op": "authorize", "ip": "10.10.0.11", "expires_at": "0001-01-01T00:00:00+01:00"}',
        "expires_at",
    ),
    ('{"op": "authorize", "ip": "10.10.0.11", "expires_at": "9999-12-31T23:59:59Z"}', "expires_at"),
    ('{"op": "authorize", "ip": "10.10.0.11", "expires_at": "tomorrow"}', "expires_at"),
    ('{"op": "authorize", "ip": "10.10.0.11", "expires_at": 1790000000}', "expires_at"),
    ('{"op": "authorize", "ip": "10.10.0.11", "bytes_limit": 0}', "bytes_limit"),
    ('{"op": "authorize", "ip": "10.10.0.11", "bytes_limit": 1125899906842625}', "bytes_limit"),
    ('{"op": "authorize", "ip": "10.10.0.11", "voucher_id": -1}', "voucher_id"),
    ('{"op": "authorize", "ip": "10.10.0.11", "voucher_id": 4611686018427387905}', "voucher_id"),
    ('{"op": "authorize", "ip": "10.10.0.11", "colour": "red"}', "colour"),
    ('{"op": "deauthorize"}', "ip"),
    ('{"op": "deauthorize", "mac": "02:00:00:00:00:01", "reason": "whim"}', "reason"),
    ('{"op": "client", "mac": 7}', "mac"),
    ('{"op": "extend", "mac": "02:00:00:00:00:01"}', "minutes"),
    ('{"op": "extend", "mac": "02:00:00:00:00:01", "minutes": 0}', "minutes"),
    ('{"op": "extend", "mac": 7, "minutes": 5}', "mac"),
    ('{"op": "block"}', "mac"),
    ('{"op": "block", "mac": "02:00:00:00:00:01", "reason": 5}', "reason"),
    ('{"op": "block", "mac": "02:00:00:00:00:01", "reason": "' + "x" * 1001 + '"}', "reason"),
    ('{"op": "unblock", "mac": null}', "mac"),
    ('{"op": "reconcile", "now": true}', "now"),
    # A session's freedom from allowances and timeouts is the gateway's to give (trust).
    ('{"op": "authorize", "ip": "10.10.0.11", "source": "trusted"}', "source"),
    ('{"op": "trust", "mac": "02:00:00:00:00:01", "tier": "free"}', "label"),
    ('{"op": "trust", "mac": "02:00:00:00:00:01", "label": "  ", "tier": "free"}', "label"),
    (
        '{"op": "trust", "mac": "02:00:00:00:00:01", "label": "' + "x" * 81 + '", "tier": "f"}',
        "label",
    ),
    ('{"op": "trust", "mac": "02:00:00:00:00:01", "label": "PC"}', "tier"),
    ('{"op": "trust", "label": "PC", "tier": "free"}', "mac"),
    ('{"op": "trust", "mac": "ff:ff:ff:ff:ff:ff", "label": "PC", "tier": "free"}', "mac"),
    ('{"op": "untrust"}', "mac"),
    ('{"op": "trusted", "mac": "02:00:00:00:00:01"}', "mac"),
]


@pytest.mark.parametrize("line, field", BAD, ids=[f"{i}-{f}" for i, (_, f) in enumerate(BAD)])
def test_bad_requests_name_the_field(line, field):
    with pytest.raises(UsageError) as err:
        parse(line)
    assert err.value.code is ErrorCode.BAD_REQUEST
    assert err.value.message.startswith(f"{field}: "), err.value.message


def test_unknown_fields_are_all_named():
    with pytest.raises(UsageError, match=r"^a: not an argument of 'list' \(nor are b\)$"):
        parse('{"op": "list", "b": 1, "a": 2}')


def test_dispatcher_answers_every_request(cfg, engine):
    dispatcher = Dispatcher(engine, lambda: {"ok": True})
    for request in EXAMPLES:
        reply = json.loads(dispatcher.answer(proto.encode(request.to_wire())))
        # Errors from the engine's own checks are fine (no such device...); a missing handler
        # or a bug would be "internal".
        assert reply["ok"] or reply["error"]["code"] != "internal", (request, reply)
