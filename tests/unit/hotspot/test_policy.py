"""The province's signed policy, pure logic (hotspot/policy.py): signing and verification,
the abuse cases (a byte changed, another key, unsigned, another village's document, a replayed
older version, content that fails validation), merging of scopes, the overlay on the local
configuration, and the last good file across a power cut."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from hotspot import config as config_mod
from hotspot import policy
from hotspot.errors import ErrorCode
from hotspot.policy import PolicyRefused

GW = "desa-uji"
NOW = dt.datetime(2026, 11, 30, 3, 0)
KEY = policy.new_private_key()
PUB = policy.public_key_of(KEY)
GOOD = {
    "walled_garden": ["203.0.113.7"],
    "walled_garden_domains": ["belajar.id", "Kemkes.go.id."],
    "free_tier": {"down_kbps": 768, "daily_mb": 200},
    "announcements": [
        {
            "id": "vaksin-2026-12",
            "text_id": "Hari vaksinasi di puskesmas, Sabtu 5 Desember",
            "starts": "2026-11-30T00:00:00Z",
            "ends": "2026-12-06T00:00:00Z",
        }
    ],
    "ntp_servers": ["ntp.jambiprov.go.id"],
    "dns_blocklist": {"enabled": False},
}


def envelope(version=1, fields=None, gateway=GW, key=KEY):
    # Explicit fields are signed as they are (a mistake of the key's holder is signed too).
    fields = policy.validate_fields(GOOD) if fields is None else fields
    doc = policy.make_document(gateway, version, fields, {f: "province" for f in fields}, NOW)
    return policy.sign(key, doc)


def refused(code, fn, *args, **kw):
    with pytest.raises(PolicyRefused) as exc:
        fn(*args, **kw)
    assert exc.value.code is code, exc.value.message
    return exc.value.message


def test_a_signed_document_verifies_and_is_normalised():
    p = policy.verify(envelope(3), PUB, GW)
    assert p.version == 3 and p.gateway == GW
    assert p.fields["walled_garden_domains"] == ["belajar.id", "kemkes.go.id"]
    assert p.envelope["key_id"] == policy.key_id(PUB)
    assert [a["id"] for a in p.announcements(NOW)] == ["vaksin-2026-12"]
    assert p.announcements(dt.datetime(2026, 12, 7)) == []


@pytest.mark.parametrize("where", [0, 40, -3])
def test_one_byte_changed_is_refused(where):
    env = envelope()
    doc = bytearray(env["document"].encode())
    doc[where] ^= 0x01
    tampered = {**env, "document": doc.decode("latin-1")}
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, tampered, PUB, GW)


def test_a_rate_raised_in_transit_is_refused():
    env = envelope()
    tampered = {**env, "document": env["document"].replace('"down_kbps":768', '"down_kbps":769')}
    assert tampered["document"] != env["document"]
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, tampered, PUB, GW)


def test_signed_by_another_key_is_refused():
    other = policy.new_private_key()
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, envelope(key=other), PUB, GW)


def test_unsigned_or_malformed_signature_is_refused():
    env = envelope()
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, {**env, "signature": ""}, PUB, GW)
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, {"document": env["document"]}, PUB, GW)
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, {**env, "signature": "@@@"}, PUB, GW)


def test_another_villages_document_is_refused():
    msg = refused(ErrorCode.POLICY_SIGNATURE, policy.verify, envelope(gateway="desa-lain"), PUB, GW)
    assert "desa-lain" in msg


@pytest.mark.parametrize("version", [1, 4, 5])
def test_a_replayed_older_or_equal_version_is_refused(version):
    refused(ErrorCode.POLICY_REPLAY, policy.verify, envelope(version), PUB, GW, current=5)
    assert policy.verify(envelope(6), PUB, GW, current=5).version == 6


BAD_FIELDS = [
    ({"walled_garden_domains": ["belajar id"]}, "not a domain"),
    ({"walled_garden_domains": ["10.0.0.1"]}, "is an address"),
    ({"walled_garden_domains": ["localhost"]}, "not a domain"),
    ({"walled_garden_domains": ["a.id"] * 2}, "twice"),
    ({"walled_garden_domains": [f"d{i}.id" for i in range(257)]}, "at most 256"),
    ({"walled_garden": ["0.0.0.0/0"]}, "larger than a /16"),
    ({"walled_garden": ["127.0.0.1"]}, "not a host on the internet"),
    ({"walled_garden": ["not-an-ip"]}, "not an IPv4"),
    ({"free_tier": {"down_kbps": 10_000_000}}, "from 64 to 100000"),
    ({"free_tier": {"daily_mb": -1}}, "from 0 to 100000"),
    ({"free_tier": {"down_kbps": True}}, "whole number"),
    ({"free_tier": {"price": 0}}, "unknown keys"),
    ({"packages": {}}, "unknown policy fields"),
    ({"free_tier": {"schedule": [{"from": "25:00", "to": "05:00"}]}}, "must have"),
    (
        {
            "announcements": [
                {
                    "id": "x",
                    "text_id": "a",
                    "starts": "2026-12-02T00:00:00Z",
                    "ends": "2026-12-01T00:00:00Z",
                }
            ]
        },
        "after starts",
    ),
    (
        {
            "announcements": [
                {
                    "id": "x",
                    "text_id": "a\x1b[2J",
                    "starts": "2026-12-01T00:00:00Z",
                    "ends": "2026-12-02T00:00:00Z",
                }
            ]
        },
        "control characters",
    ),
    (
        {
            "announcements": [
                {
                    "id": "x",
                    "text_id": "a" * 281,
                    "starts": "2026-12-01T00:00:00Z",
                    "ends": "2026-12-02T00:00:00Z",
                }
            ]
        },
        "at most 280",
    ),
    (
        {
            "announcements": [
                {
                    "id": "X Y",
                    "text_id": "a",
                    "starts": "2026-12-01T00:00:00Z",
                    "ends": "2026-12-02T00:00:00Z",
                }
            ]
        },
        "a-z",
    ),
    ({"ntp_servers": ["ntp.id\nServer=evil"]}, "not a host"),
    ({"dns_blocklist": {"enabled": True, "sha256": "ab" * 32, "size": 1, "count": 1}}, "needed"),
    ({"dns_blocklist": {"enabled": True, "list": "x", "sha256": "AB" * 32}}, "hex"),
    ({"dns_blocklist": {"enabled": True, "list": "x", "sha256": "ab" * 32, "size": -1}}, "size"),
    ({"dns_blocklist": {"enabled": True, "list": "x", "count": 3}}, "go with sha256"),
    ({"dns_blocklist": {"enabled": "yes", "list": "x"}}, "true or false"),
]


@pytest.mark.parametrize(("fields", "says"), BAD_FIELDS)
def test_content_that_fails_validation_is_refused(fields, says):
    msg = refused(ErrorCode.POLICY_INVALID, policy.validate_fields, fields)
    assert says in msg
    # Signed or not, it is refused the same (the key's holder can make mistakes too).
    doc = policy.make_document(GW, 1, fields, {}, NOW)
    refused(ErrorCode.POLICY_INVALID, policy.verify, policy.sign(KEY, doc), PUB, GW)


def test_an_oversized_document_is_refused_before_its_signature_is_checked():
    env = envelope()
    huge = {**env, "document": env["document"] + " " * policy.MAX_DOCUMENT_BYTES}
    refused(ErrorCode.POLICY_INVALID, policy.verify, huge, PUB, GW)
    refused(ErrorCode.POLICY_INVALID, policy.parse_envelope, b"{" * 60_000)
    refused(ErrorCode.POLICY_INVALID, policy.parse_envelope, b"[[[[")


def test_scopes_merge_most_specific_first():
    ann = {"text_id": "x", "starts": "2026-12-01T00:00:00Z", "ends": "2026-12-02T00:00:00Z"}
    fields, sources = policy.merge_scopes(
        [
            (
                "province",
                {
                    "walled_garden_domains": ["belajar.id"],
                    "free_tier": {"down_kbps": 1024, "up_kbps": 512, "daily_mb": 300},
                    "announcements": [{**ann, "id": "a"}, {**ann, "id": "b"}],
                    "ntp_servers": ["ntp.jambiprov.go.id"],
                },
            ),
            ("kecamatan:sekernan", {"free_tier": {"daily_mb": 150}}),
            (
                "gateway:desa-uji",
                {
                    "walled_garden_domains": [],
                    "announcements": [{**ann, "id": "b", "text_id": "desa"}, {**ann, "id": "c"}],
                },
            ),
        ]
    )
    assert fields["walled_garden_domains"] == []  # the village's (empty) list wins whole
    assert fields["free_tier"] == {"down_kbps": 1024, "up_kbps": 512, "daily_mb": 150}
    assert [(a["id"], a["text_id"]) for a in fields["announcements"]] == [
        ("a", "x"),
        ("b", "desa"),
        ("c", "x"),
    ]
    assert sources == {
        "walled_garden_domains": "gateway:desa-uji",
        "free_tier": "province+kecamatan:sekernan",
        "announcements": "province+gateway:desa-uji",
        "ntp_servers": "province",
    }


def test_scope_names():
    assert policy.parse_scope("province") == "province"
    assert policy.parse_scope("kecamatan:sekernan") == "kecamatan:sekernan"
    assert policy.parse_scope("gateway:desa-uji") == "gateway:desa-uji"
    for bad in ("kota:x", "kecamatan:", "gateway:X Y", "province:x"):
        with pytest.raises(ValueError):
            policy.parse_scope(bad)


def local_config():
    return config_mod.load(
        overrides={
            "network": {"walled_garden_domains": ["sekolah-desa.sch.id"]},
            "packages": {
                "harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24}
            },
            "policy": {"public_key": PUB},
        }
    )


def test_the_overlay_changes_what_the_province_owns_and_nothing_else():
    local = local_config()
    eff = policy.effective_config(local, policy.verify(envelope(), PUB, GW))
    assert eff.network.walled_garden == ("203.0.113.7/32",)
    assert eff.network.walled_garden_domains == ("belajar.id", "kemkes.go.id")
    free = eff.tiers["free"]
    assert (free.down_kbps, free.daily_mb) == (768, 200)
    assert (free.up_kbps, free.session_minutes) == (local.tiers["free"].up_kbps, 60)
    assert eff.gateway.ntp_servers == ("ntp.jambiprov.go.id",)
    # Prices, packages and the premium tier stay the village's.
    assert eff.packages == local.packages
    assert eff.tiers["premium"] == local.tiers["premium"]
    assert policy.effective_config(local, None) is local


def test_a_walled_garden_over_the_villages_lan_is_refused():
    p = policy.verify(envelope(fields={"walled_garden": ["10.10.1.0/24"]}), PUB, GW)
    msg = refused(ErrorCode.POLICY_INVALID, policy.effective_config, local_config(), p)
    assert "overlaps this village's LAN" in msg


def test_an_overlay_that_breaks_the_configuration_is_refused():
    windows = [
        {"from": "22:00", "to": "05:00", "down_kbps": 256, "up_kbps": 128},
        {"from": "04:00", "to": "06:00", "down_kbps": 256, "up_kbps": 128},
    ]
    p = policy.verify(envelope(fields={"free_tier": {"schedule": windows}}), PUB, GW)
    msg = refused(ErrorCode.POLICY_INVALID, policy.effective_config, local_config(), p)
    assert "overlaps" in msg


def test_the_last_good_file_survives_a_power_cut_mid_write(tmp_path, monkeypatch):
    path = tmp_path / "policy.json"
    policy.store(path, envelope(1))
    assert policy.stored_version(path) == 1

    # The power goes while the new file is written: before the rename, nothing replaced.
    def cut(*_a, **_kw):
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", cut)
    with pytest.raises(OSError):
        policy.store(path, envelope(2))
    monkeypatch.undo()
    kept = policy.load_stored(path)
    assert kept is not None and policy.verify(kept, PUB, GW).version == 1
    # A half-written temporary file left behind by the cut is never read as the policy.
    (tmp_path / ".policy.json.999.tmp").write_bytes(json.dumps(envelope(3))[:100].encode())
    assert policy.stored_version(path) == 1
    policy.store(path, envelope(2))
    assert policy.stored_version(path) == 2


def test_a_file_changed_on_the_disk_is_not_believed(tmp_path):
    path = tmp_path / "policy.json"
    policy.store(path, envelope(4))
    data = path.read_text().replace("768", "9999")
    path.write_text(data)
    kept = policy.load_stored(path)
    assert kept is not None
    refused(ErrorCode.POLICY_SIGNATURE, policy.verify, kept, PUB, GW)
    path.write_text("{not json")
    refused(ErrorCode.POLICY_INVALID, policy.load_stored, path)
    assert policy.stored_version(path) is None
    assert policy.load_stored(tmp_path / "none.json") is None


def test_the_pinned_key_must_be_an_ed25519_public_key():
    from hotspot.errors import ConfigError

    for bad in ("abc", "AAAA", PUB[:-4]):
        with pytest.raises(ConfigError, match="policy.public_key"):
            config_mod.load(overrides={"policy": {"public_key": bad}})
    with pytest.raises(ConfigError, match="policy.state_file"):
        config_mod.load(overrides={"policy": {"state_file": "relative.json"}})
    assert config_mod.load(overrides={"policy": {"public_key": PUB}}).policy.public_key == PUB
