"""Least privilege for real (issue #10, item 18): the rendered sysusers and tmpfiles files,
applied by systemd-sysusers and systemd-tmpfiles into a staging root, give the sync agent
its own user that shares the database's group and nothing else. Root only."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from hotspot import config as config_mod
from provisioning import render as R

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown in the staging root)"),
    pytest.mark.skipif(
        shutil.which("systemd-sysusers") is None or shutil.which("systemd-tmpfiles") is None,
        reason="needs systemd-sysusers and systemd-tmpfiles",
    ),
]


def _members(root: Path) -> dict[str, tuple[int, set[str]]]:
    groups = {}
    for line in (root / "etc/group").read_text().splitlines():
        name, _, gid, members = line.split(":")
        groups[name] = (int(gid), set(filter(None, members.split(","))))
    return groups


def test_the_sync_agent_user_has_the_database_and_not_the_control_socket(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group", "shadow", "gshadow"):
        (root / "etc" / name).write_text("root:x:0:\n" if name == "group" else "")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    files = {f.path: f for f in R.render(config_mod.load(), b"", hotspot="/usr/bin/hotspot")}
    sysusers = root / "etc/sysusers.d/hotspot.conf"
    tmpfiles = root / "etc/tmpfiles.d/hotspot.conf"
    for path, f in ((sysusers, files[R.SYSUSERS]), (tmpfiles, files[R.TMPFILES])):
        path.parent.mkdir(parents=True)
        path.write_bytes(f.content)
    subprocess.run(["systemd-sysusers", f"--root={root}", str(sysusers)], check=True)
    groups = _members(root)
    users = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc/passwd").read_text().splitlines()
    }
    assert "hotspot-sync" in users and "hotspot" in users
    # The control socket's (and voucher key's) group: the portal, never the sync agent.
    assert "hotspot-sync" not in groups["hotspot"][1]
    assert int(users["hotspot-sync"][3]) != groups["hotspot"][0]
    # The database's group: both.
    assert {"hotspot", "hotspot-sync"} <= groups["hotspot-data"][1]
    assert int(users["hotspot"][3]) == groups["hotspot"][0]

    # A database from before (group hotspot, 0644) is handed to hotspot-data.
    db = root / "var/lib/hotspot/hotspot.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    os.chown(db, 0, groups["hotspot"][0])
    db.chmod(0o644)
    subprocess.run(["systemd-tmpfiles", f"--root={root}", "--create", str(tmpfiles)], check=True)
    st = db.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, groups["hotspot-data"][0])
    state = (root / "var/lib/hotspot").stat()
    assert stat.S_IMODE(state.st_mode) == 0o2770
    assert (state.st_uid, state.st_gid) == (0, groups["hotspot-data"][0])
    conf = (root / "etc/hotspot").stat()
    assert stat.S_IMODE(conf.st_mode) == 0o750 and conf.st_gid == groups["hotspot-data"][0]
