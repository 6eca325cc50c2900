"""``hotspot demo`` pieces that need no root: the command line, the portal forwarder's
rewriting, the villagers' form reading, the plain summary. The demo itself runs in
tests/netns/test_demo.py (root)."""

from __future__ import annotations

import http.server
import io
import os
import socket
import threading
import urllib.error
import urllib.request

import pytest

from demo import forward, packages
from demo.display import Display, Row, Snapshot, fmt_bytes, fmt_rate
from demo.village import _codes_in
from demo.villagers import Forms
from hotspot_cli import main as cli


def test_without_root_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["demo", "--duration", "30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "root" in err


def test_the_tests_prefixes_are_refused(monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # refused before anything is touched
    assert cli.main(["demo", "--prefix", "hst"]) == 2
    assert "tests" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "5"],
        ["--duration", "x"],
        ["--phones", "3"],
        ["--phones", "17"],
        ["--prefix", "Bad-Name"],
        ["--prefix", "x"],
        ["--prefix", "waytoolongname"],
    ],
)
def test_bad_arguments_exit_2(args, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", *args])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_codes_found_in_any_json_shape():
    assert _codes_in({"batch": 3, "codes": ["ABCD-EFGH-JK", "2345-6789-AB"]}) == [
        "ABCD-EFGH-JK",
        "2345-6789-AB",
    ]
    assert _codes_in([{"serial": 1, "code": "ABCD-EFGH-JK"}, "nonsense"]) == ["ABCD-EFGH-JK"]


def test_forms_of_a_page():
    f = Forms()
    f.feed(
        '<form method="post" action="/accept"><input type="hidden" name="csrf_token" '
        'value="tok"><input type="hidden" name="to" value="http://x/"><button>ok</button>'
        '</form><form action="/voucher"><input name="code" value=""></form>'
    )
    assert f.form("/accept") == {"csrf_token": "tok", "to": "http://x/"}
    assert f.form("/voucher") == {"code": ""}
    assert f.form("/logout") is None


def test_set_and_get_header():
    head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nConnection: keep-alive\r\n\r\n"
    out = forward._set_header(head, "Host", "10.10.0.1:8080")
    out = forward._set_header(out, "Connection", "close")
    out = forward._set_header(out, "Keep-Alive", None)
    assert out.endswith(b"\r\n\r\n") and out.startswith(b"GET / HTTP/1.1\r\n")
    assert forward._get_header(out, "host") == "10.10.0.1:8080"
    assert forward._get_header(out, "Connection") == "close"
    assert out.count(b"Host:") == 1


class _Portal(http.server.BaseHTTPRequestHandler):
    """Stands in for the portal: it insists on its own Host and redirects absolutely."""

    def do_GET(self):
        if self.headers["Host"] != "10.10.0.1:8080":
            self.send_response(302)
            self.send_header("Location", "http://10.10.0.1:8080/?to=elsewhere")
        elif self.path == "/go":
            self.send_response(303)
            self.send_header("Location", "http://10.10.0.1:8080/ok?x=1")
        else:
            self.send_response(200)
        body = f"host={self.headers['Host']} connection={self.headers['Connection']}".encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):  # quiet
        pass


def test_http_forward_shows_the_portal_its_host_and_the_browser_its_port(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Portal)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    # No namespace here: "inside" is this machine's loopback.
    monkeypatch.setattr(
        forward,
        "connect_in",
        lambda ns, host, p, timeout=5.0: socket.create_connection(
            ("127.0.0.1", port), timeout=timeout
        ),
    )
    fwd = forward.HttpForward("portal", "test-ns", "10.10.0.1", 8080).start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(fwd.url + "/", timeout=5) as resp:
            assert resp.read().decode() == "host=10.10.0.1:8080 connection=close"

        # an absolute redirect to the portal comes back as this machine's URL
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as exc:
            opener.open(fwd.url + "/go", timeout=5)
        assert exc.value.code == 303
        assert exc.value.headers["Location"] == fwd.url + "/ok?x=1"
    finally:
        fwd.stop()
        server.shutdown()


def test_forward_answers_502_when_the_inside_is_down(monkeypatch):
    def refuse(*_a, **_k):
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(forward, "connect_in", refuse)
    fwd = forward.Forward("collector", "test-ns", "203.0.113.10", 8000).start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with pytest.raises(urllib.error.HTTPError) as exc:
            opener.open(fwd.url + "/", timeout=5)
        assert exc.value.code == 502
    finally:
        fwd.stop()


def test_plain_summary_lines():
    snap = Snapshot(
        title="Desa · 5 s / 30 s",
        rows=[
            Row(
                "c1",
                "free",
                "02:00:00:00:00:01",
                "10.10.0.163",
                "free",
                "online",
                fmt_bytes(1_234_567),
                fmt_bytes(2_000),
                fmt_rate(2_050_000),
                "reads /",
            )
        ],
        footer=["province collector: 3 usage records"],
        checks=[(True, "x")],
    )
    out = io.StringIO()
    d = Display(lambda: snap, out=out, live_mode=False)
    d.begin()
    d.tick()
    d.event("c1 (free) ✓ accept")
    text = out.getvalue()
    assert "Desa · 5 s / 30 s" in text and "1.2 MB" in text and "2.05 Mbit/s" in text
    assert "c1 (free) ✓ accept" in text and "province collector" in text


FAKE_APT = """#!/bin/sh
PATH="$PATH:/usr/bin:/bin"
echo "$@" >> "{log}"
[ "$1" = install ] || exit 0
[ -n "{fail}" ] && {{ echo "E: Unable to locate package nftables"; exit 100; }}
for tool in ip nft tc iperf3 dnsmasq dhclient; do
  printf '#!/bin/sh\\n' > "{bin}/$tool"; chmod +x "{bin}/$tool"
done
"""


def fake_apt(tmp_path, monkeypatch, fail: bool = False):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "apt.log"
    apt = bindir / "apt-get"
    apt.write_text(FAKE_APT.format(log=log, bin=bindir, fail="yes" if fail else ""))
    apt.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    return log


def test_missing_packages_are_installed_after_saying_so(tmp_path, monkeypatch):
    log = fake_apt(tmp_path, monkeypatch)
    missing = packages.missing_packages()
    assert missing == ["dnsmasq-base", "iperf3", "iproute2", "isc-dhcp-client", "nftables"]
    said = io.StringIO()
    packages.install(missing, said)
    assert "installing the Debian packages it needs: dnsmasq-base iperf3" in said.getvalue()
    assert log.read_text().splitlines() == [
        "update -q",
        "install -y -q --no-install-recommends " + " ".join(missing),
    ]
    assert packages.missing_packages() == []


def test_a_failed_install_is_one_clear_line(tmp_path, monkeypatch):
    fake_apt(tmp_path, monkeypatch, fail=True)
    with pytest.raises(packages.InstallFailed) as exc:
        packages.install(packages.missing_packages(), io.StringIO())
    assert "Unable to locate package nftables" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_no_install_names_the_packages_and_exits_2(tmp_path, monkeypatch, capsys):
    log = fake_apt(tmp_path, monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["demo", "--no-install", "--duration", "30"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "apt-get install dnsmasq-base" in err
    assert not log.exists()  # nothing was run
