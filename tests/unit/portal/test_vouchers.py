"""The voucher domain (hotspot/vouchers/): codes, storage, batches, redemption exactly once,
moves, top-ups, refusals and the brake on guessing — and the same through the portal."""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import re
import threading

import pytest
from sqlalchemy import select

from hotspot.errors import ErrorCode, Refused
from hotspot.model import ClientSession, Voucher, VoucherDevice
from hotspot.units import MB
from hotspot.vouchers.batches import batch_codes, create_batch
from hotspot.vouchers.codes import ALPHABET, CODE_LENGTH, code_hash, format_code, normalize_code
from hotspot.vouchers.errors import VoucherError
from hotspot.vouchers.lookup import find_voucher, voucher_state
from hotspot.vouchers.packages import sync_packages
from hotspot.vouchers.redemption import (
    BIND_LEASE_SECONDS,
    TAKEOVER_SECONDS,
    RateLimited,
    VoucherService,
)
from hotspot.vouchers.withdrawal import void_voucher
from tests.unit.portal.conftest import OTHER_IP, OTHER_MAC, PHONE_IP, PHONE_MAC, Phone

THIRD_IP, THIRD_MAC = "10.10.0.13", "02:00:00:00:00:03"


def expect(code: str, fn, *args, **kw):
    with pytest.raises(VoucherError) as err:
        fn(*args, **kw)
    assert err.value.code == code, err.value.message
    return err.value


# -- codes ---------------------------------------------------------------------------------------


def test_alphabet_has_no_look_alikes_and_enough_entropy():
    assert not set("01OIL") & set(ALPHABET)
    assert len(set(ALPHABET)) == len(ALPHABET) == 31
    assert CODE_LENGTH * math.log2(len(ALPHABET)) >= 40


def test_codes_are_grouped_and_input_is_forgiving(db, key, packages):
    codes = create_batch(db, key, "harian", 50).codes
    assert len(set(codes)) == 50
    for code in codes:
        assert re.fullmatch(r"[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{4}-[2-9A-HJKMNP-Z]{2}", code)
    code = codes[0]
    bare = code.replace("-", "")
    for typed in (
        code,
        bare,
        bare.lower(),
        f"  {bare[:3]} {bare[3:7]}-{bare[7:]} ",
        "–".join(code.split("-")),
    ):
        assert normalize_code(typed) == bare
    assert format_code(bare) == code
    for bad in (
        "",
        "ABC",
        bare + "2",
        bare[:-1] + "0",
        bare[:-1] + "O",
        bare[:-1] + "I",
        bare[:-1] + "1",
        bare[:-1] + "L",
        "x" * 100,
        None,
    ):
        assert normalize_code(bad) is None


def test_database_holds_no_code(db, key, packages, cfg):
    codes = create_batch(db, key, "harian", 20).codes
    from hotspot.config import database_path

    db.dispose()
    raw = database_path(cfg.database.url).read_bytes()
    wal = database_path(cfg.database.url).with_name("hotspot.db-wal")
    if wal.exists():
        raw += wal.read_bytes()
    for code in codes:
        assert code.encode() not in raw and code.replace("-", "").encode() not in raw
    with db.connect() as conn:
        hashes = set(conn.execute(select(Voucher.code_hash)).scalars())
    assert hashes == {code_hash(key, normalize_code(c)) for c in codes}
    assert code_hash(b"another key" * 3, normalize_code(codes[0])) not in hashes


def test_a_sheet_can_be_printed_again_with_the_key_only(db, key, packages, vouchers):
    batch = create_batch(db, key, "harian", 5)
    assert [c for _, c in batch_codes(db, key, batch.id)] == batch.codes
    vouchers.redeem(batch.codes[1], ip=PHONE_IP, mac=PHONE_MAC)
    assert batch_codes(db, key, batch.id) == [
        (i + 1, c) for i, c in enumerate(batch.codes) if i != 1
    ]
    with pytest.raises(Exception, match="not the one"):
        batch_codes(db, b"wrong key" * 4, batch.id)


