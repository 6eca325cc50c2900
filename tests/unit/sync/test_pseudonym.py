"""Pseudonyms: stable per gateway, unlinkable across gateways, the key stays on the gateway."""

from __future__ import annotations

import re

from hotspot import config as config_mod
from hotspot.db import open_database
from hotspot.pseudonym import Pseudonymizer, load_key, pseudonym

MAC = "02:11:22:33:44:55"


def test_stable_and_notation_independent():
    key = b"k" * 32
    p = pseudonym(key, MAC)
    assert re.fullmatch(r"[0-9a-f]{16}", p)
    assert pseudonym(key, "02-11-22-33-44-55") == p == pseudonym(key, "0211.2233.4455")
    assert pseudonym(key, "02:11:22:33:44:56") != p
    assert pseudonym(b"j" * 32, MAC) != p  # another gateway: unlinkable
    assert "1122" not in p or pseudonym(b"x" * 32, MAC) != p


def test_the_cache_of_pseudonyms_is_bounded_by_its_limit():
    """A laptop cycling its MAC all month must not grow the agent (the soak's one growing
    site): past the limit the cache starts over, and every answer stays the pseudonym."""
    key = b"k" * 32
    named = Pseudonymizer(key, limit=100)
    macs = [f"02:00:00:00:{i // 256:02x}:{i % 256:02x}" for i in range(1000)]
    for mac in macs:
        assert named(mac) == pseudonym(key, mac)
        assert len(named) <= 100
    assert named(macs[0]) == pseudonym(key, macs[0])  # forgotten, computed again: the same


def test_key_is_generated_once_and_kept(gwcfg, gwdb):
    k1 = load_key(gwcfg, gwdb)
    assert len(k1) == 32
    assert load_key(gwcfg, gwdb) == k1
    engine2 = open_database(gwcfg.database.url)  # another process, same database
    assert load_key(gwcfg, engine2) == k1
    engine2.dispose()


def test_key_from_config_wins(tmp_path, gwdb):
    from tests.unit.sync.conftest import gateway_overrides

    over = gateway_overrides(tmp_path)
    over["privacy"] = {"pseudonym_key": "p" * 40}
    cfg = config_mod.load(overrides=over)
    assert load_key(cfg, gwdb) == b"p" * 40
    # and it is not the sync secret the collector knows
    assert load_key(cfg, gwdb) != cfg.sync.secret.encode()
