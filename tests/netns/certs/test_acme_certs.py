"""Certificates through the collector, end to end with Debian's real components (issue #15,
item 4): ``knotd`` authoritative for the province's zone taking RFC 2136 updates with TSIG,
``pebble`` as the ACME CA checking DNS-01 at that knotd, both in a namespace of their own
(testsupport/acme_ca.py). The collector's endpoints run in this process (Flask test client,
SQLite); its ACME worker runs for real in the namespace (``hotspot collector acme issue``,
the command the province runs or the server's thread runs every ``poll_seconds``); the
gateway's side is the sync agent's :class:`sync.certs.CertKeeper`.

A CSR → certificate installed → served over HTTPS under ``<gateway-id>.<zone>`` and verified
by curl against pebble's root; renewal with a new key before expiry (a clock moved ahead)
and after expiry (the fallback meanwhile); a tampered chain; the CA unreachable.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector.app import create_app
from collector.certs import issue_pending
from collector.models import CertState, GatewayCertificate
from hotspot import certs as certs_mod
from hotspot.db import open_database
from hotspot.timeutil import utcnow
from sync.certs import CertKeeper
from sync.certs import status as cert_status
from sync.outbox import Outbox
from tests.netns.helpers import wait_until
from tests.unit.collector.helpers import register
from tests.unit.sync.cert_helpers import ZONE, ClientLink, gateway_config
from testsupport.acme_ca import AcmeWorld, tools_missing
from testsupport.testbed import write_toml

pytestmark = pytest.mark.skipif(
    bool(tools_missing()), reason=f"needs {', '.join(tools_missing())} (apt: pebble knot)"
)

REPO = Path(__file__).resolve().parents[3]
SECRET_A = "a-secret-" + "a" * 40
SECRET_B = "b-secret-" + "b" * 40


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("acme-world")
    w = AcmeWorld(folder, f"hac-{os.getpid()}-ca", ZONE)
    try:
        yield w.start()
    finally:
        w.stop()


@pytest.fixture
def province(tmp_path, world):
    """The collector: its file (for the worker in the namespace) and its app."""
    data = {
        "collector": {"database_url": f"sqlite:///{tmp_path}/collector.db"},
        "acme": world.acme_settings(tmp_path / "acme-account.key"),
    }
    path = write_toml(tmp_path / "collector.toml", data)
    app = create_app(collector_config.load(path))
    register(app, "desa-a", SECRET_A)
    register(app, "desa-b", SECRET_B)
    yield path, app
    app.extensions["collector_db"].dispose()


def acme_issue(world: AcmeWorld, config: Path) -> dict:
    """``hotspot collector acme issue --json`` in the CA's namespace."""
    out = subprocess.run(
        world.in_ns(
            sys.executable,
            "-m",
            "hotspot_cli",
            "--config",
            str(config),
            "collector",
            "acme",
            "issue",
            "--json",
        ),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
    )
    assert out.stdout, out.stderr
    return json.loads(out.stdout)


def issue_here(world: AcmeWorld, app, config: Path) -> dict:
    """The worker's run in this process, on a thread inside the CA's namespace (the command
    costs seconds of imports on a loaded machine)."""
    cfg = collector_config.load(config)
    engine = app.extensions["collector_db"]
    return world.run_inside(lambda: issue_pending(engine, cfg.acme))


def keeper_for(tmp_path, link, gateway_id="desa-a", secret=SECRET_A, clock=utcnow):
    cfg = gateway_config(tmp_path, gateway_id, secret)
    db = open_database(cfg.database.url)
    return CertKeeper(cfg, Outbox(cfg, db), link, link, clock=clock)


def served_over_https(world: AcmeWorld, folder: Path, name: str, tmp_path: Path) -> str:
    """Serve ``/api/captive`` with the installed pair in the CA's namespace and fetch it
    with curl trusting only pebble's root, the name resolved to the server (as the
    gateway's dnsmasq answers it)."""
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(world.root_pem())
    server = subprocess.Popen(
        world.in_ns(
            sys.executable,
            "-c",
            "import http.server, ssl, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_GET(self):\n"
            "        body = b'{\"captive\": true}'\n"
            "        self.send_response(200)\n"
            "        self.send_header('Content-Type', 'application/captive+json')\n"
            "        self.end_headers(); self.wfile.write(body)\n"
            "    def log_message(self, *a): pass\n"
            "srv = http.server.HTTPServer(('127.0.0.1', 8443), H)\n"
            "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
            "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"
            "srv.socket = ctx.wrap_socket(srv.socket, server_side=True)\n"
            "srv.serve_forever()\n",
            str(folder / certs_mod.CERT_FILE),
            str(folder / certs_mod.KEY_FILE),
        )
    )
    try:

        def fetch() -> str:
            out = subprocess.run(
                world.in_ns(
                    "curl",
                    "-sS",
                    "--max-time",
                    "3",
                    "--cacert",
                    str(root),
                    "--resolve",
                    f"{name}:8443:127.0.0.1",
                    f"https://{name}:8443/api/captive",
                ),
                capture_output=True,
                text=True,
            )
            return out.stdout

        return wait_until(fetch, 10, 0.1, "the HTTPS answer")
    finally:
        server.terminate()
        server.wait(5)


