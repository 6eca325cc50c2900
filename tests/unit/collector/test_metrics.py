"""The collector's ``GET /metrics`` (collector/metrics.py): village gauges read from the
database, ingest counters where the ingest happens, the endpoint closed to everyone outside
``metrics_networks``; and the province's Grafana dashboard (docs/grafana-province.json)
naming only metrics that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector import config as collector_config
from collector.metrics import allowed
from gateway.metrics import GatewayMetrics
from hotspot.errors import ConfigError
from hotspot.timeutil import iso, local_day, utcnow
from tests.unit.collector.helpers import GATEWAY_ID, health_record, post, usage

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana-province.json"


def scrape(client, **environ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics", environ_base=environ)
    assert r.status_code == 200, r.status_code
    assert r.content_type.startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(r.get_data(as_text=True))
        for s in fam.samples
    }


def village(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"gateway": GATEWAY_ID, "village": GATEWAY_ID, **labels}.items()))


def counter(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_village_gauges_come_from_the_database(client):
    now = utcnow()
    hour = iso(now.replace(minute=0, second=0, microsecond=0))
    records = [
        usage(client="a" * 16, hour=hour, down=5000, up=500),
        usage(client="b" * 16, hour=hour, down=7000, up=700),
        health_record(sampled_at=iso(now.replace(microsecond=0)), clients_online=7),
        {
            "kind": "sales",
            # the collector's local month: on a month's last evening (WIB) UTC's is the old one
            "month": local_day(now, client.application.config["COLLECTOR"].tz).strftime("%Y-%m"),
            "package": "harian",
            "count": 4,
            "rupiah": 20000,
            "rev": 1,
        },
    ]
    assert post(client, records).status_code == 200
    m = scrape(client)
    assert m[village("hotspot_collector_village_last_report_age_seconds")] < 600
    assert m[village("hotspot_collector_village_online_devices")] == 7
    assert m[village("hotspot_collector_village_sales_month_rupiah")] == 20000
    assert m[village("hotspot_collector_village_sales_month_vouchers")] == 4
    assert m[village("hotspot_collector_village_enabled")] == 1
    assert m[("hotspot_collector_gateways", ())] == 1
    # the collector's local day (Asia/Jakarta) may be the next UTC day's: the hour's bytes
    # count on the day they fell in, whichever that is
    if m[village("hotspot_collector_village_devices_today")]:
        assert m[village("hotspot_collector_village_devices_today")] == 2
        assert m[village("hotspot_collector_village_bytes_today", direction="down")] == 12000


def test_ingest_is_counted_applied_duplicate_and_refused(client):
    before = scrape(client)
    body_records = [usage()]
    assert post(client, body_records, key="ab" * 16).status_code == 200
    assert post(client, body_records, key="ab" * 16).get_json()["duplicate"] is True
    assert post(client, body_records, hgateway="nobody").status_code == 401
    # a hostile gateway's request with no signature at all
    assert client.post("/ingest/v1/batch", data=b"x").status_code == 401
    after = scrape(client)

    def moved(name: str, **labels: str) -> float:
        return counter(after, name, **labels) - counter(before, name, **labels)

    assert moved("hotspot_collector_ingest_batches_total", result="applied") == 1
    assert moved("hotspot_collector_ingest_batches_total", result="duplicate") == 1
    assert moved("hotspot_collector_ingest_records_total", kind="usage") == 1
    assert moved("hotspot_collector_ingest_refusals_total", code="bad-signature") == 1
    assert moved("hotspot_collector_ingest_refusals_total", code="unsigned") == 1
    assert moved("hotspot_collector_ingest_seconds_count") == 4


@pytest.mark.parametrize("remote", ["10.20.0.5", "203.0.113.9", "2001:db8::1", "not-an-address"])
def test_metrics_are_not_shown_outside_metrics_networks(client, remote):
    r = client.get("/metrics", environ_base={"REMOTE_ADDR": remote})
    assert r.status_code == 404
    assert b"hotspot_collector" not in r.get_data()


def test_metrics_networks_and_switch(ccfg, app):
    cfg = collector_config.load(
        overrides={"collector": {"metrics_networks": ["10.20.0.0/16"], "metrics": True}}
    )
    assert allowed("10.20.3.4", cfg) and allowed("::ffff:10.20.3.4", cfg)
    assert not allowed("127.0.0.1", cfg) and not allowed(None, cfg)
    app.config["COLLECTOR"] = collector_config.load(
        overrides={"collector": {"database_url": ccfg.database_url, "metrics": False}}
    )
    assert app.test_client().get("/metrics").status_code == 404


@pytest.mark.parametrize(
    "key, value",
    [("metrics", "yes"), ("metrics_networks", "127.0.0.0/8"), ("metrics_networks", ["nope"])],
)
def test_bad_metrics_keys_are_named(key, value):
    with pytest.raises(ConfigError) as err:
        collector_config.load(overrides={"collector": {key: value}})
    assert err.value.key.startswith(f"collector.{key}")


# -- the province's Grafana dashboard ---------------------------------------------------------


def exported_names(client) -> set[str]:
    """Every sample name the collector and a gateway expose (with _total, _bucket, …)."""
    names = {name for name, _ in scrape(client)}
    engine = SimpleNamespace(
        live={1: SimpleNamespace(tier="free")},
        charged_bytes=[1, 1],
        kernel_sizes={"authorized": 1},
    )
    gw = GatewayMetrics(engine, ["free"], "Desa", uplink=lambda: {"state": "up", "cause": None})
    gw.request("authorize", 0.01, None, "voucher", True)
    gw.request("authorize", 0.01, "blocked")
    gw.tick(0.01, {"kernel_read": 0.001})
    text = gw.exposition().decode()
    names |= {s.name for fam in text_string_to_metric_families(text) for s in fam.samples}
    return names


def dashboard_exprs() -> list[str]:
    data = json.loads(DASHBOARD.read_text())
    exprs = []
    for panel in data["panels"]:
        for target in panel.get("targets", ()):
            exprs.append(target["expr"])
    return exprs


def test_every_dashboard_expr_names_an_exported_metric(client):
    post(client, [usage(), health_record()])
    names = exported_names(client)
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    for expr in exprs:
        used = set(re.findall(r"\bhotspot_[a-z_]+\b", expr))
        assert used, f"no hotspot metric in {expr!r}"
        assert used <= names, f"{expr!r} names {sorted(used - names)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus)")
def test_every_dashboard_expr_is_valid_promql(tmp_path):
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"check:expr{i}", "expr": e.replace("$offline_minutes", "30")}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    done = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_clock_stepped_back_gives_no_negative_age(client, cdb):
    """The collector's clock stepped back an hour after a report (NTP correcting it): the
    age reads 0, never negative (an alert on 'age > N' stays quiet, a graph stays sane)."""
    import datetime as dt

    from sqlalchemy import update
    from sqlalchemy.orm import Session

    from collector.models import Gateway

    later = utcnow() + dt.timedelta(hours=1)
    with Session(cdb) as s, s.begin():
        s.execute(update(Gateway).values(last_seen_at=later, last_health_at=later))
    m = scrape(client)
    assert m[village("hotspot_collector_village_last_report_age_seconds")] == 0
    assert m[village("hotspot_collector_village_last_health_age_seconds")] == 0
