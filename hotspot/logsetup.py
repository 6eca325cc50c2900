"""Logging set-up for entry points (the CLI, gunicorn's start-up); libraries only log."""

from __future__ import annotations

import logging
import sys

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Libraries' debug output (every netlink message) drowns ours.
_NOISY = ("alembic", "pyroute2", "scapy", "urllib3")


def setup_logging(level: str = "INFO") -> None:
    """Plain lines on stderr: journald adds the time and the unit; a terminal gets the time."""
    fmt = "%(levelname)s %(name)s: %(message)s"
    if sys.stderr.isatty():
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format=fmt, stream=sys.stderr
    )
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
