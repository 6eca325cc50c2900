"""``hotspot gateway run`` with perf_counter stamps on the authorize path (bench only).

    PYTHONPATH=TREE python3 bench/trace_gateway.py --config FILE gateway run   (in the gateway's namespace)

Wraps, before the daemon starts: the control connection's read (``Dispatcher.answer``) and
reply write (``_Handler._send``), ``SessionEngine.authorize``/``deauthorize`` and their
phases (the portal-peer listing, the identification with its neighbour lookup and ARP probe,
the device row, the kernel change with its pins, nftables transaction and conntrack step, the
reply's description). For each request it logs one line ``TRACE [[label, wall ms, CPU ms of
the serving thread], …]`` (times since the line was read), and every few seconds ``THREADS
{name: native id}`` so that the driver can read each thread's CPU from ``/proc``. Used by
``bench.login_trace``; the product's code is not changed.
"""

from __future__ import annotations

import functools
import json
import logging
import runpy
import sys
import threading
import time
from typing import Any

# The code traced is the one on PYTHONPATH (bench.login_trace --tree: a baseline's), not
# this script's folder (bench/, where `gateway` would be bench/gateway.py).
sys.path.pop(0)
from gateway import (
    conntrack,
    control_server,
    datapath,
    engine,
    neighbours,
    nftables,
)

log = logging.getLogger("bench.trace")
_stamps = threading.local()


def _stamp(label: str) -> None:
    st = getattr(_stamps, "v", None)
    if st is not None:
        st.append((label, time.perf_counter(), time.thread_time()))


def _wrap(cls: Any, name: str, label: str) -> None:
    orig = getattr(cls, name)

    @functools.wraps(orig)
    def timed(*args: Any, **kwargs: Any) -> Any:
        _stamp(label + ">")
        try:
            return orig(*args, **kwargs)
        finally:
            _stamp(label + "<")

    setattr(cls, name, timed)


def install() -> None:
    answer = control_server.Dispatcher.answer
    send = control_server._Handler._send

    def traced_answer(self: Any, line: bytes) -> bytes:
        _stamps.v = [("read", time.perf_counter(), time.thread_time())]
        return answer(self, line)

    def traced_send(self: Any, data: bytes) -> bool:
        _stamp("send>")
        ok = send(self, data)
        st = getattr(_stamps, "v", None)
        if st is not None:
            _stamp("send<")
            t0, c0 = st[0][1], st[0][2]
            rows = [(lab, round((t - t0) * 1000, 3), round((c - c0) * 1000, 3)) for lab, t, c in st]
            log.warning("TRACE %s", json.dumps(rows))
            _stamps.v = None
        return ok

    control_server.Dispatcher.answer = traced_answer  # type: ignore[method-assign]
    control_server._Handler._send = traced_send  # type: ignore[method-assign]
    for cls, name, label in (
        (engine.SessionEngine, "authorize", "authorize"),
        (engine.SessionEngine, "deauthorize", "deauthorize"),
        (engine.SessionEngine, "_senders_if_by_address", "portal_peers"),
        (engine.SessionEngine, "_identify", "identify"),
        (neighbours.Neighbours, "lookup", "neighbour_lookup"),
        (neighbours.Neighbours, "arp_probe", "arp_probe"),
        (engine.SessionEngine, "_device_seen", "device_row"),
        (engine.SessionEngine, "_apply", "kernel_change"),
        (datapath.DataPath, "_apply_pins", "pins"),
        (nftables.Nftables, "apply", "nftables"),
        (conntrack.Conntrack, "flush_walled", "conntrack_walled"),
        (conntrack.Conntrack, "flush_client", "conntrack_client"),
        (engine.SessionEngine, "_describe", "describe"),
    ):
        _wrap(cls, name, label)

    def names() -> None:
        while True:
            time.sleep(2)
            ids = {t.name: t.native_id for t in threading.enumerate()}
            log.warning("THREADS %s", json.dumps(ids))

    threading.Thread(target=names, name="trace-names", daemon=True).start()


if __name__ == "__main__":
    install()
    # The command line as `python -m hotspot_cli` runs it (bench does not import the
    # composition root: docs/architecture.md, the house).
    runpy.run_module("hotspot_cli", run_name="__main__", alter_sys=True)
