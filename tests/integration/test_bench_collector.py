"""``python3 -m bench.collector --quick`` runs end to end (its own PostgreSQL and collector):
every batch of the concurrent posts applied exactly once, every page and query answered
200, the results written as JSON with the machine and its load. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.postgres


def test_bench_collector_quick(tmp_path):
    out = tmp_path / "collector.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.collector", "--quick", "--output", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    ingest = report["ingest"]
    assert ingest["errors"] == 0 and ingest["duplicates"] == 0
    assert ingest["verified"]["complete"], ingest["verified"]
    assert report["ingest_retry_same_keys"]["outcomes"] == {
        "duplicate": report["ingest_retry_same_keys"]["batches"]
    }
    assert report["ingest_retry_same_keys"]["still_applied_once"]
    assert report["queries"].keys() == report["baseline_queries"].keys()
    assert {q["status"] for q in report["queries"].values()} == {200}
    assert report["csv_month_one_village_all_pages"]["rows"] > 0
    assert report["loaded"]["rows"]["usage_hourly"] > 0
    meta = report["meta"]
    assert meta["machine"]["nproc"] and len(meta["loadavg_at_start"]) == 3
