"""`hotspot portal run` for real: gunicorn on loopback, started as root, serving as an
unprivileged user (root only: otherwise skipped)."""

from __future__ import annotations

import http.client
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from testsupport.loopback import free_port, wait_listening
from testsupport.shared_tree import wrap_readable
from testsupport.testbed import portal_settings, stop_process_group, write_toml

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (to drop privileges)")

HOST = "127.0.0.2"


def _user(keep_dir: Path) -> pwd.struct_passwd:
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this machine")
    probe = subprocess.run(
        wrap_readable(
            [
                "runuser",
                "-u",
                "nobody",
                "--",
                sys.executable,
                "-c",
                "import flask, gunicorn, babel.localedata as l, hotspot, portal;l.load('id')",
            ],
            keep_dir,
        ),
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.fail(
            f"'nobody' cannot import the portal with {sys.executable}, even with the "
            f"checkout bound into view: {probe.stderr.decode(errors='replace')[-500:]}"
        )
    return user


@pytest.fixture
def workdir():
    path = Path(tempfile.mkdtemp(prefix="hotspot-portal-run-"))
    path.chmod(0o755)  # the portal user must reach its files (pytest's tmp_path is 0700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _get(port: int, path: str, host: str) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request("GET", path, headers={"Host": host})
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_portal_runs_as_the_portal_user(workdir):
    import psutil

    probe_dir, run_dir = workdir / "keep-probe", workdir / "keep-run"
    probe_dir.mkdir()
    run_dir.mkdir()
    user = _user(probe_dir)
    port = free_port(HOST)
    config = write_toml(
        workdir / "hotspot.toml",
        {
            "network": {"lan_address": f"{HOST}/18", "portal_port": port},
            "database": {"url": f"sqlite:///{workdir}/hotspot.db"},
            "control": {"socket": str(workdir / "no-gateway.sock")},
            "portal": portal_settings(workdir, user="nobody", workers=2),
        },
    )
    proc = subprocess.Popen(
        wrap_readable(
            [sys.executable, "-m", "hotspot_cli", "--config", str(config), "portal", "run"],
            run_dir,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        if not wait_listening(HOST, port, proc, timeout=30):
            pytest.fail(proc.stdout.read().decode() if proc.poll() is not None else "no portal")
        master = psutil.Process(proc.pid)
        while len(master.children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = master.children()
        assert len(workers) == 2
        for p in [master, *workers]:
            assert p.uids().real == p.uids().effective == user.pw_uid, p
            assert p.gids().effective == user.pw_gid
        for name in ("portal.secret", "voucher.key"):
            st = (workdir / name).stat()
            assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_uid == 0
        # A probe is answered without the gateway; a page says "try again" without it.
        probe = _get(port, "/generate_204", "connectivitycheck.gstatic.com")
        assert probe.status == 302
        assert probe.getheader("Location").startswith(f"http://{HOST}:{port}/?to=")
        page = _get(port, "/", f"{HOST}:{port}")
        assert page.status == 503 and b"Traceback" not in page.body
    finally:
        stop_process_group(proc)
