"""Running the ``hotspot`` command in tests: as a process, or in this process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from hotspot_cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def hotspot_process(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hotspot --config FILE ARGS`` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "hotspot_cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def hotspot_in_process(capsys: Any, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hotspot --config FILE ARGS`` in this process: (returncode, stdout, stderr)."""
    try:
        rc = cli.main(["--config", str(config), *args])
    except SystemExit as exc:
        rc = exc.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out, err)
