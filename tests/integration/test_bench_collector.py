"""``python3 -m bench.collector --quick`` runs end to end (its own PostgreSQL and collector):
every batch of the concurrent posts applied exactly once, every page and query answered
200, the results written as JSON with the machine and its load. No timing is asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.postgres


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.collector", "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_bench_collector_quick(tmp_path):
    """Also --keep: the loaded cluster is left, and --reuse runs the queries on it again
    (no load, a fresh empty database for the baseline)."""
    out = tmp_path / "collector.json"
    # the kept cluster's folder: reachable by the postgres user the server runs as (root's
    # pytest tmp_path is not)
    kept = Path(tempfile.mkdtemp(prefix="hotspot-bench-kept-"))
    kept.chmod(0o755)
    try:
        _quick_keep_then_reuse(tmp_path, out, kept)
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def _quick_keep_then_reuse(tmp_path: Path, out: Path, kept: Path) -> None:
    done = bench("--output", str(out), "--keep", str(kept))
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
    assert report["loaded"]["schema_check"]["same_as_migrated"]
    assert "wal_level=minimal" in report["loaded"]["cluster_settings"]
    assert "wal_level=minimal" not in report["meta"]["cluster_settings"]
    # a day's usage reads the monthly partitions of its hours only (UTC: the local day's
    # first 7 hours are the day before), never the DEFAULT one
    day = report["plans"]["api_usage_day"]
    months = {"usage_hourly_p" + day[k][:7].replace("-", "") for k in ("lo", "hi")}
    assert set(day["partitions"]) <= months and day["rows"] > 0
    assert all(
        not p.endswith("_default") for q in report["plans"].values() for p in q["partitions"]
    )
    meta = report["meta"]
    assert meta["machine"]["nproc"] and len(meta["loadavg_at_start"]) == 3
    again = tmp_path / "again.json"
    done = bench("--reuse", str(kept), "--skip-ingest", "--reps", "1", "--output", str(again))
    assert done.returncode == 0, done.stderr[-3000:]
    reused = json.loads(again.read_text())
    assert "ingest" not in reused and "loading" not in done.stderr
    assert reused["meta"]["reused"]["dir"] == str(kept)
    assert reused["loaded"]["rows"] == report["loaded"]["rows"]
    assert {q["status"] for q in reused["queries"].values()} == {200}
    assert (
        reused["queries"]["api_usage_month_csv"]["bytes"]
        == (report["queries"]["api_usage_month_csv"]["bytes"])
    )


@pytest.mark.parametrize(
    "args",
    [["--keep", "{d}", "--reuse", "{d}"], ["--reuse", "{d}"], ["--tree", "{d}"]],
)
def test_bench_collector_refuses_bad_folders_with_one_line(tmp_path, args):
    done = bench(*[a.format(d=tmp_path) for a in args])
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_bench_collector_reuses_only_a_finished_load(tmp_path):
    """A --keep folder whose load was cut short is continued by --keep, not measured by
    --reuse (its tables are half there)."""
    (tmp_path / "bench-collector.json").write_text('{"status": "loading"}')
    done = bench("--reuse", str(tmp_path))
    assert done.returncode == 2 and "no finished load" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
