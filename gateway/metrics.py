"""Prometheus metrics of the gateway (``[gateway] metrics_listen``, issue #14 item 5).

Nothing here costs a packet anything: counters move where the events already happen (a
control request answered, a tick ended) and every gauge is read at scrape time from what
the daemon holds anyway (the engine's running sessions, the last tick's readings of the
kernel, the uplink monitor's state). The listener is its own small HTTP server on the
configured address — loopback or the management network, never the villagers' LAN
(hotspot/config.py refuses those) — and answers ``GET /metrics`` only.

prometheus_client is imported only when the listener is on (tests/unit/test_lazy_imports.py).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hotspot import __version__
from hotspot.errors import ErrorCode

log = logging.getLogger(__name__)

# The control operations whose requests are counted by name; anything else is "other" (the
# label's values stay a closed set whatever a client sends).
COUNTED_OPS = frozenset(
    {
        "ping",
        "status",
        "authorize",
        "radius-authorize",
        "deauthorize",
        "client",
        "extend",
        "list",
        "block",
        "unblock",
        "blocked",
        "trust",
        "untrust",
        "trusted",
        "reconcile",
    }
)
LOGIN_OPS = frozenset({"authorize", "radius-authorize"})
# Seconds: a login on a Pi is milliseconds when quiet, seconds when the engine is busy.
AUTHORIZE_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# The engine's tick phases (SessionEngine.tick_phases; docs/architecture.md, the tick).
TICK_PHASES = (
    "kernel_read",
    "db_read",
    "account",
    "expiry",
    "flush",
    "expiry_kernel",
    "lock_held",  # the longest of the tick's slices under the engine lock
    "lock_held_total",
    "reconcile_plan",
    "reconcile_apply",
    "admit",
)
TICK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class EngineView(Protocol):
    """What the metrics read from :class:`gateway.engine.SessionEngine` at scrape time."""

    @property
    def live(self) -> Mapping[int, Any]: ...  # session id → its accounting (``.tier``)
    @property
    def charged_bytes(self) -> list[int]: ...
    @property
    def kernel_sizes(self) -> Mapping[str, int]: ...


class GatewayMetrics:
    """The gateway's registry. ``engine``, ``uplink`` and ``ticks`` are read at scrape time."""

    def __init__(
        self,
        engine: EngineView,
        tiers: list[str],
        village: str,
        uplink: Callable[[], Mapping[str, Any] | None] = lambda: None,
        ticks: Callable[[], int] = lambda: 0,
    ):
        from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics

        disable_created_metrics()  # type: ignore[no-untyped-call, unused-ignore]  # _created: no use here

        self.registry = CollectorRegistry(auto_describe=False)
        self.logins = Counter(
            "hotspot_gateway_logins",
            "Sessions granted on a control request (authorize, radius-authorize), by source",
            ["source"],
            registry=self.registry,
        )
        self.redemptions = Counter(
            "hotspot_gateway_voucher_redemptions",
            "Authorizations granted on a voucher (the portal's redemption of a code)",
            registry=self.registry,
        )
        self.refusals = Counter(
            "hotspot_gateway_refusals",
            "Control requests answered with an error, by operation and ErrorCode",
            ["op", "code"],
            registry=self.registry,
        )
        self.authorize_seconds = Histogram(
            "hotspot_gateway_authorize_seconds",
            "Time to answer an authorize or radius-authorize request (granted or refused)",
            ["op"],
            buckets=AUTHORIZE_BUCKETS,
            registry=self.registry,
        )
        self.tick_seconds = Histogram(
            "hotspot_gateway_tick_seconds",
            "Duration of the engine's tick and of its phases",
            ["phase"],
            buckets=TICK_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(engine, tiers, village, uplink, ticks))
        self.codes = frozenset(c.value for c in ErrorCode)
        for op in LOGIN_OPS:  # present from the first scrape, at zero
            self.authorize_seconds.labels(op=op)
        for phase in ("total", *TICK_PHASES):
            self.tick_seconds.labels(phase=phase)

    # -- events (called where they happen) ----------------------------------------------------

    def request(
        self,
        op: object,
        seconds: float,
        code: str | None,
        source: str | None = None,
        voucher: bool = False,
    ) -> None:
        """One control request answered: ``code`` None = granted."""
        name = op if isinstance(op, str) and op in COUNTED_OPS else "other"
        if name in LOGIN_OPS:
            self.authorize_seconds.labels(op=name).observe(seconds)
            if code is None:
                self.logins.labels(source=source or "unknown").inc()
                if voucher:
                    self.redemptions.inc()
        if code is not None:
            self.refusals.labels(op=name, code=code if code in self.codes else "other").inc()

    def tick(self, seconds: float, phases_ms: Mapping[str, float]) -> None:
        """One tick of ``seconds``; ``phases_ms``: the engine's ``tick_phases`` (milliseconds;
        a phase the tick skipped is absent)."""
        self.tick_seconds.labels(phase="total").observe(seconds)
        for phase, ms in phases_ms.items():
            if phase in TICK_PHASES:
                self.tick_seconds.labels(phase=phase).observe(ms / 1000)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _StateCollector:
    """Gauges read at scrape time from the daemon's own state."""

    def __init__(
        self,
        engine: EngineView,
        tiers: list[str],
        village: str,
        uplink: Callable[[], Mapping[str, Any] | None],
        ticks: Callable[[], int],
    ):
        self.engine = engine
        self.tiers = tiers
        self.village = village
        self.uplink = uplink
        self.ticks = ticks

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        info = GaugeMetricFamily(
            "hotspot_gateway_info", "The gateway's software version", labels=["version", "village"]
        )
        info.add_metric([__version__, self.village], 1)
        yield info
        by_tier = dict.fromkeys(self.tiers, 0)
        for live in list(self.engine.live.values()):  # a copy: a login may add one meanwhile
            by_tier[live.tier] = by_tier.get(live.tier, 0) + 1
        sessions = GaugeMetricFamily(
            "hotspot_gateway_sessions", "Running sessions, by tier", labels=["tier"]
        )
        for tier, n in sorted(by_tier.items()):
            sessions.add_metric([tier], n)
        yield sessions
        down, up = self.engine.charged_bytes
        charged = CounterMetricFamily(
            "hotspot_gateway_bytes",
            "IP-layer bytes charged to sessions since the daemon started, by direction",
            labels=["direction"],
        )
        charged.add_metric(["down"], down)
        charged.add_metric(["up"], up)
        yield charged
        kernel = GaugeMetricFamily(
            "hotspot_gateway_kernel_elements",
            "Elements of the data path's sets and maps as the last whole look read them",
            labels=["set"],
        )
        for name, n in sorted(self.engine.kernel_sizes.items()):
            kernel.add_metric([name], n)
        yield kernel
        ticks = CounterMetricFamily("hotspot_gateway_ticks", "Ticks the engine completed")
        ticks.add_metric([], self.ticks())
        yield ticks
        state = self.uplink()
        if state is not None:
            uplink = GaugeMetricFamily(
                "hotspot_gateway_uplink_up",
                "1 while the uplink answers its probes, 0 during an outage (cause: link or "
                "unreachable)",
                labels=["cause"],
            )
            down_now = state.get("state") == "down"
            uplink.add_metric([str(state.get("cause") or "")], 0 if down_now else 1)
            yield uplink


# -- the listener ---------------------------------------------------------------------------


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def split_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class MetricsListener:
    """``GET /metrics`` on ``listen`` ("ADDRESS:PORT"), in its own threads."""

    def __init__(self, listen: str, metrics: GatewayMetrics):
        host, port = split_listen(listen)
        server_class = _Server6 if ipaddress.ip_address(host).version == 6 else _Server
        self.metrics = metrics
        self.httpd = make_server(
            host, port, self._app, server_class=server_class, handler_class=_QuietHandler
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found\n"]
        from prometheus_client import CONTENT_TYPE_LATEST

        t = time.perf_counter()
        body = self.metrics.exposition()
        log.debug("metrics scraped in %.1f ms", (time.perf_counter() - t) * 1000)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
        return [body]

    def start(self) -> None:
        self.thread.start()
        log.info("metrics on http://%s:%d/metrics", *self.address)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