def test_batches_copy_the_package_terms(db, key, cfg, packages):
    batch = create_batch(db, key, "harian", 2)
    import dataclasses

    sync_packages(db, [dataclasses.replace(cfg.packages["harian"], hours=48, price=9000)])
    from hotspot.model import VoucherBatch

    with db.connect() as conn:
        row = conn.execute(select(VoucherBatch).where(VoucherBatch.id == batch.id)).first()
    assert (row.hours, row.price, row.data_mb) == (24, 5000, 1000)
    with pytest.raises(Exception):
        create_batch(db, key, "harian", 0)
    with pytest.raises(Exception):
        create_batch(db, key, "no-such-package", 1)


def test_packages_from_config_are_synced_once(db, cfg, packages):
    assert sync_packages(db, cfg.packages.values()) == 0  # already there, unchanged
    from hotspot.vouchers.packages import list_packages

    names = [p.name for p in list_packages(db)]
    assert names == ["basi", "harian", "keluarga", "mingguan"]  # cheapest first


# -- redemption ------------------------------------------------------------------------------------


def test_first_use_authorizes_the_package(vouchers, batch, gw, clock):
    code = batch()[0]
    done = vouchers.redeem(code.lower().replace("-", " "), ip=PHONE_IP, mac=PHONE_MAC)
    assert done.first_use and done.tier == "premium" and done.title == "Harian"
    assert done.expires_at == clock.now + dt.timedelta(hours=24)
    (auth,) = gw.ops("authorize")
    assert auth == {
        "op": "authorize",
        "ip": PHONE_IP,
        "tier": "premium",
        "source": "voucher",
        "expires_at": "2026-11-29T03:00:00Z",
        "bytes_limit": 1000 * MB,
        "voucher_id": done.voucher_id,
    }
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["voucher_id"] == done.voucher_id and sess["bytes_limit"] == 1000 * MB
    state = voucher_state(vouchers.engine, done.voucher_id)
    assert state["state"] == "active" and state["devices"] == [PHONE_MAC]


def test_reentering_a_running_code_reconnects(vouchers, batch, gw, engine, clock):
    code = batch()[0]
    first = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    clock.advance(hours=2)
    engine.deauthorize(ip=PHONE_IP, reason="idle-timeout")
    again = vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    assert not again.first_use and again.expires_at == first.expires_at  # time counts on
    assert gw.call("client", ip=PHONE_IP)["session"]["expires_at"] == "2026-11-29T03:00:00Z"


def test_quota_counts_across_sessions(vouchers, batch, gw, engine, datapath, clock):
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    datapath.traffic(PHONE_IP, down=400 * MB, packets=1000)
    engine.tick(force_flush=True)
    engine.deauthorize(ip=PHONE_IP, reason="idle-timeout")
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    limit = gw.ops("authorize")[-1]["bytes_limit"]
    assert limit == 1000 * MB  # the voucher's whole quota: the gateway counts every session
    assert gw.call("client", ip=PHONE_IP)["session"]["bytes_remaining"] == 600 * MB
    datapath.traffic(PHONE_IP, down=600 * MB, packets=1000)
    engine.tick(force_flush=True)  # the gateway ends the session at the cap
    assert gw.call("client", ip=PHONE_IP)["session"] is None
    expect("voucher-exhausted", vouchers.redeem, code, ip=PHONE_IP, mac=PHONE_MAC)


def test_a_code_in_use_is_refused_to_another_phone(vouchers, batch, gw):
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    expect("voucher-used", vouchers.redeem, code, ip=OTHER_IP, mac=OTHER_MAC)
    assert gw.call("client", ip=OTHER_IP)["session"] is None


def test_a_long_gone_owner_gives_its_place(vouchers, batch, gw, engine, datapath, clock):
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    # Another device (no device cookie of the owner's) asks while the owner is around, and
    # after the owner fell silent for a few minutes (the old 180 s rule): refused both times.
    clock.advance(seconds=BIND_LEASE_SECONDS + 1)
    expect("voucher-used", vouchers.redeem, code, ip=OTHER_IP, mac=OTHER_MAC)  # old one is busy
    clock.advance(seconds=180)
    expect("voucher-used", vouchers.redeem, code, ip=OTHER_IP, mac=OTHER_MAC)
    clock.advance(seconds=TAKEOVER_SECONDS)
    done = vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC)
    assert done.moved_from == PHONE_MAC
    assert gw.call("client", ip=PHONE_IP)["session"] is None  # the old one was let go
    assert gw.ops("deauthorize")[-1] == {
        "op": "deauthorize",
        "mac": PHONE_MAC,
        "reason": "replaced",
    }
    state = voucher_state(vouchers.engine, done.voucher_id)
    assert state["devices"] == [OTHER_MAC]


