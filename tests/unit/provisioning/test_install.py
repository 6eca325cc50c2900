"""``hotspot provision``: staging root, idempotency, dry run, atomic writes, and the host
steps planned from the host's state (a fake host: these tests never touch the machine)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hotspot import config as config_mod
from hotspot_cli import main as cli
from provisioning import install as I
from provisioning import render as R
from tests.unit.provisioning.conftest import RENDERED_PATHS, SERVICES


def run(village_file, root=None, dry_run=False, host=None):
    lines: list[str] = []
    rc = I.provision(
        I.Options(config=str(village_file), root=str(root) if root else None, dry_run=dry_run),
        host=host,
        out=lines.append,
    )
    return rc, "\n".join(lines)


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {
        "/" + str(p.relative_to(root)): (
            p.read_bytes(),
            p.stat().st_mode & 0o7777,
            p.stat().st_mtime_ns,
        )
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_staging_root_then_nothing_to_do(village_file, tmp_path):
    root = tmp_path / "stage"
    rc, out = run(village_file, root)
    assert rc == 0
    files = tree(root)
    assert set(files) == set(RENDERED_PATHS)
    assert files[R.CONFIG_PATH][:2] == (village_file.read_bytes(), 0o640)
    assert files[R.DNSMASQ][1] == 0o644
    assert "validated:" in out and f"created   {root}/etc/dnsmasq.d/hotspot.conf" in out
    assert out.splitlines()[-1] == "done: 20 created"
    # The host is left alone; what a real run would do is listed.
    assert "skipped (--root): systemctl enable --now hotspot-gateway" in out
    assert "skipped (--root): systemd-sysusers /etc/sysusers.d/hotspot.conf" in out
    # No temporary file is left behind.
    assert not [p for p in root.rglob(".*")]

    rc, out = run(village_file, root)
    assert rc == 0
    assert tree(root) == files  # byte for byte, mode and mtime: nothing was rewritten
    assert out.splitlines()[-1] == (
        "nothing to do: all 20 files already as provisioned "
        "(host steps are never taken with --root)"
    )
    assert "created" not in out and "updated" not in out


def test_a_change_rewrites_only_what_it_touches(village_file, tmp_path):
    root = tmp_path / "stage"
    run(village_file, root)
    before = tree(root)
    village_file.write_text(
        village_file.read_text().replace("lease_minutes = 60", "lease_minutes = 90")
    )
    rc, out = run(village_file, root)
    after = tree(root)
    changed = {p for p in after if after[p] != before[p]}
    assert changed == {R.CONFIG_PATH, R.DNSMASQ}
    assert "dhcp-range=10.10.0.10,10.10.3.254,255.255.252.0,90m" in after[R.DNSMASQ][0].decode()
    assert out.splitlines()[-1] == "done: 2 updated"


def test_dry_run_prints_the_diff_and_changes_nothing(village_file, tmp_path):
    root = tmp_path / "stage"
    rc, out = run(village_file, root, dry_run=True)
    assert rc == 0 and not root.exists()
    assert "+dhcp-range=10.10.0.10," in out
    assert "--- /dev/null\n+++ /etc/dnsmasq.d/hotspot.conf" in out
    assert "dry run: 20 file(s) would change (host steps are never taken with --root)" in out
    # Secrets in the village file are not printed.
    assert "very-secret" not in out and 'secret = "(hidden)"' in out

    run(village_file, root)
    village_file.write_text(village_file.read_text().replace("channel = 6", "channel = 11"))
    snapshot = tree(root)
    rc, out = run(village_file, root, dry_run=True)
    assert tree(root) == snapshot
    assert "-channel=6\n+channel=11" in out
    assert "dry run: 2 file(s) would change" in out

    village_file.write_text(village_file.read_text().replace("channel = 11", "channel = 6"))
    rc, out = run(village_file, root, dry_run=True)
    assert out.splitlines()[-1] == "dry run: nothing to do (all 20 files as installed)"


def test_a_mode_change_is_repaired(village_file, tmp_path):
    root = tmp_path / "stage"
    run(village_file, root)
    (root / "etc/hotspot/hotspot.toml").chmod(0o644)  # world-readable: the secret leaks
    rc, out = run(village_file, root)
    assert f"fixed     {root}/etc/hotspot/hotspot.toml" in out
    assert (root / "etc/hotspot/hotspot.toml").stat().st_mode & 0o777 == 0o640


def test_files_no_longer_wanted_are_removed_if_they_are_ours(village_file, tmp_path):
    root = tmp_path / "stage"
    run(village_file, root)
    foreign = root / "etc/systemd/network/10-hotspot-lan-ports.network"
    village_file.write_text(
        village_file.read_text()
        .replace("[wifi]\n", "[wifi]\nenabled = false\n")
        .replace('lan_ports = ["eth0"]\n', "")
    )
    foreign.write_text("[Match]\nName=eth0\n")  # the technician's own file now
    rc, out = run(village_file, root)
    assert not (root / R.HOSTAPD.lstrip("/")).exists()
    assert not (root / R.HOSTAPD_DROPIN.lstrip("/")).exists()
    assert f"removed   {root}{R.HOSTAPD}" in out
    assert foreign.read_text() == "[Match]\nName=eth0\n"  # not written by us: left alone
    rc, out = run(village_file, root)
    assert out.splitlines()[-1].startswith("nothing to do")


def test_atomic_write_replaces_or_keeps(tmp_path, monkeypatch):
    path = tmp_path / "etc" / "x.conf"
    I.atomic_write(path, b"one\n", 0o640, None)
    assert path.read_bytes() == b"one\n" and path.stat().st_mode & 0o777 == 0o640

    def power_cut(*_args):
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "fsync", power_cut)
    with pytest.raises(OSError):
        I.atomic_write(path, b"two\n", 0o640, None)
    assert path.read_bytes() == b"one\n"  # the old file, whole
    assert [p.name for p in path.parent.iterdir()] == ["x.conf"]  # no temporary left


# -- the host steps (a fake host) ---------------------------------------------------------


def steps_of(out: str) -> list[str]:
    return [
        line.split("  #")[0][len("run: ") :]
        for line in out.splitlines()
        if line.startswith("run: ")
    ]


@pytest.fixture
def fake_fs(tmp_path, monkeypatch):
    """A real (not --root) run, with every path redirected under a scratch folder."""
    fs = tmp_path / "fs"
    monkeypatch.setattr(I, "target", lambda root, path: Path(fs, path.lstrip("/")))
    monkeypatch.setattr(R, "hidden_from_services", lambda paths: [])
    # The checks themselves are tested in test_validate and by the staging tests above.
    monkeypatch.setattr(I, "validate", lambda files, cfg: [])
    return fs


def test_a_fresh_machine(village_file, fake_fs, fake_host):
    host = fake_host()
    host.missing = ["dnsmasq", "hostapd"]
    rc, out = run(village_file, host=host)
    assert rc == 0
    hotspot = R.entry_point()
    assert steps_of(out) == [
        "apt-get install -y --no-install-recommends dnsmasq hostapd",
        "systemd-sysusers /etc/sysusers.d/hotspot.conf",
        "systemd-tmpfiles --create /etc/tmpfiles.d/hotspot.conf",
        "sysctl -q -e -p /etc/sysctl.d/90-hotspot.conf",
        f"runuser -u hotspot -- {hotspot} --config /etc/hotspot/hotspot.toml db upgrade",
        "chmod 0660 /var/lib/hotspot/hotspot.db",
        "systemctl daemon-reload",
        "create-secret /etc/hotspot/voucher.key",
        "create-secret /var/lib/hotspot/portal.secret",
        "systemctl unmask hostapd",
        "rfkill unblock wlan",
        *[f"systemctl {verb} {svc}" for svc in SERVICES for verb in ("enable", "start")],
    ]
    # The sysusers file is written before the users are made, the rest after.
    lines = out.splitlines()
    assert (
        lines.index(f"created   {fake_fs}/etc/sysusers.d/hotspot.conf")
        < lines.index(
            "run: systemd-sysusers /etc/sysusers.d/hotspot.conf  # system users hotspot and "
            "hotspot-sync, groups hotspot and hotspot-data"
        )
        < lines.index(f"created   {fake_fs}/etc/hotspot/hotspot.toml")
    )
    assert (fake_fs / "etc/dnsmasq.d/hotspot.conf").exists()


def test_a_provisioned_machine_has_nothing_to_do(village_file, fake_fs, fake_host):
    run(village_file, host=fake_host())
    host = fake_host(provisioned=True)
    rc, out = run(village_file, host=host)
    assert rc == 0 and steps_of(out) == [] and host.done == [], out
    assert out.splitlines()[-1] == "nothing to do: all 20 files already as provisioned"


def test_a_change_restarts_only_what_reads_it(village_file, fake_fs, fake_host):
    run(village_file, host=fake_host())
    text = village_file.read_text()
    village_file.write_text(text.replace("lease_minutes = 60", "lease_minutes = 90"))
    rc, out = run(village_file, host=fake_host(provisioned=True))
    assert steps_of(out) == [
        "systemctl restart dnsmasq",
        "systemctl restart hotspot-gateway",
        "systemctl restart hotspot-portal",
        "systemctl restart hotspot-sync",
    ]
    village_file.write_text(village_file.read_text().replace("channel = 6", "channel = 1"))
    host = fake_host(provisioned=True)
    host.active.discard("hotspot-sync")  # crashed meanwhile
    rc, out = run(village_file, host=host)
    assert steps_of(out) == [
        "systemctl restart hostapd",
        "systemctl restart hotspot-gateway",
        "systemctl restart hotspot-portal",
        "systemctl start hotspot-sync",
    ]


def test_networkd_and_units_changes_reload(village_file, fake_fs, fake_host):
    run(village_file, host=fake_host())
    village_file.write_text(
        village_file.read_text().replace('lan_ports = ["eth0"]', 'lan_ports = ["eth0", "eth2"]')
    )
    host = fake_host(provisioned=True)
    host.active.add("NetworkManager")  # Raspberry Pi OS
    rc, out = run(village_file, host=host)
    assert steps_of(out)[:2] == ["networkctl reload", "systemctl reload NetworkManager"]
    (fake_fs / "etc/systemd/system/hotspot-sync.service").write_text("# edited by hand\n")
    rc, out = run(village_file, host=fake_host(provisioned=True))
    assert steps_of(out) == ["systemctl daemon-reload", "systemctl restart hotspot-sync"]


def test_not_root_is_refused(village_file, fake_host):
    with pytest.raises(I.UsageError, match="must run as root"):
        run(village_file, host=fake_host(root=False))


def test_software_the_services_cannot_see_is_refused(village_file, fake_host, monkeypatch):
    monkeypatch.setattr(R, "software_paths", lambda hotspot: ["/root/.local/bin/hotspot"])
    with pytest.raises(I.UsageError, match="cannot see /root/.local/bin/hotspot"):
        run(village_file, host=fake_host())


def test_an_invalid_rendering_installs_nothing(village_file, tmp_path, monkeypatch):
    monkeypatch.setattr(
        R,
        "render",
        lambda cfg, source, hotspot: [R.File(R.DNSMASQ, b"dhcp-range=banana\n", 0o644, "dnsmasq")],
    )
    root = tmp_path / "stage"
    with pytest.raises(I.ProvisionError, match="failed validation; nothing was installed"):
        run(village_file, root)
    assert not root.exists()


# -- the command line ---------------------------------------------------------------------


def test_cli_staging_and_second_run(village_file, tmp_path, capsys):
    root = tmp_path / "stage"
    assert cli.main(["provision", "--config", str(village_file), "--root", str(root)]) == 0
    assert (root / "etc/dnsmasq.d/hotspot.conf").exists()
    capsys.readouterr()
    assert cli.main(["--config", str(village_file), "provision", "--root", str(root)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("nothing to do")


def test_cli_refuses_without_root(village_file, monkeypatch, capsys):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["provision", "--config", str(village_file)]) == 2
    err = capsys.readouterr().err
    assert err == (
        "hotspot: error: provision: must run as root (or stage into a folder with --root DIR)\n"
    )


def test_cli_bad_config_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[dhcp]\nrange_start = "10.10.0.1"\n')
    assert cli.main(["provision", "--config", str(bad), "--root", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hotspot: config error: dhcp.range_start:") and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_cli_without_a_file(monkeypatch, capsys, tmp_path):
    monkeypatch.delenv(config_mod.ENV_CONFIG, raising=False)
    monkeypatch.setattr(config_mod, "DEFAULT_CONFIG_PATH", str(tmp_path / "none.toml"))
    assert cli.main(["provision", "--root", str(tmp_path / "s")]) == 2
    assert "give the village's file with --config FILE" in capsys.readouterr().err


def test_the_sync_agent_runs_only_when_it_has_somewhere_to_report(village_file, fake_fs, fake_host):
    text = village_file.read_text()
    village_file.write_text(text[: text.index("[sync]")])
    cfg = config_mod.load(village_file)
    assert "hotspot-sync" not in R.services(cfg) and R.idle_units(cfg) == ["hotspot-sync"]
    rc, out = run(village_file, host=fake_host())
    assert (fake_fs / "etc/systemd/system/hotspot-sync.service").exists()  # installed
    assert not [s for s in steps_of(out) if s.endswith(" hotspot-sync")]  # never started
    host = fake_host(provisioned=True)  # from a time it was configured
    rc, out = run(village_file, host=host)
    assert steps_of(out) == ["systemctl disable --now hotspot-sync"]
