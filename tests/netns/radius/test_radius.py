"""RADIUS against a real FreeRADIUS (issue #16), with the real gateway, portal and traffic.

Login, reject, limits in the kernel (HTB ceil from WISPr, Session-Timeout, a data cap),
accounting records in FreeRADIUS's SQL with the gateway's exact byte counts, CoA and
Disconnect with their replay protection, the server down and back, and abuse: guessing
through the RADIUS form, a server that answers garbage.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time

from tests.netns.helpers import after_ticks, client_minor, curl, tc_classes, wait_until
from testsupport.testbed import UPSTREAM_IP, WAN_GW_IP, WAN_UP_IP, stop_process_group

from .conftest import PORTAL, SECRET, dynauth, login

WRONG = "Nama pengguna atau kata sandi salah"
UNREACHABLE = "Server akun tidak dapat dihubungi"


def gw_session(gw, mac: str) -> dict | None:
    return gw.call("client", mac=mac)["session"]


def acct_id(gw, session_id: int) -> str:
    db = gw.workdir / "hotspot.db"
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT acct_session_id FROM radius_session WHERE session_id = ?", (session_id,)
        ).fetchone()[0]


def start_broken_server(bed, mode: str, count, log_path):
    """tests/netns/radius/fake_server.py in MODE on the server's address and port, once it
    is bound (it writes 0 to COUNT then, and how many requests it got after each)."""
    from .conftest import FAKE_SERVER

    count.unlink(missing_ok=True)
    proc = bed.popen(
        bed.up,
        sys.executable,
        FAKE_SERVER,
        UPSTREAM_IP,
        "1812",
        mode,
        str(count),
        log_path=log_path,
    )
    wait_until(count.exists, 10, what=f"the {mode} server bound")
    return proc


def queued(gw) -> list[tuple[int, str, int]]:
    with sqlite3.connect(gw.workdir / "hotspot.db") as c:
        return c.execute(
            "SELECT id, acct_session_id, status FROM radius_accounting ORDER BY id"
        ).fetchall()


def fetch(bed, phone, path: str, timeout: float = 60, limit_rate: str | None = None) -> int:
    """Download from the upstream web server; the bytes received (0 when it failed).
    ``limit_rate``: curl's ``--limit-rate`` (``"250K"``), a phone's pace instead of the veth's."""
    out = bed.run(
        phone.ns,
        "curl",
        *(["--limit-rate", limit_rate] if limit_rate else []),
        "-s",
        "-o",
        "/dev/null",
        "-m",
        str(timeout),
        "-w",
        "%{size_download}",
        f"http://{UPSTREAM_IP}/{path}",
        check=False,
        timeout=timeout + 5,
    )
    return int(out.stdout.strip() or 0)


def download(bed, phone, path: str, size: int) -> None:
    assert fetch(bed, phone, path) == size