def test_a_device_that_left_gives_its_place(vouchers, batch, engine, clock):
    code = batch()[0]
    vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    engine.deauthorize(ip=PHONE_IP, reason="logout")
    clock.advance(seconds=BIND_LEASE_SECONDS + 1)
    expect("voucher-used", vouchers.redeem, code, ip=OTHER_IP, mac=OTHER_MAC)
    clock.advance(seconds=TAKEOVER_SECONDS)
    assert vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC).moved_from == PHONE_MAC


def test_family_voucher_joins_up_to_its_limit(vouchers, batch, datapath, gw):
    datapath.neighbours[THIRD_IP] = THIRD_MAC
    datapath.neighbours["10.10.0.14"] = "02:00:00:00:00:04"
    code = batch("keluarga", 1)[0]
    assert vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC).first_use
    assert vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC).joined
    assert vouchers.redeem(code, ip=THIRD_IP, mac=THIRD_MAC).joined
    expect("voucher-used", vouchers.redeem, code, ip="10.10.0.14", mac="02:00:00:00:00:04")
    ids = {
        gw.call("client", ip=ip)["session"]["voucher_id"] for ip in (PHONE_IP, OTHER_IP, THIRD_IP)
    }
    assert len(ids) == 1


def test_a_second_code_tops_up_time_and_data(vouchers, batch, gw, engine, datapath, clock):
    first, second = batch("harian", 2)
    one = vouchers.redeem(first, ip=PHONE_IP, mac=PHONE_MAC)
    datapath.traffic(PHONE_IP, down=300 * MB, packets=1000)
    engine.tick(force_flush=True)
    clock.advance(hours=4)
    two = vouchers.redeem(second, ip=PHONE_IP, mac=PHONE_MAC)
    assert two.topped_up == one.voucher_id
    assert two.expires_at == clock.now + dt.timedelta(hours=20 + 24)  # what was left + 24 h
    limit = gw.ops("authorize")[-1]["bytes_limit"]
    assert limit == 1700 * MB  # 700 MB left + 1000 MB
    sess = gw.call("client", ip=PHONE_IP)["session"]
    assert sess["voucher_id"] == two.voucher_id and sess["expires_at"] == "2026-11-30T03:00:00Z"
    assert voucher_state(vouchers.engine, one.voucher_id)["state"] == "merged"
    # The old code now leads to the new one on this device, and nowhere else.
    assert vouchers.redeem(first, ip=PHONE_IP, mac=PHONE_MAC).voucher_id == two.voucher_id
    expect("voucher-used", vouchers.redeem, first, ip=OTHER_IP, mac=OTHER_MAC)


def test_expired_void_and_unknown(vouchers, batch, db, clock):
    stale = batch("basi", 1)[0]  # shelf life: one day
    clock.advance(days=2)
    expect("voucher-expired", vouchers.redeem, stale, ip=PHONE_IP, mac=PHONE_MAC)
    short = batch("basi", 1)[0]
    vouchers.redeem(short, ip=PHONE_IP, mac=PHONE_MAC)
    clock.advance(hours=1, seconds=1)
    expect("voucher-expired", vouchers.redeem, short, ip=PHONE_IP, mac=PHONE_MAC)
    void = batch("harian", 1)[0]
    assert void_voucher(db, find_voucher(db, vouchers.key, void), "lost sheet")
    expect("voucher-void", vouchers.redeem, void, ip=PHONE_IP, mac=PHONE_MAC)
    expect("voucher-unknown", vouchers.redeem, "2345-6789-AB", ip=PHONE_IP, mac=PHONE_MAC)


