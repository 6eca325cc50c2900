"""DNS filtering for logged-in devices (issue #15, item 2), with the real gateway, the two real
dnsmasq instances ``hotspot provision`` renders, and real nftables.

The gateway writes the resolvers' files (hotspot/dnsfilter.py generations in a folder of the
test) from its configuration or the signed policy; the test plays ``hotspot-dns-reload``
(gateway/dnsapply.py ``reload``) with a "systemctl" that restarts its dnsmasq processes.
"The internet" has two resolvers: the village's upstream (answers every name ``ANY_IP``) and a
foreign one at ``FOREIGN`` (answers every name ``FOREIGN_ANSWER``: if a phone ever gets that
address, it went round the gateway's resolver). Nothing leaves the test's namespaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from gateway import dnsapply
from hotspot import config as config_mod
from hotspot import dnsfilter
from hotspot import policy as policy_mod
from hotspot.timeutil import utcnow
from provisioning import render as R
from tests.netns.helpers import (
    GW_LAN_IP,
    authorize,
    curl,
    dns_queries,
    dns_query,
    start_upstream_dns,
    wait_until,
)
from testsupport.testbed import UPSTREAM_IP, portal_settings

pytestmark = pytest.mark.skipif(
    shutil.which("dnsmasq") is None, reason="needs dnsmasq (dnsmasq-base)"
)

GW_ID = "desa-uji"
FOREIGN = "198.51.100.53"  # "8.8.8.8" of this test
FOREIGN_ANSWER = "198.51.100.66"
ANY_IP = "198.51.100.99"
BLOCKED = "judi-online.example"
LIST = b"# TRUST+ Positif (contoh)\nJudi-Online.Example.\nsitus-terlarang.example\nbad line!\n"


def alive(pid: int) -> bool:
    """Running (a zombie the testbed has not reaped yet is not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def addresses(answer: dict) -> list[str]:
    return [a[2] for a in answer.get("answers", []) if a[0] == 1]


class Village:
    """The gateway's resolvers as the device runs them, restartable by the reload step."""

    def __init__(self, bed, cfg, work: Path):
        self.bed, self.cfg, self.work = bed, cfg, work
        files = {f.path: f for f in R.render(cfg, b"", hotspot=sys.executable)}
        self.full, self.walled = work / "dnsmasq.conf", work / "walled-dns.conf"
        self.full.write_bytes(files[R.DNSMASQ].content)
        self.walled.write_bytes(files[R.WALLED_DNS_CONF].content)
        self.restarts = 0
        self.fail_next = False

    def _pid(self, name: str) -> int | None:
        try:
            return int((self.work / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def start(self) -> bool:
        for name, conf in (("dnsmasq", self.full), ("walled", self.walled)):
            self.bed.popen(
                self.bed.gw,
                "dnsmasq",
                "--keep-in-foreground",
                f"--conf-file={conf}",
                f"--pid-file={self.work}/{name}.pid",
                *([f"--dhcp-leasefile={self.work}/leases"] if name == "dnsmasq" else []),
                log_path=self.work / f"{name}.log",
            )
        try:
            for port in (53, self.cfg.network.walled_dns_port):
                self.bed.wait_port(self.bed.gw, GW_LAN_IP, port, timeout=5)
        except Exception:  # noqa: BLE001 - dnsmasq refused its files: "systemctl" says failed
            return False
        return True

    def stop(self) -> None:
        for name in ("dnsmasq", "walled"):
            pid = self._pid(name)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            wait_until(lambda p=pid: not alive(p), 5, what="dnsmasq stopped")

    def systemctl(self, args: list[str]) -> bool:
        """What hotspot-dns-reload's systemctl does to dnsmasq (walled resolver: PartOf)."""
        if args[0] == "restart":
            self.restarts += 1
            self.stop()
            return self.start()
        if args[0] == "is-active":
            return (
                self._pid("dnsmasq") is not None and Path(f"/proc/{self._pid('dnsmasq')}").exists()
            )
        return True  # timesyncd: not in this test

    def reload(self) -> dict:
        return dnsapply.reload(
            self.cfg.dns_filter.conf_dir,
            run=self.systemctl,
            timesyncd_dropin=str(self.work / "timesyncd.conf"),
        )


@pytest.fixture
def signing():
    key = policy_mod.new_private_key()
    return key, policy_mod.public_key_of(key)


@pytest.fixture
def village(testbed, upstream, gateway_factory, signing, tmp_path):
    work = tmp_path / "dns"
    work.mkdir()
    work.chmod(0o755)
    lists = tmp_path / "lists"
    lists.mkdir()
    sha = hashlib.sha256(LIST).hexdigest()
    dnsfilter.list_path(lists, sha).write_bytes(LIST)
    testbed.run(testbed.up, "ip", "addr", "add", f"{FOREIGN}/32", "dev", "lo")
    start_upstream_dns(testbed, work, f"--address=/#/{ANY_IP}")
    foreign = work / "foreign"
    foreign.mkdir()
    testbed.popen(
        testbed.up,
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--listen-address={FOREIGN}",
        "--bind-interfaces",
        f"--address=/#/{FOREIGN_ANSWER}",
        f"--pid-file={foreign}/pid",
        log_path=foreign / "log",
    )
    testbed.wait_port(testbed.up, FOREIGN, 53)
    overrides = {
        "dns_filter": {
            "enabled": True,
            "list_sha256": sha,
            "list_size": len(LIST),
            "list_count": 2,
            "conf_dir": str(tmp_path / "live"),
            "list_dir": str(lists),
        },
        "dhcp": {
            "range_start": "10.10.0.100",
            "range_end": "10.10.0.150",
            "upstream_dns": [UPSTREAM_IP],
        },
        "wifi": {"enabled": False},
        "portal": portal_settings(tmp_path, workers=1),
        "sync": {"gateway_id": GW_ID},
        "policy": {"public_key": signing[1], "state_file": str(tmp_path / "policy.json")},
    }
    gw = gateway_factory(overrides)
    cfg = config_mod.load(gw.config_path)
    live = Path(cfg.dns_filter.conf_dir)
    wait_until(lambda: (live / dnsfilter.REQUEST).exists(), 10, what="first generation")
    v = Village(testbed, cfg, work)
    assert v.start(), (work / "dnsmasq.log").read_text()
    v.gw = gw
    yield v
    v.stop()


def offer(village, signing, version, fields):
    doc = policy_mod.make_document(GW_ID, version, fields, {}, utcnow())
    envelope = policy_mod.sign(signing[0], doc, signing[1])
    return village.gw.call("policy-apply", **envelope)


def generation_after(village, before: str | None, timeout: float = 10) -> str:
    live = village.cfg.dns_filter.conf_dir
    return wait_until(
        lambda: (g := dnsfilter.current_generation(live)) != before and g,
        timeout,
        what="a new generation",
    )


@pytest.mark.parametrize("testbed", [2], indirect=True)
def test_a_logged_in_phone_has_only_the_gateways_resolver(testbed, village, listen):
    online, walled = testbed.phones
    authorize(village.gw, online)
    dot = listen(testbed.up, "tcp", FOREIGN, 853)

    # To the foreign resolver, by UDP and TCP, with 0x20 case and a trailing dot: the
    # gateway answers (the upstream's address, never the foreign one's).
    asks = [
        {"server": FOREIGN, "name": name, "tcp": tcp}
        for name in ("news.example", "NeWs.ExAmPlE.", BLOCKED, "wWw.JUDI-online.example.")
        for tcp in (False, True)
    ] + [{"server": FOREIGN, "name": "dns.google"}, {"server": GW_LAN_IP, "name": BLOCKED}]
    got = dns_queries(testbed, online.ns, asks)
    for q, answer in zip(asks, got, strict=True):
        if "judi" in q["name"].lower():
            assert addresses(answer) == [GW_LAN_IP], (q, answer)  # the portal explains
        elif q["name"] == "dns.google":
            assert answer.get("rcode") == 3, (q, answer)  # DoH endpoints: nothing
        else:
            assert addresses(answer) == [ANY_IP], (q, answer)

    # DNS over TLS to the foreign resolver: refused at once, the listener never sees it.
    t0 = time.monotonic()
    out = testbed.run(online.ns, "curl", "-s", "-m", "3", f"telnet://{FOREIGN}:853", check=False)
    assert out.returncode == 7 and time.monotonic() - t0 < 2.5, out  # 7: refused
    assert dot.received() == []

    # The blocked name's web page: the portal's explanation (the intercept sends the request
    # to the splash, which finds the name answered with the portal's address).
    village.gw.start_portal()
    pages = {}
    for phone in (online, walled):
        sent = testbed.run(
            phone.ns,
            "curl",
            "-s",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{redirect_url}",
            "-H",
            f"Host: {BLOCKED}",
            f"http://{GW_LAN_IP}/",
            check=False,
        ).stdout
        assert sent.startswith(f"http://{GW_LAN_IP}:"), sent
        pages[phone.ns] = curl(testbed, phone.ns, sent, timeout=5)
    assert pages[online.ns].code == "451", pages[online.ns]
    assert "Situs ini diblokir" in pages[online.ns].body and BLOCKED in pages[online.ns].body
    assert "diblokir" not in pages[walled.ns].body  # the splash, as before

    # A walled phone is unchanged: the walled resolver's NXDOMAIN, whatever it asks.
    for name in ("news.example", BLOCKED):
        answer = dns_query(testbed, walled.ns, FOREIGN, name)
        assert answer.get("rcode") == 3 and addresses(answer) == [], (name, answer)


@pytest.mark.parametrize("testbed", [1], indirect=True)
def test_switching_off_and_the_abuse_of_the_list(testbed, village, signing):
    (online,) = testbed.phones
    authorize(village.gw, online)
    live = village.cfg.dns_filter.conf_dir
    first = dnsfilter.current_generation(live)
    assert addresses(dns_query(testbed, online.ns, FOREIGN, BLOCKED)) == [GW_LAN_IP]

    # The province switches it off: the files change, dnsmasq restarts once, the redirect goes.
    offer(village, signing, 1, {"dns_blocklist": {"enabled": False}})
    off = generation_after(village, first)
    assert village.reload()["result"] == "applied"
    assert village.reload()["result"] == "unchanged"  # nothing restarts when nothing changed
    assert village.restarts == 1
    wait_until(
        lambda: addresses(dns_query(testbed, online.ns, FOREIGN, "x.example")) == [FOREIGN_ANSWER],
        10,
        what="the foreign resolver reached once the filter is off",
    )
    assert addresses(dns_query(testbed, online.ns, GW_LAN_IP, BLOCKED)) == [ANY_IP]

    # A list that never arrives (named by a hash nobody has): everything stays as it was,
    # and the gateway says why.
    missing = "ab" * 32
    named = {"enabled": True, "list": "positif-baru", "sha256": missing, "size": 10, "count": 1}
    offer(village, signing, 2, {"dns_blocklist": named})
    wait_until(
        lambda: (village.gw.call("status")["dns"]["problem"] or {}).get("code") == "list-missing",
        10,
        what="the missing list reported",
    )
    assert dnsfilter.current_generation(live) == off
    assert addresses(dns_query(testbed, online.ns, FOREIGN, "y.example")) == [FOREIGN_ANSWER]

    # A tampered list (right name, other bytes): refused, nothing changes.
    lists = Path(village.cfg.dns_filter.list_dir)
    dnsfilter.list_path(lists, missing).write_bytes(b"judi-online.example\n")
    wait_until(
        lambda: (village.gw.call("status")["dns"]["problem"] or {}).get("code") == "list-refused",
        10,
        what="the tampered list refused",
    )
    assert dnsfilter.current_generation(live) == off

    # The real list arrives under the hash the policy names: taken at the next tick.
    sha = hashlib.sha256(LIST).hexdigest()
    good = {"enabled": True, "list": "positif", "sha256": sha, "size": len(LIST), "count": 2}
    offer(village, signing, 3, {"dns_blocklist": good})
    on = generation_after(village, off)
    assert village.reload()["result"] == "applied"
    wait_until(
        lambda: addresses(dns_query(testbed, online.ns, FOREIGN, BLOCKED)) == [GW_LAN_IP],
        10,
        what="the filter on again",
    )
    status = village.gw.call("status")["dns"]
    assert status["filter_on"] and status["generation"] == on
    assert status["blocklist"]["names"] == 2 and status["blocklist"]["invalid"] == 1

    # A generation dnsmasq will not start on (a file broken after the gateway's check):
    # the reload goes back to the one before and says so.
    broken = Path(live) / f"gen-{on}" / dnsfilter.MAIN_FILE
    broken.write_text(broken.read_text() + "cache-size=lots\n")
    (Path(live) / dnsfilter.STATUS).unlink()
    result = village.reload()
    assert result["result"] == "rolled-back" and result["generation"] == off, result
    assert json.loads((Path(live) / dnsfilter.STATUS).read_text())["failed"] == on
    assert addresses(dns_query(testbed, online.ns, GW_LAN_IP, "z.example")) == [ANY_IP]
