"""Provisioning for the uplink down (issue #11, item 3): the walled resolver reads the
gateway's hosts file folder (``hostsdir=``, before its probe forwarding), tmpfiles makes the
folder readable by dnsmasq, the gateway's unit may write it; ``walled_hosts_dir = ""`` turns
it all off."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.unit.provisioning.test_render import _keys, _unit, load, text

WALLED = "/etc/hotspot/walled-dns.conf"
TMPFILES = "/etc/tmpfiles.d/hotspot.conf"


def test_the_walled_resolver_reads_the_gateways_hosts_folder():
    conf = text(load(), WALLED)
    assert "hostsdir=/run/hotspot-dns\n" in conf
    assert conf.index("hostsdir=") < conf.index("server=/connectivitycheck.gstatic.com/")
    assert "d /run/hotspot-dns 0755 root root -" in text(load(), TMPFILES)


def test_off_when_the_folder_is_empty():
    cfg = load(uplink={"walled_hosts_dir": ""})
    assert "hostsdir" not in text(cfg, WALLED)
    assert "/run/hotspot-dns" not in text(cfg, TMPFILES)
    assert "-/run/hotspot-dns" not in _keys(_unit(cfg, "hotspot-gateway"))["ReadWritePaths"]


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq")
def test_dnsmasq_accepts_it(tmp_path):
    folder = tmp_path / "hosts"
    folder.mkdir()
    conf = tmp_path / "walled.conf"
    conf.write_text(
        text(load(uplink={"walled_hosts_dir": str(folder)}, dns_filter={"conf_dir": ""}), WALLED)
    )
    check = subprocess.run(
        ["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stderr