def test_login_limits_accounting_coa_and_disconnect(
    testbed, village, radius_server, upstream, tmp_path
):
    phone = testbed.phones[0]
    jar = str(tmp_path / "a.jar")
    (upstream / "two.bin").write_bytes(b"\x5a" * 2_000_000)

    # A wrong password: the villager is told plainly, and nothing is let out.
    status, body, _ = login(testbed, phone, jar, "budi", "salah")
    assert status == 401 and WRONG in body
    assert gw_session(village, phone.mac) is None

    status, _, head = login(testbed, phone, jar, "budi", "rahasia")
    assert status == 303, head
    # The success page, then the status page of the running session.
    ok = testbed.run(phone.ns, "curl", "-s", "-m", "10", "-b", jar, f"{PORTAL}/ok").stdout
    assert "budi" in ok
    assert curl(testbed, phone.ns, f"{PORTAL}/", "-b", jar, timeout=10).code == "200"
    sess = gw_session(village, phone.mac)
    assert sess and sess["source"] == "radius" and sess["tier"] == "premium"
    # WISPr bits per second → the session's kbit/s, in the kernel's HTB classes.
    assert (sess["down_kbps"], sess["up_kbps"]) == (20_000, 4_000)
    minor = client_minor(phone.ip)
    assert tc_classes(testbed, "br-lan")[minor].ceil_bps == 20_000_000
    assert tc_classes(testbed, "eth0")[minor].ceil_bps == 4_000_000
    sid = acct_id(village, sess["id"])

    start = wait_until(lambda: radius_server.row(sid), 15, what="the Start record")
    assert start["username"] == "budi"
    assert start["framedipaddress"] == phone.ip
    assert start["callingstationid"] == phone.mac.upper().replace(":", "-")
    assert start["acctstoptime"] is None

    download(testbed, phone, "two.bin", 2_000_000)
    # An Interim-Update (every 10 s here) carries the running counts.
    wait_until(
        lambda: (radius_server.row(sid) or {}).get("acctoutputoctets", 0) >= 2_000_000,
        30,
        what="an Interim-Update with the download",
    )
    assert any(s == sid and kind == "Interim-Update" for s, kind, _ in radius_server.received())

    # CoA: the server lowers the rate; the kernel follows at once.
    reply = dynauth(testbed, "coa", {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 5_000_000})
    assert reply.get("code") == 44, reply  # CoA-ACK
    wait_until(
        lambda: tc_classes(testbed, "br-lan")[minor].ceil_bps == 5_000_000, 5, what="new ceil"
    )
    saved = str(tmp_path / "coa-8M.bin")
    reply = dynauth(
        testbed,
        "coa",
        {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 8_000_000},
        extra=("--save", saved),
    )
    assert reply.get("code") == 44
    wait_until(lambda: tc_classes(testbed, "br-lan")[minor].ceil_bps == 8_000_000, 5, what="8M")
    dynauth(testbed, "coa", {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 6_000_000})
    wait_until(lambda: tc_classes(testbed, "br-lan")[minor].ceil_bps == 6_000_000, 5, what="6M")

    # Replays and forgeries change nothing.
    # 1. The captured 8M request sent again: answered as before, not applied again.
    again = dynauth(testbed, "coa", {}, extra=("--replay", saved))
    assert again.get("code") == 44
    # 2. A request whose Event-Timestamp is ten minutes old: dropped, no answer.
    stale = dynauth(
        testbed,
        "coa",
        {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 1_000_000},
        extra=("--age", "600"),
    )
    assert stale == {"timeout": True}
    # 3. The wrong shared secret: dropped.
    forged = dynauth(
        testbed,
        "coa",
        {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 1_000_000},
        secret="tebakan",
    )
    assert forged == {"timeout": True}
    # 4. No Message-Authenticator: dropped.
    bare = dynauth(
        testbed,
        "coa",
        {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 1_000_000},
        extra=("--no-ma",),
    )
    assert bare == {"timeout": True}
    # 5. The right secret from an address that is not a configured server: never reaches it.
    elsewhere = dynauth(
        testbed,
        "coa",
        {"Acct-Session-Id": sid, "WISPr-Bandwidth-Max-Down": 1_000_000},
        source=WAN_UP_IP,
    )
    assert elsewhere == {"timeout": True}
    # 6. Garbage from the server's address: no crash, no answer.
    assert dynauth(testbed, "coa", {}, extra=("--raw", "2b" * 30)) == {"timeout": True}
    time.sleep(1)
    assert tc_classes(testbed, "br-lan")[minor].ceil_bps == 6_000_000
    assert gw_session(village, phone.mac)["down_kbps"] == 6_000

    # A CoA for a session that does not exist: NAK, Session-Context-Not-Found.
    nak = dynauth(testbed, "coa", {"Acct-Session-Id": "NOPE", "WISPr-Bandwidth-Max-Down": 1})
    assert nak.get("code") == 45 and nak["attributes"]["Error-Cause"] == [
        "Session-Context-Not-Found"
    ]

    # Disconnect, sent with FreeRADIUS's own radclient (what daloRADIUS runs): the session
    # ends, and Stop says Admin-Reset with the gateway's exact counts.
    # radclient cannot choose its source address: the server host's route to the village
    # does (a datagram from any other address of it would be dropped, see above).
    testbed.run(
        testbed.up, "ip", "route", "replace", f"{WAN_GW_IP}/32", "dev", "eth0", "src", UPSTREAM_IP
    )
    sent = testbed.run(
        testbed.up,
        "sh",
        "-c",
        f'echo \'Acct-Session-Id = "{sid}", Event-Timestamp = {int(time.time())}, '
        f"Message-Authenticator = 0x00' | radclient -x -r 1 -t 3 {WAN_GW_IP}:3799 disconnect "
        f"{SECRET}",
        check=False,
    )
    assert "Disconnect-ACK" in sent.stdout, sent.stdout + sent.stderr
    assert gw_session(village, phone.mac) is None
    ended = village.call("client", mac=phone.mac)["last_session"]
    assert ended["end_reason"] == "admin-kick"
    stop = wait_until(
        lambda: (r := radius_server.row(sid)) and r["acctstoptime"] and r, 15, what="Stop"
    )
    assert stop["acctterminatecause"] == "Admin-Reset"
    assert stop["acctoutputoctets"] == ended["bytes_down"]
    assert stop["acctinputoctets"] == ended["bytes_up"]
    # What the phone downloaded, with its TCP/IP headers (a few percent), no more.
    assert 2_000_000 <= stop["acctoutputoctets"] <= 2_000_000 * 1.06 + 20_000
    assert stop["class"] == "0x6b656c61732d61"  # the Access-Accept's Class, echoed
    # FreeRADIUS writes the row before it answers: the gateway deletes the record on the answer.
    wait_until(lambda: queued(village) == [], 5, what="the queue empty")


