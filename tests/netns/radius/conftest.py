"""A village whose accounts live on a real FreeRADIUS (issue #16): FreeRADIUS in the testbed's
"internet" namespace (the province's or an ISP's server, beyond the uplink), the real gateway
and the real portal in the gateway's namespace, phones on the LAN. Root only (the netns
tier skips without it); skipped with the reason when FreeRADIUS is not installed."""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.netns.helpers import GW_LAN_IP, PORTAL_PORT, splash_csrf_token, wait_until
from testsupport import testbed as tb
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP, Phone

from . import freeradius

SECRET = "rahasia-desa-radius-42"
PORTAL = f"http://{GW_LAN_IP}:{PORTAL_PORT}"
HERE = Path(__file__).parent
ROOT = HERE.parents[2]
DYNAUTH = str(HERE / "dynauth_send.py")
FAKE_SERVER = str(HERE / "fake_server.py")

USERS = [
    # An ISP's paket: 20/4 Mbit/s for an hour, a Class to echo in accounting.
    freeradius.User(
        "budi",
        "rahasia",
        {
            "Session-Timeout": 3600,
            "Idle-Timeout": 600,
            "WISPr-Bandwidth-Max-Down": 20_000_000,
            "WISPr-Bandwidth-Max-Up": 4_000_000,
            "Class": "0x6b656c61732d61",  # "kelas-a"
        },
    ),
    # A printed code (name = password): a few seconds only.
    freeradius.User("SINGKAT7", "SINGKAT7", {"Session-Timeout": 4}),
    # A data package: 1 MB.
    freeradius.User(
        "kuota",
        "kuota",
        {"ChilliSpot-Max-Total-Octets": 1_000_000, "WISPr-Bandwidth-Max-Down": 20_000_000},
    ),
]


@pytest.fixture(autouse=True)
def _needs_freeradius():
    why = freeradius.available()
    if why:
        pytest.skip(why)


@dataclass
class RadiusServer:
    bed: tb.Testbed
    conf: Path
    db: Path
    log: Path
    procs: list[Any] = field(default_factory=list)

    def start(self) -> RadiusServer:
        self.procs.append(
            self.bed.popen(
                self.bed.up,
                freeradius.BINARY,
                "-f",
                "-X",
                "-d",
                str(self.conf),
                log_path=self.log,
            )
        )
        wait_until(
            lambda: "Ready to process requests" in self.log.read_text(errors="replace"),
            15,
            what="freeradius ready",
        )
        return self

    def stop(self) -> None:
        for proc in self.procs:
            tb.stop_process_group(proc)
        self.procs.clear()

    def rows(self) -> list[dict[str, Any]]:
        return freeradius.accounting_rows(self.db)

    def row(self, acct_session_id: str) -> dict[str, Any] | None:
        return next((r for r in self.rows() if r["acctsessionid"] == acct_session_id), None)

    def received(self) -> list[tuple[str, str, int]]:
        """(Acct-Session-Id, Acct-Status-Type, Acct-Delay-Time) of every Accounting-Request,
        in the order FreeRADIUS received them (from its -X log)."""
        out = []
        for block in self.log.read_text(errors="replace").split("Received Accounting-Request")[1:]:
            head = block[:3000]
            sid = re.search(r'Acct-Session-Id = "([^"]+)"', head)
            status = re.search(r"Acct-Status-Type = (\S+)", head)
            delay = re.search(r"Acct-Delay-Time = (\d+)", head)
            if sid and status:
                out.append((sid.group(1), status.group(1), int(delay.group(1)) if delay else 0))
        return out


def radius_server_for(bed: tb.Testbed, workdir: Path) -> RadiusServer:
    """FreeRADIUS for ``bed`` (not started yet): its configuration rendered and checked in
    ``workdir``, listening on the upstream's address, the gateway's uplink its client with
    :data:`SECRET`, :data:`USERS` its accounts. The browser tier uses it too."""
    conf = workdir / "freeradius"
    db = freeradius.render(conf, listen=UPSTREAM_IP, clients={WAN_GW_IP: SECRET}, users=USERS)
    freeradius.check(conf)
    return RadiusServer(bed, conf, db, workdir / "freeradius.log")


@pytest.fixture
def radius_server(testbed, tmp_path):
    server = radius_server_for(testbed, tmp_path)
    yield server.start()
    server.stop()


def radius_settings(workdir: Path, **radius: Any) -> dict[str, Any]:
    """The ``[radius]`` table of a gateway that asks :func:`radius_server_for`'s FreeRADIUS
    (its secret file written into ``workdir``); ``radius`` adds to it or replaces keys."""
    secret_file = workdir / "radius.secret"
    secret_file.write_text(SECRET + "\n")
    os.chmod(secret_file, 0o600)
    return {
        "enabled": True,
        "servers": [UPSTREAM_IP],
        "secret_file": str(secret_file),
        "timeout_seconds": 1.0,
        "attempts": 2,
        "interim_seconds": 10,
        "nas_identifier": "desa-uji",
        **radius,
    }


def start_village(gateway_factory, testbed, tmp_path, radius: dict[str, Any]):
    gw = gateway_factory(
        {
            "portal": {
                "user": "",
                "workers": 2,
                "secret_key_file": str(tmp_path / "portal.secret"),
                "voucher_key_file": str(tmp_path / "voucher.key"),
            },
            "radius": radius_settings(tmp_path, **radius),
        }
    )
    testbed.popen(
        testbed.gw,
        sys.executable,
        "-m",
        "hotspot_cli",
        "--config",
        str(gw.config_path),
        "portal",
        "run",
        log_path=tmp_path / "portal.log",
    )
    try:
        testbed.wait_port(testbed.gw, GW_LAN_IP, PORTAL_PORT, timeout=30)
    except Exception:  # noqa: BLE001 - any failure to start: show the portal's log
        raise RuntimeError((tmp_path / "portal.log").read_text()) from None
    return gw


@pytest.fixture
def village(gateway_factory, upstream, testbed, tmp_path, radius_server):
    return start_village(gateway_factory, testbed, tmp_path, {})


def login(bed: tb.Testbed, phone: Phone, jar: str, username: str, password: str = ""):
    """Open the splash (for its CSRF token), then log in with an account: (status, body,
    headers)."""
    token = splash_csrf_token(bed, phone, jar)
    out = bed.run(
        phone.ns,
        "curl",
        "-s",
        "-m",
        "20",
        "-c",
        jar,
        "-b",
        jar,
        "-D",
        "-",
        "--data-urlencode",
        f"csrf_token={token}",
        "--data-urlencode",
        f"username={username}",
        "--data-urlencode",
        f"password={password}",
        PORTAL + "/radius",
        check=False,
    )
    head, _, body = out.stdout.replace("\r\n", "\n").partition("\n\n")
    status = int(head.split()[1]) if head.startswith("HTTP/") else 0
    return status, body, head


def dynauth(
    bed: tb.Testbed,
    kind: str,
    attrs: dict[str, Any],
    *,
    secret: str = SECRET,
    source: str = UPSTREAM_IP,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A CoA- or Disconnect-Request from the RADIUS server's address to the gateway's."""
    import json

    out = bed.run(
        bed.up,
        sys.executable,
        DYNAUTH,
        WAN_GW_IP,
        "3799",
        secret,
        kind,
        json.dumps(attrs),
        "--source",
        source,
        *extra,
    )
    return json.loads(out.stdout)
