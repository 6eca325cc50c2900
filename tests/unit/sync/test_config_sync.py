"""[sync] and [privacy]: every key validated, unknown keys refused, errors name the key."""

from __future__ import annotations

import pytest

from hotspot import config as config_mod
from hotspot.errors import ConfigError

GOOD = {
    "upstream_url": "https://hotspot.jambiprov.go.id/",
    "gateway_id": "muaro-jambi-01",
    "secret": "k" * 43,
}


def test_defaults_do_not_report():
    cfg = config_mod.load()
    assert not cfg.sync.enabled
    assert cfg.sync.interval_seconds == 300 and cfg.sync.max_batch_kb == 64
    assert cfg.privacy.retention_days == 90 and cfg.privacy.pseudonym_key == ""


def test_a_reporting_gateway(tmp_path):
    path = tmp_path / "h.toml"
    path.write_text(
        '[sync]\nupstream_url = "https://hotspot.jambiprov.go.id/"\n'
        'gateway_id = "muaro-jambi-01"\nsecret = "' + "k" * 43 + '"\n'
        "interval_seconds = 600\nmax_batch_kb = 32\n[privacy]\nretention_days = 30\n"
    )
    cfg = config_mod.load(path)
    assert cfg.sync.enabled
    assert cfg.sync.upstream_url == "https://hotspot.jambiprov.go.id"  # trailing / dropped
    assert (cfg.sync.interval_seconds, cfg.sync.max_batch_kb) == (600, 32)
    assert cfg.privacy.retention_days == 30


@pytest.mark.parametrize(
    "section, values, key",
    [
        ("sync", {**GOOD, "upstream_url": "ftp://x"}, "sync.upstream_url"),
        ("sync", {**GOOD, "upstream_url": "https://u:p@x"}, "sync.upstream_url"),
        ("sync", {**GOOD, "upstream_url": "https://x/?a=1"}, "sync.upstream_url"),
        ("sync", {**GOOD, "upstream_url": "http://x:99999"}, "sync.upstream_url"),
        ("sync", {**GOOD, "upstream_url": 5}, "sync.upstream_url"),
        ("sync", {**GOOD, "gateway_id": "Muaro Jambi"}, "sync.gateway_id"),
        ("sync", {**GOOD, "gateway_id": ""}, "sync.gateway_id"),
        ("sync", {**GOOD, "secret": "short"}, "sync.secret"),
        ("sync", {**GOOD, "secret": "has space " * 5}, "sync.secret"),
        ("sync", {**GOOD, "secret": ""}, "sync.secret"),
        ("sync", {**GOOD, "interval_seconds": 0}, "sync.interval_seconds"),
        ("sync", {**GOOD, "interval_seconds": "300"}, "sync.interval_seconds"),
        ("sync", {**GOOD, "max_batch_kb": 4096}, "sync.max_batch_kb"),
        ("sync", {**GOOD, "timeout_seconds": True}, "sync.timeout_seconds"),
        ("sync", {**GOOD, "backoff_max_seconds": -1}, "sync.backoff_max_seconds"),
        ("sync", {**GOOD, "health_seconds": 0}, "sync.health_seconds"),
        ("sync", {**GOOD, "api_token": "tiny"}, "sync.api_token"),
        ("sync", {**GOOD, "upstream": "x"}, "sync.upstream"),
        ("privacy", {"retention_days": 0}, "privacy.retention_days"),
        ("privacy", {"retention_days": 99999}, "privacy.retention_days"),
        ("privacy", {"pseudonym_key": "short"}, "privacy.pseudonym_key"),
        ("privacy", {"keep_macs": True}, "privacy.keep_macs"),
    ],
)
def test_bad_values_name_their_key(section, values, key):
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides={section: values})
    assert err.value.key == key
    assert str(err.value).startswith(key + ":") and "\n" not in str(err.value)


def test_a_table_is_required():
    with pytest.raises(ConfigError) as err:
        config_mod.load(overrides={"sync": "on"})
    assert err.value.key == "sync"
