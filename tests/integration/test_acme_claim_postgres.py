"""The collector's ACME worker with two collectors on one real PostgreSQL (issue #15, item 4):
two app instances (each its own engine and connection pool, as two gunicorn workers or two
machines) polling at the same moment issue exactly one order per pending request.

The CA is a counting fake (tests/unit/sync/test_certs.py LocalCA, signing what the CSR asks
after a short pause so that the two workers overlap): what is under test is the claim —
the advisory lock and the conditional UPDATE — not ACME itself, which
tests/netns/certs/test_acme_certs.py runs against the real pebble and knot.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import Counter

import pytest
from cryptography import x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from collector import certs as collector_certs
from collector import config as collector_config
from collector.app import create_app
from collector.models import CertState, GatewayCertificate
from hotspot import certs as C
from hotspot.timeutil import utcnow
from tests.unit.collector.helpers import register
from tests.unit.sync.cert_helpers import ZONE
from tests.unit.sync.test_certs import LocalCA

pytestmark = pytest.mark.postgres

GATEWAYS = [f"desa-{i}" for i in range(8)]


class CountingCA(LocalCA):
    """Counts the orders per name; each takes a little while, as a real one does."""

    def __init__(self) -> None:
        super().__init__()
        self.orders: Counter[str] = Counter()
        self.lock = threading.Lock()

    def issue(self, csr_pem: bytes) -> str:
        name = C.dns_names(x509.load_pem_x509_csr(csr_pem))[0]
        with self.lock:
            self.orders[name] += 1
        time.sleep(0.05)
        with self.lock:
            return super().issue(csr_pem)


def collector(pg_url: str):
    cfg = collector_config.load(
        overrides={
            "collector": {"database_url": pg_url, "dashboard_public": True},
            "acme": {
                "directory_url": "https://acme.invalid/dir",
                "zone": ZONE,
                "dns_server": "127.0.0.1:53",
                "tsig_key_name": "k",
            },
        }
    )
    return create_app(cfg)


def request_all(engine) -> None:
    """A pending request per gateway, as POST /cert/v1/request leaves it."""
    now = utcnow()
    with Session(engine) as s, s.begin():
        for gid in GATEWAYS:
            name = f"{gid}.{ZONE}"
            checked = C.check_csr(C.make_csr(C.new_key(), name), name)
            s.add(
                GatewayCertificate(
                    gateway_id=gid,
                    name=name,
                    csr=checked.pem.decode(),
                    key_fingerprint=checked.fingerprint,
                    state=CertState.PENDING,
                    requested_at=now,
                    next_attempt_at=now,
                )
            )


def test_two_collectors_polling_at_once_order_each_certificate_once(pg_url):
    first = collector(pg_url)
    second = collector(pg_url)  # the schema is there: it opens, it does not migrate again
    try:
        engines = [a.extensions["collector_db"] for a in (first, second)]
        for gid in GATEWAYS:
            register(first, gid, f"secret-{gid}-" + "x" * 32)
        request_all(engines[0])
        ca = CountingCA()
        acme = first.config["COLLECTOR"].acme
        reports: list[dict] = []
        start = threading.Barrier(len(engines) * 2)

        def poll(engine) -> None:
            start.wait()
            for _ in range(40):  # a worker's polls, until nothing is left
                reports.append(collector_certs.issue_pending(engine, acme, ca.issue))
                with Session(engine) as s:
                    left = s.scalar(
                        select(GatewayCertificate.gateway_id).where(
                            GatewayCertificate.state != CertState.ISSUED
                        )
                    )
                if left is None:
                    return

        threads = [threading.Thread(target=poll, args=(e,)) for e in engines * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)

        assert ca.orders == Counter({f"{gid}.{ZONE}": 1 for gid in GATEWAYS}), ca.orders
        issued = [g for r in reports for g in r["issued"]]
        assert sorted(issued) == sorted(GATEWAYS)  # each once, whoever did it
        assert not [f for r in reports for f in r["failed"]]
        assert any(r["skipped"] == "another process is issuing" for r in reports)
        with Session(engines[1]) as s:
            rows = s.scalars(select(GatewayCertificate)).all()
            assert {r.state for r in rows} == {CertState.ISSUED}
            assert all(r.chain and r.claimed_at is None for r in rows)
    finally:
        for a in (first, second):
            a.extensions["collector_db"].dispose()


def test_the_conditional_claim_alone_gives_each_request_to_one_worker(pg_url):
    """Below the advisory lock (a worker whose lock connection was lost, a stale claim taken
    over): four engines claiming at the same instant never hold the same request twice."""
    first = collector(pg_url)
    engines = [first.extensions["collector_db"]] + [
        collector(pg_url).extensions["collector_db"] for _ in range(3)
    ]
    try:
        for gid in GATEWAYS:
            register(first, gid, f"secret-{gid}-" + "x" * 32)
        request_all(engines[0])
        claimed: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(len(engines))
        now = utcnow() + dt.timedelta(seconds=1)

        def grab(engine) -> None:
            start.wait()
            while (row := collector_certs._claim(engine, now)) is not None:
                with lock:
                    claimed.append(row.gateway_id)

        threads = [threading.Thread(target=grab, args=(e,)) for e in engines]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(claimed) == sorted(GATEWAYS), Counter(claimed)
    finally:
        for e in engines:
            e.dispose()