def test_session_timeout_and_data_cap_end_sessions(
    testbed, village, radius_server, upstream, tmp_path
):
    a, b = testbed.phones[0], testbed.phones[1]
    (upstream / "three.bin").write_bytes(b"\x33" * 3_000_000)
    # A printed code alone (sent as name and password): Session-Timeout = 4 s.
    status, _, head = login(testbed, a, str(tmp_path / "a.jar"), "SINGKAT7")
    assert status == 303, head
    short = gw_session(village, a.mac)
    sid_a = acct_id(village, short["id"])
    # A 1 MB data package.
    status, _, head = login(testbed, b, str(tmp_path / "b.jar"), "kuota", "kuota")
    assert status == 303, head
    capped = gw_session(village, b.mac)
    assert capped["bytes_limit"] == 1_000_000
    sid_b = acct_id(village, capped["id"])
    # At a phone's pace (250 KiB/s, the cap in about 4 s): at the veth's unshaped speed the
    # bytes that pass between the counters' read and the class going are a measure of the
    # machine's load, not of the gateway (408 kB of them at load 15-20).
    assert fetch(testbed, b, "three.bin", timeout=20, limit_rate="250K") < 3_000_000  # the cap

    wait_until(lambda: gw_session(village, a.mac) is None, 10, what="Session-Timeout")
    wait_until(lambda: gw_session(village, b.mac) is None, 10, what="the data cap")
    assert village.call("client", mac=a.mac)["last_session"]["end_reason"] == "session-timeout"
    last_b = village.call("client", mac=b.mac)["last_session"]
    assert last_b["end_reason"] == "quota"
    assert curl(testbed, b.ns, f"http://{UPSTREAM_IP}/", timeout=2).code != "200"

    stop_a = wait_until(
        lambda: (r := radius_server.row(sid_a)) and r["acctstoptime"] and r, 15, what="Stop a"
    )
    assert stop_a["acctterminatecause"] == "Session-Timeout"
    assert 3 <= stop_a["acctsessiontime"] <= 8, (stop_a, radius_server.received())
    stop_b = wait_until(
        lambda: (r := radius_server.row(sid_b)) and r["acctstoptime"] and r, 15, what="Stop b"
    )
    assert stop_b["acctterminatecause"] == "Session-Timeout"
    # The Stop carries the counters read when the session ended; what passed in the moment
    # until its class went is added to the gateway's own figures at the next tick, not to
    # the Stop (docs/radius.md). At the phone's pace that is a few packets.
    after_ticks(village, 2)  # the next tick: the late bytes written
    final_b = village.call("client", mac=b.mac)["last_session"]
    assert final_b["id"] == last_b["id"]
    assert 1_000_000 - 50_000 <= stop_b["acctoutputoctets"] <= final_b["bytes_down"]
    assert final_b["bytes_down"] - stop_b["acctoutputoctets"] <= 0.1 * final_b["bytes_down"]
    assert stop_b["acctinputoctets"] <= final_b["bytes_up"]


