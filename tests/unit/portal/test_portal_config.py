"""[portal] and [packages] configuration, `hotspot portal …`, gunicorn settings, translations."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError
from hotspot.httpworker import DeadlineThreadWorker
from hotspot_cli import main as cli
from portal import server
from portal.urls import PortalUrls


def test_defaults():
    cfg = config_mod.load()
    p = cfg.portal
    assert p.hostname == "" and not p.tls and p.user == "hotspot" and p.workers == 0
    assert p.voucher_key_file == "/etc/hotspot/voucher.key"
    assert cfg.packages == {}
    urls = PortalUrls.from_config(cfg)
    assert urls.captive_base == "http://10.10.0.1:8080"
    assert urls.api_url == "http://10.10.0.1:8080/api/captive"


def test_packages_from_the_file(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text(
        '[packages.harian]\nprice = 5000\ntier = "premium"\nhours = 24\n'
        'data_mb = 1000\n[packages.keluarga]\ntitle = "Paket Keluarga"\n'
        'price = 15000\ntier = "premium"\nhours = 24\ndevices = 3\nshelf_days = 90\n'
    )
    cfg = config_mod.load(path)
    h, k = cfg.packages["harian"], cfg.packages["keluarga"]
    assert (h.title, h.price, h.tier, h.hours, h.data_mb, h.devices, h.shelf_days) == (
        "harian",
        5000,
        "premium",
        24,
        1000,
        1,
        0,
    )
    assert (k.title, k.devices, k.shelf_days, k.data_mb) == ("Paket Keluarga", 3, 90, 0)


PKG = {"price": 5000, "tier": "premium", "hours": 24}


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"portal": {"hostname": "10.10.0.1"}}, "portal.hostname"),
        ({"portal": {"hostname": "bad_name!"}}, "portal.hostname"),
        ({"portal": {"hostname": 5}}, "portal.hostname"),
        ({"portal": {"tls_cert": "/etc/c.pem"}}, "portal.tls_key"),
        ({"portal": {"tls_key": "/etc/k.pem"}}, "portal.tls_cert"),
        ({"portal": {"tls_cert": "/c", "tls_key": "/k"}}, "portal.hostname"),
        ({"portal": {"hostname": "a.id", "tls_cert": "c.pem", "tls_key": "/k"}}, "portal.tls_cert"),
        ({"portal": {"https_port": 0}}, "portal.https_port"),
        ({"portal": {"contact": "x" * 201}}, "portal.contact"),
        ({"portal": {"terms": "bell\x07"}}, "portal.terms"),
        ({"portal": {"venue_info_url": "javascript:alert(1)"}}, "portal.venue_info_url"),
        ({"portal": {"user": "Root User"}}, "portal.user"),
        ({"portal": {"workers": 17}}, "portal.workers"),
        ({"portal": {"threads": 0}}, "portal.threads"),
        ({"portal": {"secret_key_file": "portal.secret"}}, "portal.secret_key_file"),
        ({"portal": {"voucher_key_file": ""}}, "portal.voucher_key_file"),
        ({"portal": {"max_body_bytes": 10}}, "portal.max_body_bytes"),
        ({"portal": {"voucher_attempts": 0}}, "portal.voucher_attempts"),
        ({"portal": {"voucher_cooldown_seconds": 0}}, "portal.voucher_cooldown_seconds"),
        ({"portal": {"colour": "green"}}, "portal.colour"),
        ({"packages": {"Harian": PKG}}, "packages.Harian"),
        ({"packages": {"harian": {"price": 5000, "tier": "premium"}}}, "packages.harian.hours"),
        ({"packages": {"harian": {**PKG, "tier": "gold"}}}, "packages.harian.tier"),
        ({"packages": {"harian": {**PKG, "price": -1}}}, "packages.harian.price"),
        ({"packages": {"harian": {**PKG, "price": "5000"}}}, "packages.harian.price"),
        ({"packages": {"harian": {**PKG, "hours": 0}}}, "packages.harian.hours"),
        ({"packages": {"harian": {**PKG, "data_mb": -5}}}, "packages.harian.data_mb"),
        ({"packages": {"harian": {**PKG, "devices": 0}}}, "packages.harian.devices"),
        ({"packages": {"harian": {**PKG, "shelf_days": 9999}}}, "packages.harian.shelf_days"),
        ({"packages": {"harian": {**PKG, "title": ""}}}, "packages.harian.title"),
        ({"packages": {"harian": {**PKG, "speed": 3}}}, "packages.harian.speed"),
        ({"packages": {"harian": 5}}, "packages.harian"),
    ],
)
def test_bad_values_name_their_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides=overrides)
    assert err.value.key == key
    assert str(err.value).startswith(key + ":") and "\n" not in str(err.value)


def test_portal_urls_with_a_hostname():
    cfg = config_mod.load(overrides={"portal": {"hostname": "WiFi.Desa.ID."}})
    urls = PortalUrls.from_config(cfg)
    assert cfg.portal.hostname == "wifi.desa.id"
    assert urls.api_url == "http://wifi.desa.id:8080/api/captive"
    assert urls.is_own("wifi.desa.id") and urls.is_own("WIFI.desa.id:8080")
    assert urls.is_own("10.10.0.1") and urls.is_own("10.10.0.1:8080")
    assert not urls.is_own("evil.example") and not urls.is_own("10.10.0.1:9999")
    tls = config_mod.load(
        overrides={
            "portal": {
                "hostname": "wifi.desa.id",
                "https_port": 8443,
                "tls_cert": "/c",
                "tls_key": "/k",
            }
        }
    )
    assert PortalUrls.from_config(tls).user_portal_url == "https://wifi.desa.id:8443/"


def test_cli_portal_urls(capsys):
    assert cli.main(["portal", "urls", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dnsmasq"] == 'dhcp-option=114,"http://10.10.0.1:8080/api/captive"'
    assert data["captive_redirect"] == "http://10.10.0.1:8080/"
    assert cli.main(["portal", "run", "--tls"]) == 2  # no certificate configured
    assert "portal.tls_cert" in capsys.readouterr().err
    cli.build_parser().parse_args(["portal", "run", "--workers", "2", "--bind", "127.0.0.1:9"])


def test_gunicorn_settings():
    cfg = config_mod.load()
    opts = server.gunicorn_options(cfg)
    assert opts["bind"] == ["10.10.0.1:8080"]
    # gthread with a read deadline per request: slow clients are cut (slowloris).
    assert issubclass(opts["worker_class"], DeadlineThreadWorker) and opts["threads"] == 16
    assert opts["worker_class"].read_timeout == cfg.portal.read_timeout == 10
    # One phone's open sockets never fill a worker's threads.
    assert cfg.network.portal_conn_limit == 10 < cfg.portal.threads
    with pytest.raises(ConfigError, match="portal_conn_limit"):
        config_mod.load(overrides={"network": {"portal_conn_limit": 8}, "portal": {"threads": 8}})
    assert opts["accesslog"] is None  # no villager's URL is logged
    assert opts["secure_scheme_headers"] == {}  # no header may claim HTTPS
    assert opts["limit_request_fields"] <= 100
    assert server.worker_count(cfg, cores=1) == 2
    assert server.worker_count(cfg, cores=2) == 2
    assert server.worker_count(cfg, cores=4) == 4
    assert server.worker_count(cfg, cores=64) == 4
    tls = config_mod.load(
        overrides={
            "portal": {"hostname": "wifi.desa.id", "tls_cert": "/c", "tls_key": "/k", "workers": 1}
        }
    )
    opts = server.gunicorn_options(tls, tls=True)
    assert opts["bind"] == ["10.10.0.1:443"] and opts["certfile"] == "/c"
    assert opts["workers"] == 1


def test_secret_files_are_created_once_and_private(tmp_path):
    from hotspot.vouchers.keys import load_key

    path = tmp_path / "sub" / "voucher.key"
    a = load_key(path, create=True)
    assert load_key(path) == a and len(a) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    with pytest.raises(Exception, match="missing"):
        load_key(tmp_path / "none.key")


def test_a_new_key_file_is_fsynced_and_so_is_its_folder(monkeypatch, tmp_path):
    """A power cut right after the portal's first start must not lose the key (every
    voucher printed with it would be worthless): its data, then its name (the folder), are
    on the disk before it is used. The root tier cuts the power for real
    (tests/integration/test_power_cut.py)."""
    from hotspot.vouchers.keys import load_key

    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append("folder" if stat.S_ISDIR(st.st_mode) else f"file {st.st_ino}")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    path = tmp_path / "voucher.key"
    load_key(path, create=True)
    assert synced == [f"file {os.stat(path).st_ino}", "folder"]


def test_privileges_are_dropped_only_as_root(monkeypatch, tmp_path):
    cfg = config_mod.load(
        overrides={
            "portal": {
                "user": "nobody",
                "secret_key_file": str(tmp_path / "s"),
                "voucher_key_file": str(tmp_path / "v"),
            }
        }
    )
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))  # drop_privileges sets it
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert server.drop_privileges(cfg) is None
    calls = []
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    for name in ("setgroups", "setgid", "setuid", "chown"):
        monkeypatch.setattr(os, name, lambda *a, _n=name: calls.append(_n))
    user = server.drop_privileges(cfg)
    assert user.pw_name == "nobody"
    assert calls[-3:] == ["setgroups", "setgid", "setuid"]
    assert (tmp_path / "s").exists() and (tmp_path / "v").exists()
    missing = config_mod.load(overrides={"portal": {"user": "no-such-user-here"}})
    with pytest.raises(ConfigError, match="portal.user"):
        server.drop_privileges(missing)


def test_translations_are_complete_and_compiled():
    from portal import i18n

    assert i18n.check() == []


def test_create_app_from_the_environment_as_gunicorn_does(tmp_path, monkeypatch):
    """``gunicorn 'portal:create_app()'``: configuration from $HOTSPOT_CONFIG, the control
    socket and the database from it; no gateway running → a friendly 503, probes still 302."""
    from hotspot.db import open_database
    from portal import create_app
    from portal.state import state as portal_state
    from testsupport.testbed import write_toml

    url = f"sqlite:///{tmp_path}/h.db"
    open_database(url).dispose()
    path = write_toml(
        tmp_path / "h.toml",
        {
            "database": {"url": url},
            "control": {"socket": str(tmp_path / "none.sock")},
            "portal": {
                "secret_key_file": str(tmp_path / "s"),
                "voucher_key_file": str(tmp_path / "v"),
            },
            "packages": {"harian": {"price": 5000, "tier": "premium", "hours": 24}},
        },
    )
    monkeypatch.setenv("HOTSPOT_CONFIG", str(path))
    app = create_app()
    client = app.test_client()
    env = {"REMOTE_ADDR": "10.10.0.11"}
    assert client.get("/", base_url="http://10.10.0.1:8080", environ_base=env).status_code == 503
    assert client.get("/x", base_url="http://example.org", environ_base=env).status_code == 302
    state = portal_state(app)
    assert state.vouchers is None  # no voucher key file: vouchers off, the rest works
    assert [p.name for p in state.packages()] == ["harian"]  # written from the file
    with state.db.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
