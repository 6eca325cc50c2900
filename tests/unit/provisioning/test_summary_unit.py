"""The daily summary's service (issue #13, item 7): installed and run only with [summary] on,
as the sync agent's unprivileged user, and removed again when it is turned off."""

from __future__ import annotations

from provisioning import render as R
from tests.unit.provisioning.test_render import _keys, load, rendered
from tests.unit.sync.botapi import CHAT, TOKEN

UNIT = "/etc/systemd/system/hotspot-summary.service"
ON = {"enabled": True, "telegram_bot_token": TOKEN, "telegram_chat_id": CHAT}


def test_off_by_default_nothing_installed(village_file):
    cfg = load(village_file)
    assert "hotspot-summary" not in R.units(cfg) and "hotspot-summary" not in R.services(cfg)
    assert UNIT not in rendered(cfg)
    assert UNIT in R.OPTIONAL  # a unit left from when it was on is removed


def test_on_runs_as_the_sync_user_without_the_control_socket(village_file):
    cfg = load(village_file, summary=ON)
    assert R.services(cfg)[-1] == "hotspot-summary"
    unit = rendered(cfg)[UNIT]
    k = _keys(unit.content.decode())
    assert k["ExecStart"] == [
        "/opt/hotspot/venv/bin/hotspot --config /etc/hotspot/hotspot.toml summary run"
    ]
    assert k["User"] == ["hotspot-sync"] and k["Group"] == ["hotspot-data"]
    assert k["CapabilityBoundingSet"] == [""]
    assert "/run/hotspot" in k["InaccessiblePaths"][0]
    assert TOKEN not in unit.content.decode()  # the token stays in the 0640 config file
    assert "hotspot-summary" in rendered(cfg)[R.CONFIG_PATH].restarts
