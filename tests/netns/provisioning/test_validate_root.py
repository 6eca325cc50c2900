"""The checks of rendered files that only root can run: ``nft -c`` of the gateway's table,
``systemd-sysusers`` and ``systemd-tmpfiles`` against a staging root."""

from __future__ import annotations

import os
import shutil

import pytest

from hotspot import config as config_mod
from provisioning import render as R
from provisioning.validate import validate
from tests.unit.provisioning.conftest import village_file  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="nft -c and sysusers need root"),
    pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze"),
]


def test_root_only_checks_pass(village_file):
    cfg = config_mod.load(village_file)
    files = R.render(cfg, b'[village]\nname = "Desa Uji"\n', hotspot=R.entry_point())
    details = {c.name: (c.ok, c.detail) for c in validate(files, cfg)}
    assert details["nftables ruleset"] == (True, "nft -c, table inet hotspot")
    assert details[R.SYSUSERS] == (True, "systemd-sysusers")
    assert details[R.TMPFILES] == (True, "systemd-tmpfiles --create")
