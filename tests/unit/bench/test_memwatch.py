"""The soak's memory instruments (issue #11, item 6): ``bench.memwatch --native`` and the
units' environment the soak starts the daemons with.

The soak's RSS figures are only the device's if its processes run as the units run them:
without the units' ``MALLOC_ARENA_MAX=2`` the gateway had 16 malloc arenas, each keeping
about 3 MB of a control thread's freed memory (docs/reliability.md, "A week in minutes").
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from bench.memwatch import obmalloc, smaps_groups
from bench.soak import UNIT_OF, environment_of, unit_environment, units_environment

REPO = Path(__file__).resolve().parents[3]

DAEMON = """
import sqlite3, threading, time
db = sqlite3.connect(":memory:", check_same_thread=False)
db.execute("CREATE TABLE t (x)")
db.executemany("INSERT INTO t VALUES (?)", [(str(i) * 20,) for i in range(5000)])
done = threading.Event()
threading.Thread(target=done.wait, name="worker-1", daemon=True).start()
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not done.is_set():
    time.sleep(0.05)
"""


def test_native_watch_reads_the_allocator_sqlite_and_mappings_of_the_daemon(tmp_path):
    (tmp_path / "daemon_under_watch.py").write_text(DAEMON)
    out = tmp_path / "native.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.memwatch", str(out), "0.1", "--native", "--"]
        + ["-m", "daemon_under_watch"],
        cwd=REPO,
        env={"PYTHONPATH": f"{REPO}:{tmp_path}", "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE,
    )
    snap: dict[str, object] = {}
    try:  # the first snapshot taken once the daemon has its table and its thread
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not snap:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            lines = out.read_text().splitlines() if out.exists() else []
            snap = next((s for s in map(json.loads, lines) if "worker" in s.get("threads", {})), {})
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()
    assert snap, out.read_text() if out.exists() else "no snapshot"
    assert "error" not in snap, snap
    assert snap["mallinfo"]["arena_kb"] > 0
    assert (
        snap["mallinfo"]["in_use_kb"] + snap["mallinfo"]["free_kb"]
        <= snap["mallinfo"]["arena_kb"] + snap["mallinfo"]["mmap_kb"] + 1
    )
    assert snap["arenas"] and snap["arenas"][0]["nr"] == 0
    assert snap["sqlite_connections"] == 1
    assert snap["sqlite"]["memory_used_kb"] > 0  # the table's pages in SQLite's cache
    assert snap["obmalloc"]["arenas"] >= 1
    assert snap["obmalloc"]["allocated_bytes"] > 0
    assert snap["threads"]["worker"] == 1  # names without their numbers
    assert snap["smaps"]["[heap]"]["rss_kb"] > 0


def test_obmalloc_leaves_standard_error_as_it_was(capfd):
    stats = obmalloc()
    print("after", file=sys.stderr)
    err = capfd.readouterr().err
    assert stats["arenas"] >= 1 and stats["arenas_highwater"] >= stats["arenas"]
    assert err == "after\n"  # the statistics went to their file, not to the daemon's log


def test_smaps_groups_names_the_heap_the_anonymous_maps_and_files():
    groups = smaps_groups()
    assert groups["[heap]"]["rss_kb"] > 0 or groups["anon"]["rss_kb"] > 0
    assert any(name.startswith("libc") for name in groups)
    assert all(not name.startswith("/") for name in groups)


def test_the_soak_starts_the_daemons_with_the_environment_of_their_units():
    env = units_environment()
    # The units `hotspot provision` installs; the checked-in examples say the same.
    # Not PYTHONMALLOC=malloc: tried in a 90-minute soak, it grew as fast and cost CPU
    # (docs/reliability.md, "A week in minutes").
    assert env["gateway"] == {"MALLOC_ARENA_MAX": "2"}
    assert env["portal"] == {"MALLOC_ARENA_MAX": "2"}
    for name, unit in UNIT_OF.items():
        assert unit_environment(REPO / "systemd" / f"{unit}.service") == env[name], name


def test_unit_environment_skips_what_is_not_an_assignment(tmp_path):
    unit = tmp_path / "x.service"
    unit.write_text(
        "[Service]\n"
        'Environment="A=1" B=two\n'
        "Environment=NOVALUE\n"
        "Environment=SITE={{ site }}\n"
        "#Environment=C=3\n"
        "ExecStart=/bin/true A=4\n"
    )
    assert unit_environment(unit) == {"A": "1", "B": "two"}
    assert unit_environment(tmp_path / "missing.service") == {}


def test_environment_of_a_process_that_is_gone_is_unknown():
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_out())
    pid = int(dead.stdout)
    assert environment_of(pid, {"MALLOC_ARENA_MAX": "2"}) == {"MALLOC_ARENA_MAX": None}


def _out() -> dict[str, object]:
    return {"capture_output": True, "text": True, "check": True}
