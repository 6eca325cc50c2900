"""A throw-away PostgreSQL server on a private Unix socket (no TCP port at all), for the
integration tests (tests/integration/conftest.py) and the collector's benchmark.

Binaries are looked up in /usr/lib/postgresql/<version>/bin (Debian's ``apt-get install
postgresql``) and on PATH. PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testsupport.loopback import free_port


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
        found = Path(os.path.realpath(initdb)).parent
        if (found / "postgres").exists():
            return found
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


@contextmanager
def running_postgres(
    settings: Sequence[str] = (), base: Path | None = None, keep: bool = False
) -> Iterator[Postgres]:
    """A fresh cluster for the duration (fsync off: nothing here must survive a crash);
    ``settings``: more ``name=value`` server settings. ``base``: the cluster's folder
    (default: a new temporary one); a cluster already there (``base/data``) is started, not
    created again. ``keep``: leave the folder when done (the bench's ``--keep``/``--reuse``),
    after a clean shutdown."""
    reason = pg_skip_reason()
    if reason:
        raise RuntimeError(reason)
    bindir = find_pg_bin()
    assert bindir is not None
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="hotspot-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    data, sockdir = base / "data", base / "sock"
    existing = (data / "PG_VERSION").exists()
    sockdir.mkdir(exist_ok=True)
    demote = _as_postgres()
    if demote:
        os.chmod(base, 0o755)
        for p in (base, sockdir):
            os.chown(p, demote["user"], demote["group"])
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "HOME": str(base)}
    if not existing:
        _initdb(bindir, data, env, base, demote)
    port = free_port()
    log = open(base / "postgres.log", "ab")
    options = [
        "listen_addresses=",
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
        "max_connections=100",
        *settings,
    ]
    proc = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(data), "-k", str(sockdir), "-p", str(port)]
        + [arg for o in options for arg in ("-c", o)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=base,
        start_new_session=True,
        **demote,
    )
    pg = Postgres(bindir, base, sockdir, port, proc)
    try:
        deadline = time.monotonic() + 120  # a kept cluster may replay its WAL first
        while True:
            try:
                with pg.connect() as conn:
                    conn.execute("SELECT 1")
                break
            except Exception:  # noqa: BLE001 - still starting
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PostgreSQL did not start:\n" + (base / "postgres.log").read_text()[-2000:]
                    ) from None
                time.sleep(0.1)
        yield pg
    finally:
        proc.send_signal(signal.SIGINT)  # fast shutdown
        try:
            proc.wait(timeout=60 if keep else 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)


def _initdb(bindir: Path, data: Path, env: dict[str, str], base: Path, demote: dict) -> None:
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
