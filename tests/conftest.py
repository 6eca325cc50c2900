"""Shared fixtures: the test tiers are unit (no root), netns (root), browser and bench."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ARTIFACTS = Path(
    os.environ.get("HOTSPOT_ARTIFACTS", Path(__file__).resolve().parent.parent / "artifacts")
)


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def artifacts(request) -> Path:
    """A folder for what a person should look at after the run (screenshots, logs)."""
    path = ARTIFACTS / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path
