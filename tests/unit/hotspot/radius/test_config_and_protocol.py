"""[radius] in the configuration, the secret file, and the radius-authorize request."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError, UsageError
from hotspot.protocol import RadiusAuthorizeRequest, parse_request
from hotspot.radius.secret import read_secret


def load(**radius):
    return config_mod.load(overrides={"radius": radius})


def test_off_by_default():
    r = config_mod.load().radius
    assert r.enabled is False and r.servers == () and r.offline == "refuse"
    assert r.coa_port == 3799 and r.require_message_authenticator is True


def test_a_full_section():
    r = load(
        enabled=True,
        servers=["10.20.0.5", "10.20.0.6:11812"],
        secret_file="/etc/hotspot/radius.secret",
        offline="cached",
        data_limit="mikrotik",
        calling_station_id="pseudonym",
    ).radius
    assert [(s.host, s.port) for s in r.servers] == [("10.20.0.5", 1812), ("10.20.0.6", 11812)]
    assert r.nas_identifier == "Desa Sungai Duren"  # the village's name unless given
    assert (r.offline, r.data_limit, r.calling_station_id) == ("cached", "mikrotik", "pseudonym")


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"enabled": True}, "radius.servers"),
        ({"servers": ["radius.example"]}, "radius.servers[0]"),
        ({"servers": ["10.0.0.1:0"]}, "radius.servers[0]"),
        ({"servers": ["10.0.0.1:99999"]}, "radius.servers[0]"),
        ({"servers": [1812]}, "radius.servers[0]"),
        ({"servers": "10.0.0.1"}, "radius.servers"),
        ({"enabled": "yes"}, "radius.enabled"),
        ({"offline": "maybe"}, "radius.offline"),
        ({"data_limit": "coova"}, "radius.data_limit"),
        ({"calling_station_id": "imei"}, "radius.calling_station_id"),
        ({"enabled": True, "servers": ["10.0.0.1"], "tier": "gold"}, "radius.tier"),
        (
            {"enabled": True, "servers": ["10.0.0.1"], "secret_file": "radius.secret"},
            "radius.secret_file",
        ),
        ({"timeout_seconds": 0}, "radius.timeout_seconds"),
        ({"interim_seconds": 5}, "radius.interim_seconds"),
        ({"coa_port": 70000}, "radius.coa_port"),
        ({"coa_listen": "any"}, "radius.coa_listen"),
        ({"nas_ip_address": "10.0.0"}, "radius.nas_ip_address"),
        ({"secret": "in-the-toml"}, "radius.secret"),
    ],
)
def test_bad_values_name_their_key(section, key):
    with pytest.raises(ConfigError) as err:
        load(**section)
    assert str(err.value).startswith(key + ":")


def test_the_secret_file(tmp_path):
    path = tmp_path / "radius.secret"
    path.write_text("  rahasia-desa \n")
    os.chmod(path, 0o600)
    assert read_secret(str(path)) == b"rahasia-desa"
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="must not be readable by others"):
        read_secret(str(path))
    os.chmod(path, 0o640)
    assert read_secret(str(path)) == b"rahasia-desa"
    path.write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_secret(str(path))
    path.write_text("a\nb\n")
    with pytest.raises(ConfigError, match="one line"):
        read_secret(str(path))
    with pytest.raises(ConfigError, match="not found"):
        read_secret(str(tmp_path / "missing"))


def test_radius_authorize_round_trip():
    req = RadiusAuthorizeRequest(
        ip="10.10.0.11",
        username="budi",
        tier="premium",
        expires_at=dt.datetime(2026, 12, 1, 3, 0),
        idle_minutes=10,
        down_kbps=2000,
        up_kbps=500,
        bytes_limit=10**9,
        classes="6b656c6173,01",
        interim_seconds=300,
        offline=1,
    )
    assert parse_request(req.to_wire()) == req


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ip": None}, "ip"),
        ({"username": None}, "username"),
        ({"username": "x" * 254}, "username"),
        ({"down_kbps": 0}, "down_kbps"),
        ({"down_kbps": 10**9}, "down_kbps"),
        ({"classes": "ZZ"}, "classes"),
        ({"classes": "abc"}, "classes"),
        ({"classes": "ab,,cd"}, "classes"),
        ({"interim_seconds": 1}, "interim_seconds"),
        ({"offline": True}, "offline"),
        ({"mac": "02:00:00:00:00:01"}, "mac"),
    ],
)
def test_radius_authorize_refusals_name_the_field(change, field):
    wire = {"op": "radius-authorize", "ip": "10.10.0.11", "username": "budi", "tier": "premium"}
    wire.update(change)
    wire = {k: v for k, v in wire.items() if v is not None}
    with pytest.raises(UsageError) as err:
        parse_request(wire)
    assert err.value.message.startswith(field + ":")