def test_server_down_cached_logins_and_accounting_replayed_in_order(
    gateway_factory, upstream, testbed, tmp_path, radius_server
):
    from .conftest import start_village

    gw = start_village(gateway_factory, testbed, tmp_path, {"offline": "cached"})
    a, b = testbed.phones[0], testbed.phones[1]
    (upstream / "one.bin").write_bytes(b"\x11" * 1_000_000)
    jar = str(tmp_path / "a.jar")
    status, _, _ = login(testbed, a, jar, "budi", "rahasia")
    assert status == 303
    first = gw_session(gw, a.mac)
    sid_first = acct_id(gw, first["id"])
    wait_until(lambda: radius_server.row(sid_first), 15, what="Start")

    # The uplink's far end goes away (the server is down for days).
    radius_server.stop()
    # The running session carries on without it.
    assert fetch(testbed, a, "one.bin") == 1_000_000
    gw.call("deauthorize", mac=a.mac, reason="logout")
    # A name and password that logged in lately: let in again from the cache.
    status, _, head = login(testbed, a, jar, "budi", "rahasia")
    assert status == 303, head
    offline = gw_session(gw, a.mac)
    assert offline["source"] == "radius" and offline["down_kbps"] == 20_000
    assert offline["expires_at"] <= first["expires_at"]  # what remained, no more
    sid_offline = acct_id(gw, offline["id"])
    assert fetch(testbed, a, "one.bin") == 1_000_000
    # Anyone else: a clear page, no session.
    status, body, _ = login(testbed, b, str(tmp_path / "b.jar"), "budi", "tebakan")
    assert status == 503 and UNREACHABLE in body
    assert gw_session(gw, b.mac) is None
    gw.call("deauthorize", mac=a.mac, reason="logout")
    ended = gw.call("client", mac=a.mac)["last_session"]

    # Everything waits on disk, in order: the first session's Stop, the offline one's Start
    # and Stop.
    wait_until(lambda: len(queued(gw)) >= 3, 10, what="records queued")
    q = queued(gw)
    assert [(sid, status) for _, sid, status in q][-3:] == [
        (sid_first, 2),
        (sid_offline, 1),
        (sid_offline, 2),
    ]

    # A power cut while they wait: the gateway dies (kill -9) and comes back; the queue is
    # on disk, whole and in the same order.
    gw.kill9()
    gw.start()
    assert queued(gw) == q

    # The server comes back: the queue drains in the order it was written.
    radius_server.start()
    wait_until(lambda: not queued(gw), 90, interval=0.5, what="the queue drained")
    got = [(sid, kind) for sid, kind, _ in radius_server.received() if sid != "NOPE"]
    mine = [g for g in got if g[0] in (sid_first, sid_offline)]
    assert mine[-3:] == [(sid_first, "Stop"), (sid_offline, "Start"), (sid_offline, "Stop")]
    # Acct-Delay-Time says how late they are.
    assert max(d for s, k, d in radius_server.received() if s == sid_offline) >= 1
    stop = radius_server.row(sid_offline)
    assert stop["acctterminatecause"] == "User-Request"
    assert stop["acctoutputoctets"] == ended["bytes_down"] >= 1_000_000
    assert stop["acctinputoctets"] == ended["bytes_up"]


