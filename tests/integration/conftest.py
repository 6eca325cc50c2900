"""Integration tests: a real PostgreSQL (started here, on a private Unix socket) and, as root,
the real gateway and collector in network namespaces.

PostgreSQL binaries are looked up in /usr/lib/postgresql/<version>/bin (Debian's
``apt-get install postgresql``) and on PATH. PostgreSQL refuses to run as root: as root the
server runs as the ``postgres`` user the Debian package creates. It listens on a Unix socket
only (no TCP port at all), which processes in other network namespaces reach through the
file system — the collector in its namespace included. Without the binaries (or, as root,
without that user) these tests are skipped, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testsupport.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
NETNS_TOOLS = ("ip", "nft", "tc", "curl")


def find_pg_bin() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
        reverse=True,
    )
    for d in candidates:
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(
            os.path.join(d, "postgres"), os.X_OK
        ):
            return Path(d)
    initdb = shutil.which("initdb")
    if initdb:
        d = Path(os.path.realpath(initdb)).parent
        if (d / "postgres").exists():
            return d
    return None


def pg_skip_reason() -> str | None:
    if find_pg_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql; .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg driver is missing (pip install 'psycopg[binary]')"
    return None


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


@dataclass
class Postgres:
    bindir: Path
    base: Path
    sockdir: Path
    port: int
    proc: subprocess.Popen

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@/{dbname}?host={self.sockdir}&port={self.port}"

    def connect(self, dbname: str = "postgres"):
        import psycopg

        return psycopg.connect(
            host=str(self.sockdir), port=self.port, user="postgres", dbname=dbname, autocommit=True
        )

    def create_db(self) -> str:
        name = "t_" + secrets.token_hex(6)
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_db(self, name: str) -> None:
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _as_postgres() -> dict[str, Any]:
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam("postgres")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


@pytest.fixture(scope="session")
def postgres():
    reason = pg_skip_reason()
    if reason:
        pytest.skip(reason)
    bindir = find_pg_bin()
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="hotspot-pg-"))
    data, sockdir = base / "data", base / "sock"
    sockdir.mkdir()
    demote = _as_postgres()
    if demote:
        os.chmod(base, 0o755)
        for p in (base, sockdir):
            os.chown(p, demote["user"], demote["group"])
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(base)}
    subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
        env=env,
        cwd=base,
        **demote,
    )
    port = free_port()
    log = open(base / "postgres.log", "ab")
    proc = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sockdir),
            "-p",
            str(port),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=100",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=base,
        start_new_session=True,
        **demote,
    )
    pg = Postgres(bindir, base, sockdir, port, proc)
    deadline = time.monotonic() + 30
    while True:
        try:
            with pg.connect() as conn:
                conn.execute("SELECT 1")
            break
        except Exception:  # noqa: BLE001 - still starting
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(
                    "PostgreSQL did not start:\n" + (base / "postgres.log").read_text()[-2000:]
                )
            time.sleep(0.1)
    yield pg
    proc.send_signal(signal.SIGINT)  # fast shutdown
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pg_url(postgres):
    name = postgres.create_db()
    yield postgres.url(name)
    postgres.drop_db(name)


def hotspot_cmd(config: Path | str, *args: str) -> list[str]:
    return [sys.executable, "-m", "hotspot_cli", "--config", str(config), *args]