def test_a_refused_device_does_not_burn_the_voucher(vouchers, batch, engine, db):
    code = batch()[0]
    engine.block(mac=PHONE_MAC, reason="test")
    with pytest.raises(Refused):
        vouchers.redeem(code, ip=PHONE_IP, mac=PHONE_MAC)
    vid = find_voucher(db, vouchers.key, code)
    assert voucher_state(db, vid)["state"] == "new" and voucher_state(db, vid)["devices"] == []
    assert vouchers.redeem(code, ip=OTHER_IP, mac=OTHER_MAC).first_use


def test_guessing_is_braked(vouchers, batch, clock):
    good = batch()[0]
    for guess in ("2345-6789-AB", "nonsense", "3456-789A-BC", "", "4567-89AB-CD"):
        expect("voucher-unknown", vouchers.redeem, guess, ip=PHONE_IP, mac=PHONE_MAC)
    err = expect("rate-limited", vouchers.redeem, good, ip=PHONE_IP, mac=PHONE_MAC)
    assert isinstance(err, RateLimited) and err.retry_after == 300
    # Another device is not affected; this one may try again after the cool-down.
    expect("voucher-unknown", vouchers.redeem, "2345-6789-AB", ip=OTHER_IP, mac=OTHER_MAC)
    clock.advance(seconds=301)
    assert vouchers.redeem(good, ip=PHONE_IP, mac=PHONE_MAC).first_use


def test_wrong_codes_spread_out_are_not_braked(vouchers, clock):
    for _ in range(12):
        expect("voucher-unknown", vouchers.redeem, "2345-6789-AB", ip=PHONE_IP, mac=PHONE_MAC)
        clock.advance(seconds=20)  # 3 a minute


# -- exactly once, for real ----------------------------------------------------------------------


def _phones(datapath, n):
    out = []
    for i in range(n):
        ip, mac = f"10.10.1.{i + 1}", f"02:00:00:01:00:{i:02x}"
        datapath.neighbours[ip] = mac
        out.append((ip, mac))
    return out


def _redeem_outcome(svc, code, ip, mac) -> str:
    """One phone's attempt: "ok", or the refusal's code."""
    try:
        svc.redeem(code, ip=ip, mac=mac)
        return "ok"
    except VoucherError as exc:
        return exc.code


@pytest.mark.parametrize("package, winners", [("harian", 1), ("keluarga", 3)])
def test_same_code_same_moment_threads(package, winners, db, key, gw, datapath, batch):
    """Twelve phones type the same code at once, each on its own connection to a real
    SQLite file: exactly ``devices`` of them get in, the rest are told it is in use."""
    code = batch(package, 1)[0]
    phones = _phones(datapath, 12)
    start = threading.Barrier(len(phones))
    results: list[str] = []

    def attempt(ip, mac):
        svc = VoucherService(db, key, gw)
        start.wait()
        results.append(_redeem_outcome(svc, code, ip, mac))

    threads = [threading.Thread(target=attempt, args=p) for p in phones]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["ok"] * winners + ["voucher-used"] * (12 - winners)
    with db.connect() as conn:
        assert len(conn.execute(select(VoucherDevice)).all()) == winners
        assert conn.execute(select(Voucher.state)).scalars().all() == ["active"]
    online = [ip for ip, _ in phones if gw.call("client", ip=ip)["session"]]
    assert len(online) == winners


def _redeem_in_process(url, key, code, ip, mac, barrier, out):
    """Runs in a separate process: its own engine, its own (fake-kernel) gateway."""
    from hotspot import config as config_mod
    from hotspot.db import make_engine

    engine = make_engine(url, synchronous="FULL")

    class Gate:  # the gateway of this process: accepts everything, as a real one would here
        def call(self, op, **args):
            return {"op": op, **args}

    svc = VoucherService(engine, key, Gate())
    barrier.wait()
    out.put(_redeem_outcome(svc, code, ip, mac))
    engine.dispose()
    del config_mod


