"""bench.peers_dump: the portal peers' dump at two sizes in a namespace of its own, whole and
for one address, one JSON result with ratios; a bad argument is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.peers_dump", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_run_dumps_every_element_and_gives_ratios(tmp_path):
    out = tmp_path / "peers.json"
    done = run("--sizes", "0", "300", "--repeat", "10", "--output", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["elements"]) == {"0", "300"}
    assert result["elements"]["300"]["n"] == 10
    assert set(result["ratios_to_empty"]) == {"300"}
    # One address's elements (a login's check): the same dump, the others not decoded.
    assert result["elements_at"]["300"]["n"] == 10
    assert set(result["ratios_at_to_whole"]) == {"0", "300"}
    assert "load_average" in result["meta"]


def test_bad_arguments_are_one_line_and_exit_2(tmp_path):
    for args in (["--sizes", "-1"], ["--sizes", "70000"], ["--repeat", "1"]):
        done = run(*args, "--output", str(tmp_path / "x.json"))
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
