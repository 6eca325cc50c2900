"""Metrics, scraped by a real Prometheus (Debian's ``prometheus``): the gateway's listener on
its uplink address (the province's side; the port opened in ``wan_tcp_ports``) and the
collector's ``/metrics`` under gunicorn with two workers, both scraped every second by a
Prometheus in the "internet" namespace, which then answers PromQL over its HTTP API.

The abuse case: villagers' phones — one logged in, one walled — try the metrics port on every
address of the gateway and get nothing (the LAN's input chain drops it; the listener is not
on the LAN address at all)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.netns.helpers import GW_LAN_IP, WAN_GW_IP, authorize, run_many, wait_until
from tests.unit.collector.helpers import body_of, health_record, signed_headers
from testsupport.testbed import write_toml

METRICS_PORT = 9105
COLLECTOR_PORT = 8000  # on the "internet" namespace's own loopback
PROMETHEUS_PORT = 9090
GATEWAY_ID = "desa-metrik"

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus missing (apt-get install prometheus)"
)


@pytest.mark.parametrize("testbed", [3], indirect=True)
def test_prometheus_scrapes_gateway_and_collector_and_phones_cannot(
    testbed, upstream, gateway_factory, tmp_path
):
    bed = testbed
    gw = gateway_factory(
        {
            "gateway": {"metrics_listen": f"{WAN_GW_IP}:{METRICS_PORT}"},
            "network": {"wan_tcp_ports": [METRICS_PORT]},
        }
    )
    in_phone, in_phone2, walled = bed.phones
    authorize(gw, in_phone, "premium")
    authorize(gw, in_phone2, "free")

    # The collector, as the province runs it: gunicorn, two workers (multiprocess counters).
    ccfg = write_toml(
        tmp_path / "collector.toml",
        {
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "bind": f"127.0.0.1:{COLLECTOR_PORT}",
                "workers": 2,
                "threads": 2,
            }
        },
    )
    hotspot = [sys.executable, "-m", "hotspot_cli", "--config", str(ccfg), "collector"]
    reg = subprocess.run(
        [*hotspot, "gateways", "add", GATEWAY_ID, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reg.returncode == 0, reg.stderr
    secret = json.loads(reg.stdout)["secret"]
    bed.popen(bed.up, *hotspot, "run", log_path=tmp_path / "collector.log")
    bed.wait_port(bed.up, "127.0.0.1", COLLECTOR_PORT, timeout=60)

    # One signed report of the village (as the agent sends it), through curl in the province.
    body, key = body_of([health_record(clients_online=2)], gateway=GATEWAY_ID)
    headers = signed_headers(body, key, gateway=GATEWAY_ID, secret=secret)
    (tmp_path / "batch.gz").write_bytes(body)
    posted = bed.run(
        bed.up,
        "curl",
        "-s",
        "-m",
        "20",
        *[a for k, v in headers.items() for a in ("-H", f"{k}: {v}")],
        "--data-binary",
        f"@{tmp_path / 'batch.gz'}",
        f"http://127.0.0.1:{COLLECTOR_PORT}/ingest/v1/batch",
    )
    assert json.loads(posted.stdout)["ok"] is True, posted.stdout

    # Prometheus in the province's namespace, scraping both every second.
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    prom_cfg = prom_dir / "prometheus.yml"
    prom_cfg.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "gateway",
                        "static_configs": [{"targets": [f"{WAN_GW_IP}:{METRICS_PORT}"]}],
                    },
                    {
                        "job_name": "collector",
                        "static_configs": [{"targets": [f"127.0.0.1:{COLLECTOR_PORT}"]}],
                    },
                ],
            }
        )
    )
    bed.popen(
        bed.up,
        "prometheus",
        f"--config.file={prom_cfg}",
        f"--storage.tsdb.path={prom_dir / 'data'}",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        log_path=tmp_path / "prometheus.log",
    )
    bed.wait_port(bed.up, "127.0.0.1", PROMETHEUS_PORT, timeout=60)

    def query(promql: str) -> list[dict]:
        url = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        out = bed.run(bed.up, "curl", "-s", "-m", "5", url, check=False).stdout
        try:
            reply = json.loads(out)
        except ValueError:
            return []
        return reply["data"]["result"] if reply.get("status") == "success" else []

    def scalar(promql: str) -> float | None:
        result = query(promql)
        return float(result[0]["value"][1]) if result else None

    try:
        # Both targets up, then the PromQL answers: the sessions gauge is the phones let out.
        wait_until(
            lambda: scalar('count(up{job=~"gateway|collector"} == 1)') == 2,
            60,
            interval=0.5,
            what="both targets up",
        )
        assert wait_until(
            lambda: scalar("sum(hotspot_gateway_sessions)") == 2, 30, 0.5, "sessions == 2"
        )
        assert scalar('hotspot_gateway_sessions{tier="premium"}') == 1
        assert scalar('hotspot_gateway_logins_total{source="admin"}') == 2
        assert scalar('hotspot_gateway_kernel_elements{set="authorized"}') == 2
        age = wait_until(
            lambda: scalar(
                f'hotspot_collector_village_last_report_age_seconds{{gateway="{GATEWAY_ID}"}}'
            ),
            30,
            0.5,
            "the village's last report age",
        )
        assert 0 <= age < 300
        assert scalar(f'hotspot_collector_village_online_devices{{gateway="{GATEWAY_ID}"}}') == 2
        # the batch was counted by whichever worker took it, and every worker's scrape says so
        assert scalar('sum(hotspot_collector_ingest_batches_total{result="applied"})') == 1

        # Hostile villagers: the metrics port on every address of the gateway, from a phone
        # that is logged in and one that is not. Nothing answers.
        urls = [f"http://{addr}:{METRICS_PORT}/metrics" for addr in (WAN_GW_IP, GW_LAN_IP)]
        tries = run_many(
            bed,
            [
                (phone.ns, ["curl", "-s", "-m", "2", url])
                for phone in (in_phone, walled)
                for url in urls
            ],
            timeout=10,
        )
        for done in tries:
            assert done.returncode != 0 and "hotspot_" not in done.stdout, done.args
        # … while the province still scrapes it
        assert (
            "hotspot_gateway_sessions" in bed.run(bed.up, "curl", "-s", "-m", "5", urls[0]).stdout
        )
    except AssertionError:
        for log in ("prometheus.log", "collector.log"):
            print(log, Path(tmp_path / log).read_text()[-3000:])
        raise
