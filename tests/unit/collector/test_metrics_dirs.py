"""The collector's metrics directories: one per instance in /tmp (prometheus_client's
multiprocess files), removed at a clean exit; those of killed instances go at the next start
(tests kill collectors with SIGKILL: 81 of them had piled up in this machine's /tmp)."""

from __future__ import annotations

import os
import subprocess
import sys

from collector.server import METRICS_DIR_PREFIX, _remove_dead_instances_dirs


def test_only_the_directories_of_dead_instances_are_removed(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(gone.stdout)
    dead = tmp_path / f"{METRICS_DIR_PREFIX}{dead_pid}-abc123"
    alive = tmp_path / f"{METRICS_DIR_PREFIX}{os.getpid()}-def456"
    older = tmp_path / f"{METRICS_DIR_PREFIX}k2j_x9q1"  # before the pid was in the name
    other = tmp_path / "something-else-1-x"
    for d in (dead, alive, older, other):
        d.mkdir()
        (d / "counter_1.db").write_bytes(b"x")
    _remove_dead_instances_dirs(tmp_path)
    assert not dead.exists()
    assert alive.exists() and older.exists() and other.exists()


def test_a_planted_symlink_is_never_followed(tmp_path):
    """Another user of a shared /tmp plants a dead instance's name pointing elsewhere: the
    directory it points at, and what it holds, stay."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_bytes(b"x")
    (tmp_path / f"{METRICS_DIR_PREFIX}{int(gone.stdout)}-planted").symlink_to(victim)
    _remove_dead_instances_dirs(tmp_path)
    assert (victim / "precious").exists()
