"""Integration tests: a real PostgreSQL (started here, on a private Unix socket) and, as root,
the real gateway and collector in network namespaces.

The server is testsupport.postgres's (shared with bench.collector): binaries from
/usr/lib/postgresql/<version>/bin or PATH; as root it runs as the ``postgres`` user. It
listens on a Unix socket only (no TCP port at all), which processes in other network namespaces reach through the
file system — the collector in its namespace included. Without the binaries (or, as root,
without that user) these tests are skipped, saying why.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from testsupport.postgres import pg_skip_reason, running_postgres

ROOT = Path(__file__).resolve().parents[2]
NETNS_TOOLS = ("ip", "nft", "tc", "curl")


def netns_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root: network namespaces, nftables and tc"
    missing = [t for t in NETNS_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)} (run .ci/run)"
    return None


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here not in Path(item.fspath).parents:
            continue
        if "netns" in item.keywords:
            reason = netns_skip_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
                continue
            item.add_marker(pytest.mark.root)
        if "postgres" in item.keywords:
            reason = pg_skip_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: needs PostgreSQL server binaries")
    config.addinivalue_line("markers", "netns: needs root and network namespaces")


@pytest.fixture(scope="session")
def postgres():
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    with running_postgres() as pg:
        yield pg


@pytest.fixture
def pg_url(postgres):
    name = postgres.create_db()
    yield postgres.url(name)
    postgres.drop_db(name)


def hotspot_cmd(config: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-m", "hotspot_cli", "--config", str(config), *args]
