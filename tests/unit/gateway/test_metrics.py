"""The gateway's Prometheus metrics (gateway/metrics.py): counted where the control requests
are answered, gauges read from the engine at scrape time, a listener that answers only
``GET /metrics`` — and the configuration that never lets it listen where villagers are."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.control_server import Dispatcher
from gateway.metrics import GatewayMetrics, MetricsListener
from hotspot import config as config_mod
from hotspot.errors import ConfigError

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"
MAC2, IP2 = "02:00:00:00:00:02", "10.10.0.12"


def samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def value(metrics: GatewayMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics(cfg, engine, datapath):
    datapath.neighbours.update({IP1: MAC1, IP2: MAC2})
    return GatewayMetrics(
        engine,
        list(cfg.tiers),
        cfg.village.name,
        uplink=lambda: {"state": "down", "cause": "link"},
        ticks=lambda: 3,
    )


def test_sessions_logins_and_refusals_are_counted_where_they_happen(cfg, engine, metrics):
    d = Dispatcher(engine, dict, metrics=metrics)
    assert d.handle({"op": "authorize", "ip": IP1, "tier": "free", "source": "free"})["ok"]
    assert d.handle({"op": "authorize", "ip": IP2, "tier": "premium", "source": "admin"})["ok"]
    assert d.handle({"op": "block", "mac": MAC1})["ok"]
    refused = d.handle({"op": "authorize", "ip": IP1, "tier": "free", "source": "free"})
    assert not refused["ok"]
    code = refused["error"]["code"]
    # a hostile client's op names and a malformed line: one "other" label, not a new series
    for junk in ("x" * 200, "authorize\n", "drop table"):
        assert not d.handle({"op": junk})["ok"]
    assert not d.handle(["not", "an", "object"])["ok"]

    assert value(metrics, "hotspot_gateway_sessions", tier="free") == 0  # blocked: ended
    assert value(metrics, "hotspot_gateway_sessions", tier="premium") == 1
    assert value(metrics, "hotspot_gateway_logins_total", source="free") == 1
    assert value(metrics, "hotspot_gateway_logins_total", source="admin") == 1
    assert value(metrics, "hotspot_gateway_refusals_total", op="authorize", code=code) == 1
    assert value(metrics, "hotspot_gateway_refusals_total", op="other", code="bad-request") == 4
    assert value(metrics, "hotspot_gateway_authorize_seconds_count", op="authorize") == 3
    ops = {dict(k[1]).get("op") for k in samples(metrics) if k[0].startswith("hotspot_gateway_ref")}
    assert ops <= {"authorize", "other"}
    assert value(metrics, "hotspot_gateway_uplink_up", cause="link") == 0
    assert value(metrics, "hotspot_gateway_ticks_total") == 3


def test_bytes_kernel_sizes_and_tick_phases_come_from_the_tick(cfg, engine, datapath, metrics):
    d = Dispatcher(engine, dict, metrics=metrics)
    info = d.handle({"op": "authorize", "ip": IP1, "tier": "premium", "source": "admin"})["result"]
    engine.tick()
    datapath.traffic(IP1, down=50_000, up=7_000)
    engine.tick()
    metrics.tick(0.01, engine.tick_phases)
    down = value(metrics, "hotspot_gateway_bytes_total", direction="down")
    up = value(metrics, "hotspot_gateway_bytes_total", direction="up")
    assert (down, up) == (50_000, 7_000)
    assert engine.live[info["id"]].bytes_down == 50_000
    assert value(metrics, "hotspot_gateway_kernel_elements", set="authorized") == 1
    for phase in ("total", "kernel_read", "account", "lock_held", "admit"):
        assert value(metrics, "hotspot_gateway_tick_seconds_count", phase=phase) == 1


def test_without_metrics_the_dispatcher_counts_nothing(engine, datapath):
    datapath.neighbours[IP1] = MAC1
    d = Dispatcher(engine, dict)
    assert d.metrics is None
    assert d.handle({"op": "authorize", "ip": IP1, "tier": "free", "source": "free"})["ok"]


def test_the_listener_answers_get_metrics_only(metrics):
    listener = MetricsListener("127.0.0.1:0", metrics)
    listener.start()
    try:
        base = f"http://127.0.0.1:{listener.address[1]}"
        with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
            assert r.status == 200
            assert b"hotspot_gateway_sessions" in r.read()
        for path, method in (("/", "GET"), ("/metrics/../x", "GET"), ("/metrics", "POST")):
            req = urllib.request.Request(base + path, method=method)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=10)
            assert err.value.code == 404
    finally:
        listener.stop()


@pytest.mark.parametrize(
    "listen, needle",
    [
        ("0.0.0.0:9105", "every address"),
        ("[::]:9105", "every address"),
        ("10.10.0.1:9105", "villagers' LAN"),  # the LAN address
        ("10.10.2.9:9105", "villagers' LAN"),  # any address of the LAN's network
        ("127.0.0.1:8080", "open to the LAN"),  # the portal's port
        ("127.0.0.1:53", "open to the LAN"),
        ("127.0.0.1:22", "open to the LAN"),  # in lan_tcp_ports below
        ("localhost:9105", "ADDRESS:PORT"),
        ("127.0.0.1", "ADDRESS:PORT"),
        ("127.0.0.1:99999", "ADDRESS:PORT"),
    ],
)
def test_metrics_never_listen_where_villagers_are(tmp_path, listen, needle):
    overrides = {"gateway": {"metrics_listen": listen}, "network": {"lan_tcp_ports": [22]}}
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=overrides)
    assert err.value.key == "gateway.metrics_listen"
    assert needle in str(err.value)


@pytest.mark.parametrize("listen", ["", "127.0.0.1:9105", "[::1]:9105", "192.168.88.1:9105"])
def test_metrics_listen_on_loopback_or_management(listen):
    assert (
        config_mod.load(overrides={"gateway": {"metrics_listen": listen}}).gateway.metrics_listen
        == listen
    )


def test_a_listener_that_cannot_listen_leaves_the_gateway_serving(tmp_path, engine, caplog):
    """The port taken (or an address the machine has not got yet): an error in the log, the
    daemon goes on without metrics — the village keeps its internet."""
    import socket
    from types import SimpleNamespace

    from gateway.daemon import Gateway

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        overrides = {
            "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
            "control": {"socket": str(tmp_path / "control.sock")},
            "gateway": {"metrics_listen": f"127.0.0.1:{port}"},
        }
        gw = Gateway(config_mod.load(overrides=overrides))
        gw.engine = engine
        gw.uplink = SimpleNamespace(status=lambda: None)
        with caplog.at_level("ERROR", logger="gateway.daemon"):
            gw.start_metrics()
    assert gw.metrics is None and gw.metrics_listener is None
    assert f"cannot listen on 127.0.0.1:{port}" in caplog.text
