"""The protocol: signatures, bounded inflation, strict records."""

from __future__ import annotations

import gzip
import zlib

import pytest

from hotspot import wire
from tests.unit.collector.helpers import (
    batch_document,
    gateway_record,
    health_record,
    sales_record,
)

ARGS = ("desa-uji", "1764300000", "ab" * 16, "cd" * 16)


def test_signature_covers_every_part():
    body = wire.compress(b'{"x":1}')
    sig = wire.sign("secret-" * 6, *ARGS, body)
    assert sig.startswith("v1=") and len(sig) == 67
    assert wire.verify("secret-" * 6, sig, *ARGS, body)
    assert not wire.verify("other-" * 6, sig, *ARGS, body)
    assert not wire.verify("secret-" * 6, sig, *ARGS, body + b"x")
    for i in range(4):
        changed = list(ARGS)
        changed[i] = changed[i][:-1] + ("0" if changed[i][-1] != "0" else "1")
        assert not wire.verify("secret-" * 6, sig, *changed, body)
    assert not wire.verify("secret-" * 6, "", *ARGS, body)


def test_inflate_is_bounded():
    small = wire.compress(b"a" * 1000)
    assert wire.inflate(small, 1000) == b"a" * 1000
    bomb = wire.compress(b"\0" * 20_000_000)  # ~20 kB on the wire
    assert len(bomb) < 100_000
    with pytest.raises(wire.TooLarge):
        wire.inflate(bomb, 1_000_000)
    with pytest.raises(wire.WireError):
        wire.inflate(small[:-10], 1000)  # truncated
    with pytest.raises(wire.WireError):
        wire.inflate(b"not gzip at all", 1000)
    with pytest.raises(wire.WireError):
        wire.inflate(small + b"junk", 1000)
    deflate_only = zlib.compress(b"abc")
    with pytest.raises(wire.WireError):
        wire.inflate(deflate_only, 1000)
    assert gzip.decompress(small) == b"a" * 1000


def _doc(records, gateway="desa-uji", key="cd" * 16):
    return batch_document(records, gateway, key)


USAGE = {
    "kind": "usage",
    "client": "0123456789abcdef",
    "period_start": "2026-11-28T03:00:00Z",
    "seconds": 10,
    "bytes_down": 5,
    "bytes_up": 6,
}


def test_decode_checks_envelope_and_every_record():
    recs = wire.decode_body(_doc([USAGE]), "desa-uji", "cd" * 16)
    assert recs[0]["period_start"].hour == 3
    with pytest.raises(wire.WireError, match="gateway"):
        wire.decode_body(_doc([USAGE], gateway="other-desa"), "desa-uji", "cd" * 16)
    with pytest.raises(wire.WireError, match="Idempotency"):
        wire.decode_body(_doc([USAGE], key="ef" * 16), "desa-uji", "cd" * 16)
    with pytest.raises(wire.WireError, match="not JSON"):
        wire.decode_body(b"{", "desa-uji", "cd" * 16)
    with pytest.raises(wire.WireError):
        wire.decode_body(b"[]", "desa-uji", "cd" * 16)


@pytest.mark.parametrize(
    "change",
    [
        {"client": "02:00:00:00:00:01"},  # a MAC is not a pseudonym
        {"client": "0123456789ABCDEF"},
        {"period_start": "2026-11-28T03:30:00Z"},
        {"period_start": "yesterday"},
        {"seconds": -1},
        {"seconds": 90000},
        {"bytes_down": 1.5},
        {"bytes_up": True},
        {"url": "http://example.org/"},  # nothing else may ride along
        {"kind": "browsing"},
    ],
)
def test_bad_records(change):
    with pytest.raises(wire.WireError):
        wire.validate_record({**USAGE, **change})


def test_health_sales_gateway_records():
    h = health_record(temp_c=None, uplink_ok=None, uplink_ms=None, backlog=0)
    assert wire.validate_record(h)["disk_pct"] == 91.0
    with pytest.raises(wire.WireError):
        wire.validate_record({**h, "uplink_ok": "yes"})
    s = sales_record(rev=7)
    assert wire.validate_record(s)["rupiah"] == 15000
    with pytest.raises(wire.WireError):
        wire.validate_record({**s, "month": "2026-13"})
    g = gateway_record()
    assert wire.validate_record(g)["village"] == "Desa Sungai Duren"
    with pytest.raises(wire.WireError):
        wire.validate_record({**g, "village": ""})


def test_headers_are_checked_for_shape():
    good = {
        wire.H_GATEWAY: "desa-uji",
        wire.H_TIMESTAMP: "1764300000",
        wire.H_NONCE: "ab" * 16,
        wire.H_IDEMPOTENCY: "cd" * 16,
        wire.H_SIGNATURE: "v1=" + "0" * 64,
    }
    assert wire.check_headers(good)[0] == "desa-uji"
    for name in good:
        with pytest.raises(wire.WireError, match=name):
            wire.check_headers({k: v for k, v in good.items() if k != name})
