"""The certificate a gateway has installed, in its health report (issue #15, item 4): optional
wire fields ``cert_name`` / ``cert_not_after`` (an older gateway's batch without them still
ingests), stored on the gateway (c0008), and the village page shows it beside the one the
collector issued: a mismatch or an installed certificate near its end is visible."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector.models import CertState, GatewayCertificate, HealthSample
from hotspot import certs, wire
from sync.health import installed_certificate
from tests.unit.collector.helpers import GATEWAY_ID, health_record, post
from tests.unit.sync.cert_helpers import ZONE, gateway_config
from tests.unit.sync.test_certs import LocalCA

NAME = f"{GATEWAY_ID}.wifi.jambi.test"


def installed(cdb) -> list[tuple]:
    with Session(cdb) as s:
        return list(
            s.execute(
                select(HealthSample.cert_name, HealthSample.cert_not_after).order_by(
                    HealthSample.sampled_at
                )
            )
        )


def test_old_and_new_health_records_ingest_and_the_newest_says_what_is_installed(client, cdb):
    old = health_record(sampled_at="2026-11-28T03:00:05Z")
    new = health_record(
        sampled_at="2026-11-28T03:05:05Z",
        cert_name=NAME,
        cert_not_after="2027-02-26T10:00:00Z",
    )
    r = post(client, [old, new])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert installed(cdb) == [(None, None), (NAME, dt.datetime(2027, 2, 26, 10, 0))]


@pytest.mark.parametrize(
    "changes",
    [
        {"cert_name": "<script>.example"},
        {"cert_name": "x" * 300},
        {"cert_name": 7},
        {"cert_not_after": "next tuesday"},
    ],
)
def test_a_malformed_certificate_field_is_refused(changes):
    with pytest.raises(wire.WireError):
        wire.validate_record(health_record(**changes))


def test_the_village_page_shows_installed_beside_issued(client, app, cdb):
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    issued_until = now + dt.timedelta(days=60)
    with Session(cdb) as s, s.begin():
        s.add(
            GatewayCertificate(
                gateway_id=GATEWAY_ID,
                name=NAME,
                csr="-",
                key_fingerprint="0" * 64,
                state=CertState.ISSUED,
                requested_at=now,
                next_attempt_at=now,
                not_after=issued_until,
            )
        )
    # the gateway still runs an older certificate that ends in three days
    soon = (now + dt.timedelta(days=3)).isoformat() + "Z"
    sampled = (now - dt.timedelta(minutes=2)).isoformat() + "Z"
    r = post(client, [health_record(sampled_at=sampled, cert_name=NAME, cert_not_after=soon)])
    assert r.status_code == 200, r.get_data(as_text=True)
    html = client.get(f"/village/{GATEWAY_ID}?lang=en").get_data(as_text=True)
    assert "Installed on the gateway" in html
    assert "differs from the one issued" in html and "expires soon" in html
    # once the issued one is installed: no warning
    later = (now - dt.timedelta(minutes=1)).isoformat() + "Z"
    until = issued_until.isoformat() + "Z"
    r = post(client, [health_record(sampled_at=later, cert_name=NAME, cert_not_after=until)])
    assert r.status_code == 200, r.get_data(as_text=True)
    html = client.get(f"/village/{GATEWAY_ID}?lang=en").get_data(as_text=True)
    assert "differs from the one issued" not in html and "expires soon" not in html
    html = client.get(f"/village/{GATEWAY_ID}?lang=id").get_data(as_text=True)
    assert "Terpasang di gateway" in html


def test_the_agent_sends_the_installed_pair_only_with_one(tmp_path):
    cfg = gateway_config(tmp_path, "desa-a", "a-secret-" + "a" * 40)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert installed_certificate(cfg, now) == {}  # none: the keys are left out
    key = certs.new_key()
    name = f"desa-a.{ZONE}"
    chain = certs.check_chain(LocalCA().issue(certs.make_csr(key, name)).encode(), key, name, now)
    certs.install(Path(cfg.sync.cert_dir), certs.key_pem(key), chain)
    got = installed_certificate(cfg, now)
    assert got == {"cert_name": name, "cert_not_after": chain.not_after.replace(microsecond=0)}
    # as the outbox sends it
    rec = wire.validate_record(json.loads(wire.dump_record(health_record(**got))))
    assert rec["cert_name"] == name
