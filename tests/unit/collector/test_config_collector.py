"""The collector's own configuration file."""

from __future__ import annotations

import pytest

from collector import config as cc
from hotspot.errors import ConfigError


def test_defaults_and_file(tmp_path, monkeypatch):
    monkeypatch.delenv(cc.ENV_CONFIG, raising=False)
    cfg = cc.load(overrides={})
    assert cfg.bind == "127.0.0.1:8000" and cfg.language == "id"
    path = tmp_path / "collector.toml"
    path.write_text(
        '[collector]\ndatabase_url = "postgresql://hotspot@/hotspot?host=/run/postgresql"\n'
        'bind = "0.0.0.0:8080"\n'
    )
    cfg = cc.load(path)
    assert cfg.bind == "0.0.0.0:8080" and cfg.database_url.startswith("postgresql://")
    monkeypatch.setenv(cc.ENV_CONFIG, str(path))
    assert cc.load().source == str(path)
    # Overrides change their keys of the file's [collector] and keep the rest.
    cfg = cc.load(path, overrides={"collector": {"workers": 3}})
    assert (cfg.bind, cfg.workers, cfg.threads) == ("0.0.0.0:8080", 3, 4)


@pytest.mark.parametrize(
    "values, key",
    [
        ({"database_url": "mysql://x"}, "collector.database_url"),
        ({"bind": "8000"}, "collector.bind"),
        ({"bind": "host:99999"}, "collector.bind"),
        ({"language": "fr"}, "collector.language"),
        ({"timezone": "Asia/Nowhere"}, "collector.timezone"),
        ({"replay_window_seconds": 1}, "collector.replay_window_seconds"),
        ({"max_body_kb": 0}, "collector.max_body_kb"),
        ({"max_body_kb": 2048, "max_inflated_kb": 1024}, "collector.max_inflated_kb"),
        ({"dashboard_public": "yes"}, "collector.dashboard_public"),
        ({"page_size": 1}, "collector.page_size"),
        ({"workers": 0}, "collector.workers"),
        ({"colour": "red"}, "collector.colour"),
    ],
)
def test_bad_values_name_their_key(values, key):
    with pytest.raises(ConfigError) as err:
        cc.load(overrides={"collector": values})
    assert err.value.key == key and "\n" not in str(err.value)


def test_only_the_collector_section(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[collector]\nbind = "127.0.0.1:1"\n[network]\nlan_interface = "x"\n')
    with pytest.raises(ConfigError) as err:
        cc.load(path)
    assert err.value.key == "network"