def test_refuse_when_down_guessing_braked_and_broken_servers_survived(
    gateway_factory, upstream, testbed, tmp_path
):
    """No FreeRADIUS here: first nobody answers (offline = refuse), then a server that
    answers garbage. And a phone that hammers the account form with guesses."""
    from .conftest import start_village

    gw = start_village(gateway_factory, testbed, tmp_path, {"timeout_seconds": 0.5})
    a, b = testbed.phones[0], testbed.phones[1]
    jar = str(tmp_path / "a.jar")
    started = time.monotonic()
    status, body, _ = login(testbed, a, jar, "budi", "rahasia")
    assert status == 503 and UNREACHABLE in body
    # A hang bound, not a speed figure: 1 server × 2 attempts × 0.5 s, then the page.
    assert time.monotonic() - started < 30, "the refusal waited on a dead server"
    assert gw_session(gw, a.mac) is None

    # Broken servers: garbage, an oversized datagram, a lying length, a wrong signature.
    count = tmp_path / "fake.count"
    for mode in ("garbage", "oversized", "short", "wrong-auth"):
        proc = start_broken_server(testbed, mode, count, tmp_path / f"fake-{mode}.log")
        status, body, _ = login(testbed, b, str(tmp_path / f"b-{mode}.jar"), "budi", "rahasia")
        assert status == 503 and UNREACHABLE in body, (mode, status)
        assert gw_session(gw, b.mac) is None
        stop_process_group(proc)
    assert int(count.read_text()) == 2  # the last one was asked twice, like each
    # The gateway's CoA port takes garbage from the server's address and carries on.
    assert dynauth(testbed, "coa", {}, extra=("--raw", "28" + "ff" * 5000)) == {"timeout": True}
    assert gw.call("ping")["pong"]

    # Guessing: the same brakes as voucher codes (5 wrong within the window → cool-down).
    # Phone B has 4 failures already (the broken servers above), phone A 1: A's sixth try
    # is braked before the server is asked at all.
    proc = start_broken_server(testbed, "wrong-auth", count, tmp_path / "fake-brake.log")
    statuses = []
    for i in range(7):
        status, body, head = login(testbed, a, jar, f"TEBAK{i:03d}")
        statuses.append(status)
    assert statuses == [503] * 4 + [429] * 3, statuses
    assert "Retry-After" in head
    asked = int(count.read_text())
    assert asked == 4 * 2, asked  # 4 guesses × 2 attempts reached the server, then none
    stop_process_group(proc)
    assert gw.call("ping")["pong"]


def test_pseudonym_as_calling_station_id(
    gateway_factory, upstream, testbed, tmp_path, radius_server
):
    """``calling_station_id = "pseudonym"``: the server sees the gateway's keyed pseudonym of
    the phone's MAC (the same hotspot.pseudonym gives with the gateway's key), in the
    Access-Request and in every accounting record, and never the MAC itself."""
    from hotspot import config as config_mod
    from hotspot.db import make_engine
    from hotspot.pseudonym import pseudonym, stored_key

    from .conftest import start_village

    gw = start_village(gateway_factory, testbed, tmp_path, {"calling_station_id": "pseudonym"})
    phone = testbed.phones[0]
    status, _, head = login(testbed, phone, str(tmp_path / "a.jar"), "budi", "rahasia")
    assert status == 303, head
    sid = acct_id(gw, gw_session(gw, phone.mac)["id"])
    start = wait_until(lambda: radius_server.row(sid), 15, what="the Start record")

    # The gateway's own key (generated once, kept in its database).
    config = config_mod.load(gw.config_path)
    engine = make_engine(config.database.url)
    try:
        key = stored_key(config, engine)
    finally:
        engine.dispose()
    assert key is not None
    expected = pseudonym(key, phone.mac)
    assert len(expected) == 16
    assert start["callingstationid"] == expected

    gw.call("deauthorize", mac=phone.mac, reason="logout")
    stop = wait_until(
        lambda: (r := radius_server.row(sid)) and r["acctstoptime"] and r, 15, what="Stop"
    )
    assert stop["callingstationid"] == expected
    # The portal's Access-Request said the same.
    log = radius_server.log.read_text(errors="replace")
    assert f'Calling-Station-Id = "{expected}"' in log.split("Received Access-Request")[1]
    # The MAC never left the village, in any notation, in any packet FreeRADIUS received.
    bare = phone.mac.replace(":", "").lower()
    flat = re.sub(r"[^0-9a-f]", "", log.lower())
    assert bare not in flat
