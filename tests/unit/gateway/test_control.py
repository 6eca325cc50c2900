"""The control socket protocol and the CLI, over a real Unix socket, with the fake data path."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from gateway.control_server import ControlServer, Dispatcher
from hotspot import protocol as proto
from hotspot.control import ControlClient
from hotspot.errors import (
    ControlUnavailable,
    ErrorCode,
    HotspotError,
    NotFound,
    Refused,
    UsageError,
)
from hotspot_cli import main as cli

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"


def test_socket_mode_and_roundtrip(server, cfg):
    assert stat.S_IMODE(os.stat(cfg.control.socket).st_mode) == 0o660
    with ControlClient(cfg.control.socket) as ctl:
        assert ctl.send(proto.PingRequest())["pong"] is True
        out = ctl.send(proto.AuthorizeRequest(ip=IP1, mac=MAC1, tier="free"))
        assert out["mac"] == MAC1
        assert ctl.send(proto.ClientRequest(ip=IP1))["session"]["id"] == out["id"]
        assert [s["ip"] for s in ctl.send(proto.ListRequest())] == [IP1]
        with pytest.raises(UsageError):  # refused by the gateway
            ctl.send(proto.AuthorizeRequest(ip="not-an-ip", mac=MAC1))
        with pytest.raises(UsageError):  # the same check, before the request leaves
            ctl.call("authorize", ip="not-an-ip", mac=MAC1)
        with pytest.raises(NotFound) as missing:
            ctl.send(proto.DeauthorizeRequest(mac="02:00:00:00:00:77"))
        assert missing.value.code is ErrorCode.NO_SESSION
        assert ctl.send(proto.BlockRequest(mac=MAC1))["blocked"] is True
        with pytest.raises(Refused) as err:
            ctl.call("authorize", ip=IP1, mac=MAC1)
        assert err.value.code is ErrorCode.BLOCKED
        assert [d["mac"] for d in ctl.send(proto.BlockedRequest())] == [MAC1]
        assert ctl.send(proto.UnblockRequest(mac=MAC1)) == {"mac": MAC1, "blocked": False}
        assert ctl.send(proto.ReconcileRequest()) == {"changed": ""}
        assert ctl.send(proto.StatusRequest()) == {"ok": True}


def exchange(f, line: bytes) -> dict:
    f.write(line)
    f.flush()
    reply = f.readline()
    assert reply.endswith(b"\n"), f"no reply to {line[:60]!r}: the connection died"
    return json.loads(reply)


# Every kind of malformed line; each must get bad-request on a connection that goes on.
MALFORMED = [
    b"not json\n",
    b"\xff\xfe\x00\n",  # not UTF-8
    b"\n",
    b"[" * 10_000 + b"\n",  # deeper than the decoder goes
    b"1" * 5000 + b"\n",  # an integer longer than Python converts
    b'{"op": "list", "n": ' + b"9" * 5000 + b"}\n",
    b'["list"]\n',
    b"null\n",
    b'"ping"\n',  # not an object
    b'{"op": "explode"}\n',
    b"{}\n",
    b'{"op": ["ping"]}\n',
    b'{"op": "list", "extra": 1}\n',
    b'{"op": "authorize"}\n',  # neither ip nor mac
    b'{"op": "authorize", "ip": ["10.10.0.11"]}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "expires_at": "9999-12-31T23:59:59-23:59"}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "minutes": ' + b"1" + b"0" * 30 + b"}\n",
    b'{"op": "authorize", "ip": "10.10.0.11", "minutes": NaN}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "bytes_limit": 1e999}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "voucher_id": 99999999999999999999999}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "tier": "\\ud800"}\n',
    b'{"op": "authorize", "ip": "10.10.0.11", "tier": "gold"}\n',  # no such tier (engine)
    b'{"op": "authorize", "ip": "192.168.1.5"}\n',  # not on the LAN (engine)
    b'{"op": "extend", "mac": 7}\n',
    b'{"op": "extend", "mac": "02:00:00:00:00:01"}\n',
    b'{"op": "block"}\n',
    b'{"op": "block", "mac": "02:00:00:00:00:01", "reason": 5}\n',
    b'{"op": "deauthorize", "ip": "10.10.0.11", "reason": "whim"}\n',
]


def test_malformed_requests_get_bad_request_and_the_connection_keeps_answering(server, cfg):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        f = s.makefile("rwb")
        for line in MALFORMED:
            reply = exchange(f, line)
            assert reply["ok"] is False, line[:60]
            assert reply["error"]["code"] == "bad-request", (line[:60], reply)
        assert exchange(f, b'{"op": "ping"}\n')["result"]["pong"] is True


def test_an_overlong_line_is_refused_and_the_connection_closed(server, cfg):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        s.sendall(b"x" * (70 * 1024) + b"\n")
        reply = json.loads(s.makefile("rb").readline())
        assert reply["error"]["code"] == "bad-request"


def test_second_gateway_refuses_a_live_socket(server, cfg, engine):
    with pytest.raises(HotspotError, match="already listening") as err:
        ControlServer(cfg.control.socket, Dispatcher(engine, dict), group=None)
    assert err.value.code is ErrorCode.ALREADY_RUNNING


def test_unreachable_gateway(tmp_path):
    with pytest.raises(ControlUnavailable):
        ControlClient(str(tmp_path / "none.sock")).send(proto.PingRequest())


def run_cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "hotspot_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_cli_lists_clients_as_json(server, engine, config_file):
    engine.authorize(ip=IP1, mac=MAC1, tier="free")
    out = run_cli("--config", str(config_file), "clients", "list", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)[0]
    for key in ("mac", "ip", "tier", "state", "started_at", "expires_at", "bytes_down", "bytes_up"):
        assert key in row
    kick = run_cli("--config", str(config_file), "clients", "kick", MAC1)
    assert kick.returncode == 0 and "kicked" in kick.stdout
    again = run_cli("--config", str(config_file), "clients", "kick", MAC1)
    assert again.returncode == 1 and again.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (("clients", "allow", "not-a-mac"), "not a MAC address"),
        (("clients", "allow", MAC1, "--minutes", "-3"), "--minutes"),
        (("clients", "explode"), "invalid choice"),
        (("--config", "/nonexistent.toml", "clients", "list"), "file not found"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, needle):
    out = run_cli(*args)
    assert out.returncode == 2
    assert needle in out.stderr and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr


def test_cli_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[network]\nlan_address = "10.10.0.1/8"\n')
    out = run_cli("--config", str(bad), "gateway", "status")
    assert out.returncode == 2
    assert out.stderr.startswith("hotspot: config error: network.lan_address:")


def test_cli_without_gateway_says_so(tmp_path):
    cfg = tmp_path / "h.toml"
    cfg.write_text(f'[control]\nsocket = "{tmp_path}/none.sock"\n')
    out = run_cli("--config", str(cfg), "clients", "list")
    assert out.returncode == 1 and "gateway-unavailable" in out.stderr
    assert out.stderr.count("\n") == 1


def test_parser_is_complete():
    parser = cli.build_parser()
    for argv in (
        ["gateway", "run"],
        ["gateway", "status", "--json"],
        ["gateway", "teardown"],
        ["clients", "list", "--json"],
        ["clients", "allow", MAC1, "--ip", IP1, "--tier", "premium", "--minutes", "30"],
        ["clients", "kick", MAC1],
        ["clients", "block", MAC1],
        ["clients", "unblock", MAC1],
        ["db", "upgrade"],
    ):
        parser.parse_args(argv)


def test_large_replies_are_read_whole(server, cfg, engine):
    """A list of many sessions is far larger than a request may be."""
    with ControlClient(cfg.control.socket) as ctl:
        for i in range(300):
            ctl.send(
                proto.AuthorizeRequest(
                    ip=f"10.10.1.{i % 250 + 1}" if i < 250 else f"10.10.2.{i - 249}",
                    mac=f"02:00:00:00:{i >> 8:02x}:{i & 0xFF:02x}",
                    tier="premium",
                )
            )
        rows = ctl.send(proto.ListRequest())
        assert len(rows) == 300
        assert ctl.send(proto.PingRequest())["pong"]  # the connection is still in step


class BuggyEngine:
    """An engine with bugs in it: the kind of error that must never pass for a bad request."""

    def __init__(self, engine):
        self.engine = engine

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def list(self):
        raise TypeError("list() takes 0 positional arguments but 1 was given")

    def blocked(self):
        return None.blocked  # AttributeError

    def reconcile(self):
        return object()  # the dispatcher wraps it in a reply that is not JSON


@pytest.fixture
def buggy_server(cfg, engine):
    srv = ControlServer(cfg.control.socket, Dispatcher(BuggyEngine(engine), lambda: {}), group=None)
    srv.start()
    yield srv
    srv.stop()


def test_an_engine_bug_is_internal_logged_and_the_socket_keeps_serving(buggy_server, cfg, caplog):
    caplog.set_level(logging.ERROR, logger="gateway.control_server")
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        f = s.makefile("rwb")
        for op in (b"list", b"blocked", b"reconcile"):
            reply = exchange(f, b'{"op": "%s"}\n' % op)
            assert reply["ok"] is False and reply["error"]["code"] == "internal", reply
            assert "Traceback" not in reply["error"]["message"]  # the log has it, not the client
        assert exchange(f, b'{"op": "ping"}\n')["ok"] is True
        assert exchange(f, b'{"op": "client", "ip": "10.10.0.11"}\n')["ok"] is True
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 3 and all(r.exc_info for r in errors)
    assert "TypeError" in caplog.text and "AttributeError" in caplog.text
    with ControlClient(cfg.control.socket) as ctl, pytest.raises(HotspotError) as err:
        ctl.send(proto.ListRequest())
    assert err.value.code is ErrorCode.INTERNAL


def test_unknown_codes_from_a_newer_gateway_are_kept():
    from hotspot.control import error_from

    err = error_from({"code": "solar-flare", "message": "too bright"})
    assert type(err) is HotspotError and err.code is ErrorCode.ERROR
    assert "solar-flare" in err.message
    assert type(error_from({"code": "quota-exhausted"})) is Refused
    assert error_from({"code": "quota-exhausted"}).message == ErrorCode.QUOTA_EXHAUSTED.meaning
    assert type(error_from({"code": "bad-config", "message": "x"})) is HotspotError


def test_a_burst_of_connections_waits_in_the_listen_queue(cfg, engine):
    """Every portal thread may connect at once while the accepting thread is busy: the
    connections wait in the queue (socketserver's default of 5 refused the sixth, EAGAIN)."""
    srv = ControlServer(cfg.control.socket, Dispatcher(engine, lambda: {"ok": True}), group=None)
    socks = []
    try:  # not serving yet: nothing is accepted, every connection must be queued
        for _ in range(4 * 32):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(1.0)  # as the portal's client: a full queue answers EAGAIN at once
            socks.append(s)
            s.connect(cfg.control.socket)
    finally:
        for s in socks:
            s.close()
        srv.server_close()
        os.unlink(cfg.control.socket)


@pytest.fixture
def full_listener(tmp_path):
    """A Unix socket nobody accepts on, its listen queue filled until the kernel answers
    EAGAIN: (path, listener)."""
    path = str(tmp_path / "full.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(0)
    queued = []
    try:
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            queued.append(s)
            try:
                s.connect(path)
            except BlockingIOError:
                break
        yield path, listener
    finally:
        for s in queued:
            s.close()
        listener.close()


def test_the_client_waits_while_the_listen_queue_is_full(full_listener):
    path, listener = full_listener
    # Room is made 0.2 s later; the client (2 s timeout) must be waiting, not failing.
    timer = threading.Timer(0.2, lambda: [listener.accept()[0].close() for _ in range(2)])
    timer.start()
    client = ControlClient(path, timeout=2.0)
    t0 = time.monotonic()
    client._connect()
    assert 0.15 < time.monotonic() - t0 < 2.0
    client.close()
    timer.join()


def test_a_full_listen_queue_past_the_timeout_is_unavailable(full_listener):
    path, _ = full_listener
    with pytest.raises(ControlUnavailable):
        ControlClient(path, timeout=0.3).send(proto.PingRequest())
