"""`hotspot portal run --tls`: the HTTPS listener for the configured hostname, on loopback with a
throw-away certificate (needs the openssl command; otherwise skipped)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest

from testsupport.testbed import stop_process_group, write_toml

HOST = "127.0.0.2"
NAME = "wifi.desa.test"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def test_https_listener_serves_the_api_for_its_name(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={NAME}",
            "-addext",
            f"subjectAltName=DNS:{NAME}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    config = write_toml(
        tmp_path / "hotspot.toml",
        {
            "network": {"lan_address": f"{HOST}/18"},
            "database": {"url": f"sqlite:///{tmp_path}/hotspot.db"},
            "control": {"socket": str(tmp_path / "none.sock")},
            "portal": {
                "user": "",
                "workers": 1,
                "hostname": NAME,
                "https_port": port,
                "tls_cert": str(cert),
                "tls_key": str(key),
                "secret_key_file": str(tmp_path / "s"),
                "voucher_key_file": str(tmp_path / "v"),
            },
        },
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hotspot_cli", "--config", str(config), "portal", "run", "--tls"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        ctx = ssl.create_default_context(cafile=str(cert))
        deadline = time.monotonic() + 30
        while True:
            try:
                raw = socket.create_connection((HOST, port), timeout=5)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(proc.stdout.read().decode() if proc.poll() is not None else "")
                time.sleep(0.1)
        with ctx.wrap_socket(raw, server_hostname=NAME) as tls:  # the certificate verifies
            tls.sendall(
                f"GET /api/captive HTTP/1.1\r\nHost: {NAME}:{port}\r\n"
                "Accept: application/captive+json\r\nConnection: close\r\n\r\n".encode()
            )
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"application/captive+json" in head
        api = json.loads(body)
        assert api["captive"] is True  # no gateway here: captive, and the URLs are right
        assert api["user-portal-url"] == f"https://{NAME}:{port}/"
    finally:
        stop_process_group(proc)
