"""The control socket protocol and the CLI, over a real Unix socket, with the fake data path."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys

import pytest

from gateway.control_server import ControlServer, Dispatcher
from hotspot_cli import main as cli
from hotspot.control import ControlClient
from hotspot.errors import ControlUnavailable, NotFound, Refused, UsageError

MAC1, IP1 = "02:00:00:00:00:01", "10.10.0.11"


@pytest.fixture
def server(cfg, engine):
    srv = ControlServer(cfg.control.socket, Dispatcher(engine, lambda: {"ok": True}), group=None)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def config_file(cfg, tmp_path):
    path = tmp_path / "hotspot.toml"
    path.write_text(f'[database]\nurl = "{cfg.database.url}"\n[control]\nsocket = "{cfg.control.socket}"\n')
    return path


def test_socket_mode_and_roundtrip(server, cfg):
    assert stat.S_IMODE(os.stat(cfg.control.socket).st_mode) == 0o660
    with ControlClient(cfg.control.socket) as ctl:
        assert ctl.call("ping")["pong"] is True
        out = ctl.call("authorize", ip=IP1, mac=MAC1, tier="free")
        assert out["mac"] == MAC1
        assert ctl.call("client", ip=IP1)["session"]["id"] == out["id"]
        assert [s["ip"] for s in ctl.call("list")] == [IP1]
        with pytest.raises(UsageError):
            ctl.call("authorize", ip="not-an-ip", mac=MAC1)
        with pytest.raises(NotFound):
            ctl.call("deauthorize", mac="02:00:00:00:00:77")
        ctl.call("block", mac=MAC1)
        with pytest.raises(Refused) as err:
            ctl.call("authorize", ip=IP1, mac=MAC1)
        assert err.value.code == "blocked"


def test_garbage_gets_an_error_and_the_server_keeps_serving(server, cfg):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        f = s.makefile("rwb")
        for line in (b"not json\n", b'{"op": "explode"}\n', b'["list"]\n',
                     b'{"op": "list", "extra": 1}\n', b'{"op": "ping"}\n'):
            f.write(line)
            f.flush()
            replies = json.loads(f.readline())
        assert replies["ok"] is True  # the last one, after four bad ones
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        s.sendall(b"x" * (70 * 1024) + b"\n")
        reply = json.loads(s.makefile("rb").readline())
        assert reply["error"]["code"] == "bad-request"


def test_second_gateway_refuses_a_live_socket(server, cfg, engine):
    from hotspot.errors import HotspotError

    with pytest.raises(HotspotError, match="already listening"):
        ControlServer(cfg.control.socket, Dispatcher(engine, dict), group=None)


def test_unreachable_gateway(tmp_path):
    with pytest.raises(ControlUnavailable):
        ControlClient(str(tmp_path / "none.sock")).call("ping")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hotspot_cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


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


@pytest.mark.parametrize("args, needle", [
    (("clients", "allow", "not-a-mac"), "not a MAC address"),
    (("clients", "allow", MAC1, "--minutes", "-3"), "--minutes"),
    (("clients", "explode"), "invalid choice"),
    (("--config", "/nonexistent.toml", "clients", "list"), "file not found"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, needle):
    out = run_cli(*args)
    assert out.returncode == 2
    assert needle in out.stderr and out.stderr.count("\n") == 1
    assert "Traceback" not in out.stderr


def test_cli_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[network]\nlan_address = \"10.10.0.1/8\"\n")
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
    for argv in (["gateway", "run"], ["gateway", "status", "--json"], ["gateway", "teardown"],
                 ["clients", "list", "--json"], ["clients", "allow", MAC1, "--ip", IP1,
                 "--tier", "premium", "--minutes", "30"], ["clients", "kick", MAC1],
                 ["clients", "block", MAC1], ["clients", "unblock", MAC1], ["db", "upgrade"]):
        parser.parse_args(argv)


def test_large_replies_are_read_whole(server, cfg, engine):
    """A list of many sessions is far larger than a request may be."""
    with ControlClient(cfg.control.socket) as ctl:
        for i in range(300):
            ctl.call("authorize", ip=f"10.10.1.{i % 250 + 1}" if i < 250 else f"10.10.2.{i - 249}",
                     mac=f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}", tier="premium")
        rows = ctl.call("list")
        assert len(rows) == 300
        assert ctl.call("ping")["pong"]  # the connection is still in step


@pytest.mark.parametrize("request_line", [
    b'{"op": "block"}\n', b'{"op": "block", "mac": "02:00:00:00:00:01", "reason": 5}\n',
    b'{"op": "authorize", "ip": ["10.10.0.11"]}\n', b'{"op": "extend", "mac": 7}\n',
    b"[" * 5000 + b"\n",
])
def test_mistyped_arguments_get_a_reply(server, cfg, request_line):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(cfg.control.socket)
        f = s.makefile("rwb")
        f.write(request_line)
        f.flush()
        reply = json.loads(f.readline())
        assert reply["ok"] is False and reply["error"]["code"] == "bad-request"
