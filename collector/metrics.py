"""``GET /metrics``: the collector's Prometheus metrics (issue #14 item 5).

Two kinds, each correct however many gunicorn workers and collector instances serve:

* **What the villages reported** (last report age, devices online and today, bytes today,
  the month's sales) is read from the database at scrape time. Every worker of every
  instance answers the same figures from the same rows, so nothing is double counted and
  nothing is lost when a worker restarts; the queries are a handful of grouped reads over
  indexed columns (one row per village).
* **What this instance did** (batches applied or acknowledged as duplicates, records, refusals
  by code, ingest time) are counters kept where the ingest happens. Under gunicorn they use
  prometheus_client's multiprocess mode: each worker writes its own memory-mapped file in a
  directory the master made (``collector/server.py`` sets ``PROMETHEUS_MULTIPROC_DIR``
  before anything imports prometheus_client), and a scrape, whichever worker answers it,
  sums the files. Two instances have two directories and two scrape targets: Prometheus's
  ``sum`` over ``instance`` adds them up.

The endpoint answers only addresses in ``[collector] metrics_networks`` (loopback by
default); anyone else gets the same 404 as an unknown page. Behind a reverse proxy every
request comes from the proxy's address: the proxy must not pass ``/metrics`` on
(docs/sync-and-collector.md has the nginx lines).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.config import CollectorConfig
from collector.models import Gateway, HealthSample, SalesMonthly, UsageDaily
from hotspot import wire
from hotspot.timeutil import local_day, utcnow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

bp = Blueprint("metrics", __name__)
disable_created_metrics()  # the _created series double the lines and say nothing here

# This process's counters. In multiprocess mode their values live in the directory's files
# and the registry below is only where they are declared.
INGEST = CollectorRegistry(auto_describe=False)
BATCHES = Counter(
    "hotspot_collector_ingest_batches",
    "Batches answered 200 by this collector instance: applied, or a duplicate acknowledged",
    ["result"],
    registry=INGEST,
)
RECORDS = Counter(
    "hotspot_collector_ingest_records",
    "Records in the batches this instance applied, by kind",
    ["kind"],
    registry=INGEST,
)
REFUSALS = Counter(
    "hotspot_collector_ingest_refusals",
    "Ingest requests this instance refused, by error code (collector/ingest.py's table)",
    ["code"],
    registry=INGEST,
)
INGEST_SECONDS = Histogram(
    "hotspot_collector_ingest_seconds",
    "Time from a batch's arrival to its answer (checks, inflating, applying)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=INGEST,
)
RESULTS = ("applied", "duplicate")
# The codes collector/ingest.py answers with: the label's values stay this closed set.
REFUSAL_CODES = (
    "length-required",
    "too-large",
    "unsigned",
    "stale",
    "bad-signature",
    "disabled",
    "bad-body",
    "replay",
    "busy",
)
RECORD_KINDS = wire.KINDS


def batch_done(result: str, records: dict[str, int] | None, seconds: float) -> None:
    BATCHES.labels(result=result).inc()
    for kind, n in (records or {}).items():
        if kind in RECORD_KINDS:
            RECORDS.labels(kind=kind).inc(n)
    INGEST_SECONDS.observe(seconds)


def refused(code: str, seconds: float) -> None:
    REFUSALS.labels(code=code if code in REFUSAL_CODES else "other").inc()
    INGEST_SECONDS.observe(seconds)


for _result in RESULTS:  # every series present from the first scrape, at zero
    BATCHES.labels(result=_result)
for _code in REFUSAL_CODES:
    REFUSALS.labels(code=_code)
for _kind in RECORD_KINDS:
    RECORDS.labels(kind=_kind)


class VillageCollector:
    """Per-village gauges, read from the database at scrape time."""

    def __init__(self, engine: Any, cfg: CollectorConfig):
        self.engine = engine
        self.cfg = cfg

    def collect(self) -> Iterator[GaugeMetricFamily]:
        started = time.perf_counter()
        now = utcnow()
        today = local_day(now, self.cfg.tz)
        month = today.strftime("%Y-%m")
        H, D, S = HealthSample, UsageDaily, SalesMonthly
        with Session(self.engine) as s:
            gateways = s.execute(
                select(
                    Gateway.id,
                    Gateway.village,
                    Gateway.created_at,
                    Gateway.last_seen_at,
                    Gateway.last_health_at,
                    Gateway.disabled,
                ).order_by(Gateway.id)
            ).all()
            online = dict(
                s.execute(
                    select(H.gateway_id, H.clients_online).join(
                        Gateway,
                        (Gateway.id == H.gateway_id) & (Gateway.last_health_at == H.sampled_at),
                    )
                ).all()
            )
            usage = {
                gid: (devices, down, up)
                for gid, devices, down, up in s.execute(
                    select(
                        D.gateway_id,
                        func.count(),
                        func.coalesce(func.sum(D.bytes_down), 0),
                        func.coalesce(func.sum(D.bytes_up), 0),
                    )
                    .where(D.day == today)
                    .group_by(D.gateway_id)
                )
            }
            sales = {
                gid: (count, rupiah)
                for gid, count, rupiah in s.execute(
                    select(
                        S.gateway_id,
                        func.coalesce(func.sum(S.count), 0),
                        func.coalesce(func.sum(S.rupiah), 0),
                    )
                    .where(S.month == month)
                    .group_by(S.gateway_id)
                )
            }
        labels = ["gateway", "village"]

        def family(name: str, doc: str, extra: list[str] | None = None) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=labels + (extra or []))

        age = family(
            "hotspot_collector_village_last_report_age_seconds",
            "Seconds since the gateway's last accepted request (since its registration if it "
            "never reported)",
        )
        health_age = family(
            "hotspot_collector_village_last_health_age_seconds",
            "Seconds since the newest health sample's time (absent before the first)",
        )
        devices_online = family(
            "hotspot_collector_village_online_devices",
            "Devices online in the gateway's newest health sample",
        )
        devices_today = family(
            "hotspot_collector_village_devices_today",
            "Distinct devices (pseudonyms) with usage on the collector's local day",
        )
        bytes_today = family(
            "hotspot_collector_village_bytes_today",
            "Bytes of the collector's local day, by direction",
            ["direction"],
        )
        sold = family(
            "hotspot_collector_village_sales_month_vouchers",
            "Vouchers sold in the collector's local month, as last reported",
        )
        rupiah = family(
            "hotspot_collector_village_sales_month_rupiah",
            "Rupiah of the vouchers sold in the collector's local month, as last reported",
        )
        enabled = family(
            "hotspot_collector_village_enabled", "1 for a gateway allowed to report, 0 disabled"
        )
        for gid, village, created, seen, health, disabled in gateways:
            lv = [gid, village or gid]
            age.add_metric(lv, _seconds(now - (seen or created)))
            if health is not None:
                health_age.add_metric(lv, _seconds(now - health))
            if gid in online:
                devices_online.add_metric(lv, online[gid])
            n, down, up = usage.get(gid, (0, 0, 0))
            devices_today.add_metric(lv, n)
            bytes_today.add_metric([*lv, "down"], down)
            bytes_today.add_metric([*lv, "up"], up)
            count, rp = sales.get(gid, (0, 0))
            sold.add_metric(lv, count)
            rupiah.add_metric(lv, rp)
            enabled.add_metric(lv, 0 if disabled else 1)
        yield from (
            age,
            health_age,
            devices_online,
            devices_today,
            bytes_today,
            sold,
            rupiah,
            enabled,
        )
        registered = GaugeMetricFamily(
            "hotspot_collector_gateways", "Gateways registered at the collector"
        )
        registered.add_metric([], len(gateways))
        yield registered
        took = GaugeMetricFamily(
            "hotspot_collector_metrics_query_seconds",
            "Time the database reads of this scrape took",
        )
        took.add_metric([], time.perf_counter() - started)
        yield took

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # collected fresh at every scrape; nothing to check at registration


def _seconds(delta: dt.timedelta) -> float:
    return max(0.0, delta.total_seconds())


def allowed(remote: str | None, cfg: CollectorConfig) -> bool:
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in net for net in cfg.metrics_network_list)


@bp.get("/metrics")
def metrics() -> Response:
    cfg: CollectorConfig = current_app.config["COLLECTOR"]
    if not cfg.metrics or not allowed(request.remote_addr, cfg):
        abort(404)
    registry = CollectorRegistry(auto_describe=False)
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=path)
    else:
        for family_collector in (BATCHES, RECORDS, REFUSALS, INGEST_SECONDS):
            registry.register(family_collector)
    registry.register(VillageCollector(current_app.extensions["collector_db"], cfg))
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
