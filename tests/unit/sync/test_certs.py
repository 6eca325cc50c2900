"""Certificates through the collector in one process (issue #15, item 4): the collector's
endpoints (Flask test client, SQLite), its worker with a stand-in CA (a local CA signing the
CSR: the real ACME order is tests/netns/certs/), the agent's CertKeeper; and the pure parts
(hotspot/certs.py). The abuse cases: another gateway's name, a foreign SAN, an unsigned or
forged request, a CA answer for another key, two collectors at once, a power cut between the
key and the certificate (and between the certificate and the key)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.orm import Session

from collector import config as collector_config
from collector.app import create_app
from collector.certs import CERT_PATH, REQUEST_PATH, issue_pending
from collector.models import CertState, GatewayCertificate
from hotspot import certs as C
from hotspot.db import open_database
from sync.certs import CertKeeper
from sync.certs import status as cert_status
from sync.outbox import Outbox
from tests.unit.collector.helpers import register
from tests.unit.sync.cert_helpers import ZONE, ClientLink, gateway_config

SECRET_A = "a-secret-" + "a" * 40
SECRET_B = "b-secret-" + "b" * 40
NOW = dt.datetime.now(dt.UTC).replace(tzinfo=None)


class LocalCA:
    """A root and an intermediate; ``issue(csr)`` signs what the CSR asks (as a CA would after
    the DNS-01 check), ``names``/``key`` override it (a misbehaving CA)."""

    def __init__(self) -> None:
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._cert("root", self.root_key.public_key(), self.root_key, "root", True)
        self.inter_key = ec.generate_private_key(ec.SECP256R1())
        self.inter = self._cert("inter", self.inter_key.public_key(), self.root_key, "root", True)
        self.calls = 0
        self.names: list[str] | None = None
        self.lifetime = dt.timedelta(days=90)

    def _cert(self, cn, public, signer, issuer_cn, ca, names=(), lifetime=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(minutes=1))
            .not_valid_after(NOW + (lifetime or dt.timedelta(days=3650)))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            b = b.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
            )
        return b.sign(signer, hashes.SHA256())

    def issue(self, csr_pem: bytes) -> str:
        self.calls += 1
        csr = x509.load_pem_x509_csr(csr_pem)
        names = self.names or C.dns_names(csr)
        leaf = self._cert(
            names[0], csr.public_key(), self.inter_key, "inter", False, names, self.lifetime
        )
        return b"".join(
            c.public_bytes(serialization.Encoding.PEM) for c in (leaf, self.inter)
        ).decode()


@pytest.fixture
def ca():
    return LocalCA()


@pytest.fixture
def capp(tmp_path):
    cfg = collector_config.load(
        overrides={
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "dashboard_public": True,
            },
            "acme": {
                "directory_url": "https://acme.invalid/dir",
                "zone": ZONE,
                "dns_server": "127.0.0.1:53",
                "tsig_key_name": "k",
            },
        }
    )
    app = create_app(cfg)
    register(app, "desa-a", SECRET_A)
    register(app, "desa-b", SECRET_B)
    yield app
    app.extensions["collector_db"].dispose()


def keeper(tmp_path, app, gateway_id="desa-a", secret=SECRET_A, clock=None):
    link = ClientLink(app.test_client())
    cfg = gateway_config(tmp_path, gateway_id, secret)
    k = CertKeeper(cfg, Outbox(cfg, open_database(cfg.database.url)), link, link)
    if clock is not None:
        k.clock = clock
    return k, link


def run_worker(app, ca):
    return issue_pending(app.extensions["collector_db"], app.config["COLLECTOR"].acme, ca.issue)


def csr_for(names, key=None):
    key = key or C.new_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# -- the flow ---------------------------------------------------------------------------------


def test_requested_issued_installed_then_nothing_to_do(tmp_path, capp, ca):
    k, link = keeper(tmp_path, capp)
    assert cert_status(k.config)["state"] == "none"
    assert k.step() == "pending"
    assert k.step() == "pending"  # the same CSR again: no second order
    assert (k.folder / C.NEXT_KEY_FILE).stat().st_mode & 0o777 == 0o600
    assert run_worker(capp, ca)["issued"] == ["desa-a"] and ca.calls == 1
    assert run_worker(capp, ca)["issued"] == []  # idempotent
    assert k.step() == "installed"
    assert (k.folder / C.KEY_FILE).stat().st_mode & 0o777 == 0o640
    assert cert_status(k.config)["state"] == "valid"
    assert k.step() == "valid"
    key = (k.folder / C.KEY_FILE).read_bytes()
    assert all(key not in body for body in link.bodies)


def test_conditional_fetch_answers_304(tmp_path, capp, ca):
    k, link = keeper(tmp_path, capp)
    k.step()
    run_worker(capp, ca)
    client = capp.test_client()
    headers = k._headers(b"")
    first = client.get(CERT_PATH, headers=headers)
    assert first.status_code == 200 and first.headers["ETag"]
    again = client.get(
        CERT_PATH, headers={**k._headers(b""), "If-None-Match": first.headers["ETag"]}
    )
    assert again.status_code == 304 and again.get_data() == b""


# -- abuse ------------------------------------------------------------------------------------


def post_csr(app, k, csr):
    return app.test_client().post(REQUEST_PATH, data=csr, headers=k._headers(csr))


def test_a_gateway_asking_for_another_gateways_name_is_refused(tmp_path, capp, ca):
    b, _ = keeper(tmp_path, capp, "desa-b", SECRET_B)
    r = post_csr(capp, b, csr_for([f"desa-a.{ZONE}"]))
    assert r.status_code == 400 and r.get_json()["error"] == "bad-csr"
    with Session(capp.extensions["collector_db"]) as s:
        assert s.get(GatewayCertificate, "desa-b") is None
        assert s.get(GatewayCertificate, "desa-a") is None


@pytest.mark.parametrize(
    "names",
    [
        [f"desa-b.{ZONE}", f"desa-a.{ZONE}"],
        [f"desa-b.{ZONE}", "bank.example.com"],
        [f"desa-b.{ZONE}", f"*.{ZONE}"],
        [f"*.desa-b.{ZONE}"],
        ["desa-b.wifi.other-province.go.id"],
    ],
)
def test_a_csr_with_a_foreign_san_is_refused(tmp_path, capp, names):
    b, _ = keeper(tmp_path, capp, "desa-b", SECRET_B)
    r = post_csr(capp, b, csr_for(names))
    assert r.status_code == 400 and r.get_json()["error"] == "bad-csr"


def test_unsigned_and_forged_requests_get_nothing(tmp_path, capp, ca):
    a, _ = keeper(tmp_path, capp)
    a.step()
    run_worker(capp, ca)
    client = capp.test_client()
    csr = csr_for([f"desa-a.{ZONE}"])
    assert client.post(REQUEST_PATH, data=csr).status_code == 401
    assert client.get(CERT_PATH).status_code == 401
    forged, _ = keeper(tmp_path, capp, "desa-a", "not-the-secret-" + "x" * 40)
    assert post_csr(capp, forged, csr).status_code == 401
    r = client.get(CERT_PATH, headers=forged._headers(b""))
    assert r.status_code == 401 and b"CERTIFICATE" not in r.get_data()
    # signed over another body: the CSR swapped on the way
    headers = a._headers(b"something else")
    assert client.post(REQUEST_PATH, data=csr, headers=headers).status_code == 401


def test_garbage_instead_of_a_csr_is_a_clear_refusal(tmp_path, capp):
    a, _ = keeper(tmp_path, capp)
    for body in (b"", b"hello", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", b"x" * 20000):
        r = post_csr(capp, a, body)
        assert r.status_code in (400, 413), body[:20]


def test_a_ca_answer_for_other_names_is_not_served(tmp_path, capp, ca):
    a, _ = keeper(tmp_path, capp)
    a.step()
    ca.names = [f"desa-a.{ZONE}", "bank.example.com"]
    report = run_worker(capp, ca)
    assert report["issued"] == [] and report["failed"]
    with Session(capp.extensions["collector_db"]) as s:
        row = s.get(GatewayCertificate, "desa-a")
        assert row.state == CertState.FAILED and row.chain is None
    assert a.step(force=True) == "pending"
    assert not (a.folder / C.CERT_FILE).exists()


def test_two_collectors_at_once_order_once(tmp_path, capp, ca):
    a, _ = keeper(tmp_path, capp)
    a.step()
    gate = threading.Barrier(2)
    slow_calls = []

    def slow_issue(csr: bytes) -> str:
        slow_calls.append(1)
        return ca.issue(csr)

    def worker():
        gate.wait()
        issue_pending(capp.extensions["collector_db"], capp.config["COLLECTOR"].acme, slow_issue)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(slow_calls) == 1
    assert a.step() == "installed"


# -- power cuts and renewal -------------------------------------------------------------------


def test_a_power_cut_between_the_key_and_the_certificate(tmp_path, capp, ca):
    a, _ = keeper(tmp_path, capp)
    assert a.step() == "pending"
    key_before = (a.folder / C.NEXT_KEY_FILE).read_bytes()
    # ... the power goes; at the restart the same key (and so the same CSR) is used.
    a2, _ = keeper(tmp_path, capp)
    assert a2.step(force=True) == "pending"
    assert (a2.folder / C.NEXT_KEY_FILE).read_bytes() == key_before
    assert run_worker(capp, ca)["issued"] == ["desa-a"] and ca.calls == 1
    assert a2.step() == "installed"


def test_a_power_cut_between_the_certificate_and_the_key_falls_back_then_mends(
    tmp_path, capp, ca, monkeypatch
):
    a, _ = keeper(tmp_path, capp)
    a.step()
    run_worker(capp, ca)
    real = C.write_atomically

    def cut_after_the_certificate(path, data, mode=0o600):
        real(path, data, mode)
        if path.name == C.CERT_FILE:
            raise OSError("power cut")

    monkeypatch.setattr(C, "write_atomically", cut_after_the_certificate)
    assert a.step() == "failed"
    monkeypatch.setattr(C, "write_atomically", real)
    # cert.pem without its key: not used (plain HTTP), and said so
    assert C.usable(a.folder, a.name, NOW) is None
    assert cert_status(a.config)["state"] == "none"
    assert a.step(force=True) == "installed"
    assert C.usable(a.folder, a.name, NOW) is not None


def test_renewal_keeps_the_old_pair_until_the_new_one_is_complete(tmp_path, capp, ca):
    clock = [NOW]
    a, link = keeper(tmp_path, capp, clock=lambda: clock[0])
    a.step()
    run_worker(capp, ca)
    assert a.step() == "installed"
    first = C.installed(a.folder, a.name, NOW)
    clock[0] = first.renew_at + dt.timedelta(seconds=1)
    assert clock[0] < first.not_after
    assert a.step() == "pending"
    # While the new one is being issued, the collector still serves the old chain: it is
    # not taken for the new key, and the pair in force stays.
    assert a.step(force=True) == "pending"
    assert C.installed(a.folder, a.name, NOW).serial == first.serial
    link.offline = True
    assert a.step(force=True) == "failed"
    link.offline = False
    run_worker(capp, ca)
    clock[0] = NOW + dt.timedelta(days=1)
    assert a.step(force=True) == "installed"
    assert C.installed(a.folder, a.name, NOW).serial != first.serial


def test_backoff_grows_and_is_capped(tmp_path, capp):
    clock = [NOW]
    a, link = keeper(tmp_path, capp, clock=lambda: clock[0])
    link.offline = True
    delays = []
    for _ in range(12):
        assert a.step() == "failed"
        nxt = dt.datetime.fromisoformat(a.outbox.get_state("cert_next_try"))
        delays.append((nxt - clock[0]).total_seconds())
        assert a.step() == "waiting"
        clock[0] = nxt
    assert delays[0] == 30 and delays[1] == 60 and max(delays) == 3600


# -- pure parts -------------------------------------------------------------------------------


def test_renewal_is_due_at_two_thirds_or_30_days_before_the_end_not_before_half():
    start = dt.datetime(2026, 1, 1)
    assert C.renew_at(start, start + dt.timedelta(days=90)) == start + dt.timedelta(days=60)
    year = C.renew_at(start, start + dt.timedelta(days=365))
    assert year == start + dt.timedelta(days=365) * 2 / 3
    five_years = C.renew_at(start, start + dt.timedelta(days=1825))
    assert five_years == start + dt.timedelta(days=1825) * 2 / 3
    # 30 days before the end comes first when the lifetime is under 90 days, but never
    # before half of it (six-day certificates)
    assert C.renew_at(start, start + dt.timedelta(days=75)) == start + dt.timedelta(days=45)
    assert C.renew_at(start, start + dt.timedelta(days=6)) == start + dt.timedelta(days=3)


def test_names_and_zones():
    assert C.name_for("desa-a", "Wifi.Jambiprov.go.id.") == "desa-a.wifi.jambiprov.go.id"
    for bad in ("desa_a", "desa.a", "-desa", "Desa A"):
        with pytest.raises(C.CertError):
            C.name_for(bad, ZONE)
    for bad in ("", "com", "wifi..jambi", "wifi jambi.go.id"):
        with pytest.raises(C.CertError):
            C.check_zone(bad)


def test_a_chain_for_another_key_or_name_or_out_of_date_is_refused(ca):
    key, other = C.new_key(), C.new_key()
    name = f"desa-a.{ZONE}"
    chain = ca.issue(C.make_csr(key, name)).encode()
    assert C.check_chain(chain, key, name, NOW).name == name
    with pytest.raises(C.CertError, match="key"):
        C.check_chain(chain, other, name, NOW)
    with pytest.raises(C.CertError, match="name"):
        C.check_chain(ca.issue(C.make_csr(key, f"desa-b.{ZONE}")).encode(), key, name, NOW)
    with pytest.raises(C.CertError, match="valid"):
        C.check_chain(chain, key, name, NOW + dt.timedelta(days=91))
    leaf_only = chain.split(b"-----END CERTIFICATE-----\n")[0] + b"-----END CERTIFICATE-----\n"
    with pytest.raises(C.CertError, match="intermediate"):
        C.check_chain(leaf_only, key, name, NOW)
    stranger = LocalCA()
    broken = leaf_only + stranger.inter.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(C.CertError, match="broken"):
        C.check_chain(broken, key, name, NOW)
    for junk in (b"", b"not pem", b"x" * (C.MAX_CHAIN_BYTES + 1)):
        with pytest.raises(C.CertError):
            C.check_chain(junk, key, name, NOW)


def test_keys_are_written_whole_with_mode_0600(tmp_path):
    path = tmp_path / "tls" / "key.pem"
    C.write_atomically(path, b"one")
    C.write_atomically(path, b"two")
    assert path.read_bytes() == b"two" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["key.pem"]
    (path.parent / "bad.pem").write_bytes(b"garbage")
    assert C.load_key(path.parent / "bad.pem") is None
    assert C.load_key(path.parent / "missing.pem") is None


# -- what the village sees --------------------------------------------------------------------


def rendered(cfg, now=None):
    """The gateway's live resolver file (gateway/dnsapply.py: the portal's name and option
    114 follow the certificate there, not in dnsmasq.conf) and the units provisioned."""
    from gateway import dnsapply
    from hotspot import dnsfilter
    from provisioning import render as R

    watch = dnsapply.CertWatch(cfg, clock=lambda: now or dt.datetime.now(dt.UTC))
    live = dnsfilter.render(dnsapply.settings_of(cfg, watch), [])
    return live[dnsfilter.MAIN_FILE], R.units(cfg)


def test_with_a_certificate_the_name_resolves_and_option_114_says_https(tmp_path, capp, ca):
    from hotspot import config as config_mod
    from provisioning import render as R

    a, _ = keeper(tmp_path, capp)
    name = f"desa-a.{ZONE}"
    cfg = config_mod.with_certificate(a.config)
    dnsmasq, units = rendered(cfg)
    assert cfg.portal.tls_cert == "" and "https://" not in dnsmasq  # today's behaviour
    # the unit is installed (the reload step starts it once a pair is in force), not run
    assert "hotspot-portal-tls" in units and "hotspot-portal-tls" not in R.services(cfg)
    a.step()
    run_worker(capp, ca)
    assert a.step() == "installed"
    cfg = config_mod.with_certificate(a.config)
    dnsmasq, units = rendered(cfg)
    assert cfg.portal.hostname == name and cfg.portal.tls_key.endswith("key.pem")
    assert f'dhcp-option=114,"https://{name}/api/captive"' in dnsmasq
    assert f"host-record={name},10.10.0.1" in dnsmasq
    assert "hotspot-portal-tls" in units
    # expired: back to plain HTTP
    later_now = NOW + dt.timedelta(days=91)
    later = config_mod.with_certificate(a.config, later_now)
    assert later.portal.tls_cert == "" and "https://" not in rendered(later, later_now)[0]
    # the configuration loaded while it was valid says the same once it expired
    assert "https://" not in rendered(cfg, later_now)[0]


def test_the_dashboard_says_which_certificate_is_in_force(tmp_path, capp, ca):
    client = capp.test_client()
    page = client.get("/village/desa-a?lang=en").get_data(as_text=True)
    assert "HTTPS certificate" in page and "none yet (plain HTTP)" in page
    a, _ = keeper(tmp_path, capp)
    a.step()
    run_worker(capp, ca)
    page = client.get("/village/desa-a?lang=en").get_data(as_text=True)
    assert f"desa-a.{ZONE}: valid until" in page


# -- the commands -----------------------------------------------------------------------------


def test_acme_commands_json_and_a_bad_file(tmp_path, capsys):
    import json

    from tests.unit.commands import hotspot_in_process

    config = tmp_path / "collector.toml"
    config.write_text(f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n')
    status = hotspot_in_process(capsys, config, "collector", "acme", "status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout) == []
    off = hotspot_in_process(capsys, config, "collector", "acme", "issue", "--json")
    assert off.returncode == 2 and len(off.stderr.strip().splitlines()) == 1
    config.write_text(
        f'[collector]\ndatabase_url = "sqlite:///{tmp_path}/c.db"\n'
        '[acme]\ndirectory_url = "https://ca.example/dir"\nzone = "not a zone"\n'
    )
    bad = hotspot_in_process(capsys, config, "collector", "acme", "status")
    assert bad.returncode == 2 and "acme.zone" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_sync_status_says_which_certificate(tmp_path, capsys, capp, ca):
    import json

    from tests.unit.commands import hotspot_in_process
    from testsupport.testbed import write_toml

    a, _ = keeper(tmp_path, capp)
    settings = {
        "database": {"url": a.config.database.url},
        "sync": {
            "upstream_url": "http://127.0.0.1:9",
            "gateway_id": "desa-a",
            "secret": SECRET_A,
            "cert_zone": ZONE,
            "cert_dir": a.config.sync.cert_dir,
        },
    }
    config = write_toml(tmp_path / "hotspot.toml", settings)
    out = hotspot_in_process(capsys, config, "sync", "status", "--json")
    assert json.loads(out.stdout)["certificate"]["state"] == "none"
    a.step()
    run_worker(capp, ca)
    a.step()
    out = hotspot_in_process(capsys, config, "sync", "status", "--json")
    cert = json.loads(out.stdout)["certificate"]
    assert cert["state"] == "valid" and cert["name"] == f"desa-a.{ZONE}"
    human = hotspot_in_process(capsys, config, "sync", "status")
    assert f"desa-a.{ZONE}: valid until" in human.stdout
