"""bench.plan: the reconcile's pure plan against a baseline tree in the same run (here the
same checkout as its own baseline), one JSON result; a bad argument is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.plan", *args], cwd=REPO, capture_output=True, text=True
    )


def test_a_run_against_a_baseline_tree_gives_ratios(tmp_path):
    out = tmp_path / "plan.json"
    done = run("--sessions", "10", "--repeat", "2", "--tree", str(REPO), "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["this_tree"]["10"]["unchanged"]["summary"].startswith("+0/-0 clients")
    changed = result["baseline"]["10"]["one_change_of_each_kind"]["summary"]
    assert changed.startswith("+1/-1 clients, +1/-0 blocked")
    assert set(result["ratios"]) == {
        f"10/{case}/{p}"
        for case in ("unchanged", "one_change_of_each_kind")
        for p in ("p50_ms", "p99_ms")
    }
    assert "load_average" in result["meta"]


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    for args in (["--sessions", "0"], ["--sessions", "20000"], ["--repeat", "0"]):
        done = run(*args, "--output", str(tmp_path / "x.json"))
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = run("--tree", str(tmp_path), "--output", str(tmp_path / "x.json"))
    assert done.returncode == 2 and "no gateway/reconcile.py" in done.stderr