def test_same_code_same_moment_processes(cfg, db, key, batch):
    code = batch("harian", 1)[0]
    ctx = multiprocessing.get_context("fork")  # each child opens its own engine below
    n = 6
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(
            target=_redeem_in_process,
            args=(
                cfg.database.url,
                key,
                code,
                f"10.10.1.{i + 1}",
                f"02:00:00:01:00:{i:02x}",
                barrier,
                out,
            ),
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    results = sorted(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(30)
    assert results == ["ok"] + ["voucher-used"] * (n - 1)
    with db.connect() as conn:
        assert len(conn.execute(select(VoucherDevice)).all()) == 1


def test_same_phone_twice_at_once_is_one_redemption(db, key, gw, batch):
    code = batch()[0]
    start = threading.Barrier(4)
    results = []

    def attempt():
        start.wait()
        results.append(VoucherService(db, key, gw).redeem(code, ip=PHONE_IP, mac=PHONE_MAC))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4 and sum(r.first_use for r in results) == 1
    with db.connect() as conn:
        assert (
            len(conn.execute(select(ClientSession).where(ClientSession.ended_at.is_(None))).all())
            == 1
        )


# -- through the portal -----------------------------------------------------------------------------


def test_voucher_through_the_portal(phone, batch, gw, app):
    code = batch()[0]
    first = phone.get("/generate_204", base_url="http://connectivitycheck.gstatic.com")
    loc = first.headers["Location"]
    resp = phone.form("/voucher", {"code": " " + code.lower().replace("-", " ") + " "}, page=loc)
    assert resp.status_code == 303
    page = phone.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Anda sudah tersambung" in page
    assert "Voucher Harian Anda aktif sampai 10.00 WIB (besok)" in page and "1 GB" in page
    assert 'id="continue" href="http://connectivitycheck.gstatic.com/generate_204"' in page
    status = phone.get("/").get_data(as_text=True)
    assert "Premium (voucher)" in status and "Sisa kuota" in status and "1 hari" in status
    assert "Tambah voucher" in status  # a second code tops up


@pytest.mark.parametrize(
    "setup, status, message",
    [
        ("unknown", 400, "Kode tidak berlaku"),
        ("badformat", 400, "Kode tidak berlaku"),
        ("used", 409, "sedang dipakai perangkat lain"),
        ("expired", 410, "sudah kedaluwarsa"),
        ("void", 410, "dibatalkan oleh BUMDes"),
    ],
)
def test_voucher_messages(phone, other_phone, batch, db, key, clock, setup, status, message):
    code = {"unknown": "2345-6789-AB", "badformat": "0000-OOOO-IL"}.get(setup)
    if code is None:
        code = batch("basi" if setup == "expired" else "harian", 1)[0]
    if setup == "used":
        assert other_phone.form("/voucher", {"code": code}).status_code == 303
    if setup == "expired":
        clock.advance(days=2)
    if setup == "void":
        void_voucher(db, find_voucher(db, key, code))
    resp = phone.form("/voucher", {"code": code})
    assert resp.status_code == status
    page = resp.get_data(as_text=True)
    assert message in page and 'role="alert"' in page and 'aria-invalid="true"' in page


def test_portal_brakes_guessing(phone, batch):
    good = batch()[0]
    for i in range(5):
        assert phone.form("/voucher", {"code": f"2345-6789-{ALPHABET[i]}B"}).status_code == 400
    resp = phone.form("/voucher", {"code": good})
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "300"
    assert "Tunggu 5 menit" in resp.get_data(as_text=True)


def test_vouchers_off_without_a_key(cfg, gw, db, clock, packages):
    from portal import create_app
    from portal.startup import prepare

    # No voucher key file:
    app = create_app(state=prepare(cfg, gateway=gw, db=db, secret_key=b"s" * 32, clock=clock))
    phone = Phone(app)
    page = phone.get("/").get_data(as_text=True)
    assert 'name="code"' not in page and "Terima" in page
    resp = phone.post("/voucher", data={**phone.hidden(), "code": "2345-6789-AB"})
    assert resp.status_code == 503


def test_gateway_refusal_is_explained_and_the_voucher_kept(phone, batch, gw, db, key, monkeypatch):
    code = batch()[0]
    real = gw.call

    def refuse(op, **args):
        if op == "authorize":
            raise Refused("today's premium allowance is used up", code=ErrorCode.QUOTA_EXHAUSTED)
        return real(op, **args)

    monkeypatch.setattr(gw, "call", refuse)
    resp = phone.form("/voucher", {"code": code})
    assert resp.status_code == 403 and "Jatah hari ini sudah habis" in resp.get_data(as_text=True)
    assert voucher_state(db, find_voucher(db, key, code))["state"] == "new"
