"""The alert e-mail over STARTTLS to a real SMTP server (aiosmtpd with a certificate of a
test CA, refusing mail before STARTTLS): delivered when the CA is trusted; kept for a retry,
not sent in clear, when STARTTLS is off or the certificate is not trusted."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest

from collector import alerts as al
from collector import config as collector_config
from collector.models import AlertKind, NotifyEvent
from tests.integration.test_alerts_postgres import SmtpServer, _aiosmtpd_missing

NOW = dt.datetime(2026, 11, 30, 3, 0)


def make_ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Uji CA",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


class TlsSmtpServer(SmtpServer):
    def __init__(self, base: Path, cert: Path, key: Path):
        super().__init__(base)
        self.cert, self.key = cert, key

    def start(self) -> None:
        self.extra = ["--tlscert", str(self.cert), "--tlskey", str(self.key)]
        super().start()


def notice() -> al.Notice:
    return al.Notice(
        id=1,
        event=NotifyEvent.RAISED,
        kind=AlertKind.DISK,
        critical=False,
        gateway_id="desa-uji",
        village="Desa Uji",
        kabupaten=None,
        kecamatan=None,
        first_seen_at=NOW,
        raised_at=NOW,
        cleared_at=None,
        detail="disk 95 %",
    )


def test_starttls(tmp_path, monkeypatch):
    if _aiosmtpd_missing():
        pytest.skip("python3-aiosmtpd is not installed (.ci/run installs it)")
    ca, cert, key = make_ca_and_cert(tmp_path)
    smtp = TlsSmtpServer(tmp_path, cert, key)
    smtp.start()
    try:

        def cfg(starttls: bool):
            return collector_config.load(
                overrides={
                    "alerts": {
                        "smtp_host": "127.0.0.1",
                        "smtp_port": smtp.port,
                        "smtp_starttls": starttls,
                        "mail_to": ["noc@diskominfo.example"],
                        "timeout_seconds": 5,
                    }
                }
            )

        # Not trusted (the system's CAs only): refused before anything is sent.
        with pytest.raises(al.DeliveryError, match="certificate"):
            al.send_email([notice()], cfg(True), False)
        # Without STARTTLS the server refuses the mail: kept for a retry, never in clear.
        with pytest.raises(al.DeliveryError):
            al.send_email([notice()], cfg(False), False)
        assert smtp.messages() == []
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))  # the province's own CA, trusted
        al.send_email([notice()], cfg(True), False)
        (msg,) = smtp.messages()
        assert "Desa Uji" in msg["Subject"]
    finally:
        smtp.stop()
