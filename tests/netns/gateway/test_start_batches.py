"""The start's classes in `tc -batch` runs of at most a thousand (gateway/tc.py,
``Shaper.apply_bulk``): a /18's first start creates 16,382 classes a device, and the kernel
walks every class of the qdisc for each new one, so one run for them all outlived its
timeout on a busy machine and the gateway died with a traceback, then began again from
nothing at every restart (bench/README.md, "The /18").

With a pool of about a thousand addresses (two runs a device), the real gateway against the
real kernel, and ``tc`` on its PATH a wrapper that passes every run to the real one and can
be told to fail one:

* each run is reported to systemd before it starts (``EXTEND_TIMEOUT_USEC`` past the run's
  timeout, ``STATUS`` with how far it got), on a real ``NOTIFY_SOCKET``, then ``READY``;
* a run that fails stops the start with one line (no traceback), and the classes of the
  runs before it stay: the next start creates only the rest;
* a run that hangs past its timeout is the same one-line failure (``tc`` timeout), not a
  ``TimeoutExpired``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.netns.helpers import client_minor, tc_classes

RANGE = ("10.10.0.10", "10.10.3.250")  # 1,009 addresses of the testbed's /22: two runs
POOL = range(client_minor(RANGE[0]), client_minor(RANGE[1]) + 1)
REAL_TC = "/usr/sbin/tc"

# Passes each `tc -batch` run to the real tc and logs how many lines it had; the run number
# $FAIL_RUN (counted over the process's life, in $RUNS) fails, or hangs with $HANG set.
WRAPPER = """#!/bin/sh
input=$(cat)
n=$(( $(cat "$RUNS" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$RUNS"
echo "$n $(printf '%s\\n' "$input" | grep -c .) $*" >> "$RUNS.log"
if [ "$n" = "${FAIL_RUN:-0}" ]; then
  if [ -n "$HANG" ]; then exec sleep 600; fi
  echo "Error: injected failure of run $n" >&2
  exit 1
fi
printf '%s\\n' "$input" | exec REAL_TC "$@"
"""


@pytest.fixture
def tc_wrapper(tmp_path: Path) -> Path:
    if not os.path.exists(REAL_TC):
        pytest.skip(f"needs {REAL_TC} (iproute2)")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wrapper = bindir / "tc"
    wrapper.write_text(WRAPPER.replace("REAL_TC", REAL_TC))
    wrapper.chmod(0o755)
    return bindir


@pytest.fixture
def notify_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    yield path, sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def pool_classes(bed, dev: str) -> set[int]:
    return set(POOL) & set(tc_classes(bed, dev))


def run_gateway(bed, gw, env: dict[str, str], *, until_ready: bool, timeout: float = 120):
    """Start ``hotspot gateway run`` with ``env``; wait for its control socket, or for it
    to exit. Returns the process."""
    if os.path.exists(gw.socket):
        os.unlink(gw.socket)
    proc = bed.popen(bed.gw, *gw.hotspot("gateway", "run"), log_path=gw.log, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc
        if until_ready and os.path.exists(gw.socket):
            try:
                gw.call("ping")
                gw.proc = proc  # stopped by the factory's clean-up
                return proc
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"gateway neither ready nor gone in {timeout} s:\n{gw.log.read_text()}")


def test_start_reports_each_run_fails_in_one_line_and_resumes(
    testbed, gateway_factory, tc_wrapper, notify_socket, tmp_path
):
    gw = gateway_factory({"dhcp": {"range_start": RANGE[0], "range_end": RANGE[1]}}, start=False)
    runs = tmp_path / "runs"
    path, sock = notify_socket
    env = {"PATH": f"{tc_wrapper}:{os.environ['PATH']}", "RUNS": str(runs)}

    # 1. The second run (br-lan's last nine addresses) fails: one line, the first run kept.
    first = run_gateway(testbed, gw, {**env, "FAIL_RUN": "2"}, until_ready=False)
    assert first.returncode == 1, gw.log.read_text()
    log = gw.log.read_text()
    assert "Traceback" not in log, log
    assert "hotspot: tc: tc -batch on br-lan: Error: injected failure of run 2" in log, log
    kept = pool_classes(testbed, "br-lan")
    assert len(kept) == 1000, len(kept)

    # 2. Started again with nothing failing: only the rest is created; systemd is told
    # before each run, then READY.
    runs.write_text("0")
    (tmp_path / "runs.log").unlink()
    run_gateway(testbed, gw, {**env, "NOTIFY_SOCKET": str(path)}, until_ready=True)
    for dev in ("br-lan", "eth0"):
        assert pool_classes(testbed, dev) == set(POOL), dev
    batches = [line.split() for line in (tmp_path / "runs.log").read_text().splitlines()]
    # br-lan's nine missing classes are netlink calls (a few); eth0's 1,009 two runs
    lines = [int(b[1]) for b in batches]
    assert lines in ([2000, 18], [3000, 27]), batches  # + an fq_codel line where the kernel has it
    messages = received(sock)
    statuses = [m for m in messages if "STATUS=shaping classes" in m]
    assert all("EXTEND_TIMEOUT_USEC=150000000\n" in m for m in statuses), statuses
    assert any(m.endswith("STATUS=shaping classes on eth0: 1000 of 1009") for m in statuses), (
        statuses
    )
    assert any(m.endswith("STATUS=shaping classes on eth0: 1009 of 1009") for m in statuses)
    ready = next(i for i, m in enumerate(messages) if "READY=1" in m)
    assert ready > max(messages.index(m) for m in statuses), messages


def test_a_run_that_hangs_is_a_one_line_failure(testbed, tc_wrapper, tmp_path):
    """In-process, on the gateway's namespace: the run's timeout shortened to a second."""
    script = """
import sys
from gateway import shaping, tc
from gateway.netlink import IPRoute
from hotspot.errors import KernelError
tc.BATCH_TIMEOUT_S = 1.0
shaper = tc.Shaper(IPRoute(), "eth0", shaping.skeleton(100000, None))
shaper.install()
try:
    shaper.apply_bulk([(m, 2048, True) for m in range(2, 40)], [])
except KernelError as exc:
    print(exc.code, exc.message)
    sys.exit(0)
sys.exit("no KernelError")
"""
    env = {
        **os.environ,
        "PATH": f"{tc_wrapper}:{os.environ['PATH']}",
        "RUNS": str(tmp_path / "runs"),
        "FAIL_RUN": "1",
        "HANG": "1",
    }
    started = time.monotonic()
    done = subprocess.run(
        ["ip", "netns", "exec", testbed.gw, sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # two lines a class (class, tbf), three where the kernel has fq_codel
    assert re.fullmatch(
        r"tc tc -batch on eth0: (76|114) lines not done in 1 s", done.stdout.strip()
    )
    assert time.monotonic() - started < 30
    testbed.run(testbed.gw, "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