def test_a_csr_becomes_a_certificate_served_under_the_gateways_name(world, province, tmp_path):
    config, app = province
    link = ClientLink(app.test_client())
    keeper = keeper_for(tmp_path, link)
    name = f"desa-a.{ZONE}"
    assert cert_status(keeper.config)["state"] == "none"  # the fallback says so
    assert keeper.step() == "pending"
    assert keeper.step() == "pending"  # asked again: the same CSR, nothing new
    report = acme_issue(world, config)
    assert report["issued"] == ["desa-a"], report
    assert keeper.step() == "installed"
    folder = keeper.folder
    assert (folder / certs_mod.KEY_FILE).stat().st_mode & 0o777 == 0o640
    assert not (folder / certs_mod.NEXT_KEY_FILE).exists()
    key_bytes = (folder / certs_mod.KEY_FILE).read_bytes()
    assert all(key_bytes not in body for body in link.bodies)  # the key never left
    st = cert_status(keeper.config)
    assert st["state"] == "valid" and st["name"] == name
    assert keeper.step() == "valid"
    assert json.loads(served_over_https(world, folder, name, tmp_path)) == {"captive": True}
    # The TXT record is gone from the zone once the order is done.
    kconf = str(world.folder / "knot" / "knot.conf")
    zone = subprocess.run(
        world.in_ns("knotc", "-c", kconf, "zone-read", ZONE), capture_output=True, text=True
    ).stdout
    assert "_acme-challenge" not in zone


def test_renewal_before_expiry_and_after_it_with_a_new_key(world, province, tmp_path):
    config, app = province
    link = ClientLink(app.test_client())
    clock = [utcnow()]
    keeper = keeper_for(tmp_path, link, clock=lambda: clock[0])
    keeper.step()
    issue_here(world, app, config)
    assert keeper.step() == "installed"
    first = certs_mod.installed(keeper.folder, keeper.name, clock[0])
    assert first is not None
    # Two thirds into its life or 30 days before its end: the renewal starts, the pair in
    # force stays served meanwhile.
    clock[0] = first.renew_at + dt.timedelta(minutes=1)
    assert keeper.step() == "pending"
    assert certs_mod.usable(keeper.folder, keeper.name, clock[0]).serial == first.serial
    issue_here(world, app, config)
    assert keeper.step() == "installed"
    second = certs_mod.installed(keeper.folder, keeper.name, clock[0])
    assert second.serial != first.serial
    # A long outage: the certificate expired meanwhile. The portal falls back (and says
    # so) until the new one is there.
    clock[0] = second.not_after + dt.timedelta(days=1)
    assert certs_mod.usable(keeper.folder, keeper.name, clock[0]) is None
    assert cert_status(keeper.config, clock[0])["state"] == "expired"
    link.offline = True
    assert keeper.step() == "failed"
    assert keeper.step() == "waiting"  # backing off, not hammering the uplink
    link.offline = False
    # (pebble issues for its own clock: the test's clock is put back for the check)
    clock[0] = utcnow()
    assert keeper.step(force=True) == "pending"
    issue_here(world, app, config)
    assert keeper.step(force=True) == "installed"


def test_a_tampered_chain_is_not_installed(world, province, tmp_path):
    config, app = province
    link = ClientLink(app.test_client())
    keeper = keeper_for(tmp_path, link)
    keeper.step()
    issue_here(world, app, config)

    def swap_the_leaf_for_the_intermediate(body: bytes) -> bytes:
        parts = body.split(b"-----END CERTIFICATE-----\n")
        return parts[1] + b"-----END CERTIFICATE-----\n" + body

    link.tamper = swap_the_leaf_for_the_intermediate
    assert keeper.step() == "failed"
    assert not (keeper.folder / certs_mod.CERT_FILE).exists()
    assert not (keeper.folder / certs_mod.KEY_FILE).exists()

    def flip_a_signature_byte(body: bytes) -> bytes:
        end = body.index(b"-----END CERTIFICATE-----")
        pos = end - 10
        return body[:pos] + (b"A" if body[pos : pos + 1] != b"A" else b"B") + body[pos + 1 :]

    link.tamper = flip_a_signature_byte
    assert keeper.step(force=True) == "failed"
    assert not (keeper.folder / certs_mod.CERT_FILE).exists()
    link.tamper = None
    assert keeper.step(force=True) == "installed"


def test_the_ca_unreachable_leaves_nothing_half_done(world, province, tmp_path):
    config, app = province
    link = ClientLink(app.test_client())
    keeper = keeper_for(tmp_path, link)
    assert keeper.step() == "pending"
    data = {
        "collector": {"database_url": f"sqlite:///{tmp_path}/collector.db"},
        "acme": {
            **world.acme_settings(tmp_path / "acme-account.key"),
            "directory_url": "https://127.0.0.1:1/dir",
        },
    }
    broken = write_toml(tmp_path / "collector-broken.toml", data)
    report = issue_here(world, app, broken)
    assert report["issued"] == [] and report["failed"][0]["gateway"] == "desa-a"
    with Session(app.extensions["collector_db"]) as s:
        row = s.get(GatewayCertificate, "desa-a")
        assert row.state == CertState.FAILED and row.chain is None and row.error
        assert row.next_attempt_at > utcnow()
    assert keeper.step(force=True) == "pending"  # still on its way; nothing installed
    assert not (keeper.folder / certs_mod.CERT_FILE).exists()
    # Its back-off over, the request goes through with the CA back.
    with Session(app.extensions["collector_db"]) as s, s.begin():
        s.execute(update(GatewayCertificate).values(next_attempt_at=utcnow()))
    assert issue_here(world, app, config)["issued"] == ["desa-a"]
    assert keeper.step() == "installed"
