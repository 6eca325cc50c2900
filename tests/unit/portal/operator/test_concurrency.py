"""Exactly once, against the real SQLite file with separate processes (as gunicorn workers
are): one code entered on two phones at the same moment, and one card sold by two kasirs at
the same moment."""

from __future__ import annotations

import multiprocessing

import pytest

from hotspot.audit import Actor
from hotspot.db import make_engine
from hotspot.errors import HotspotError
from hotspot.vouchers.batches import batch_vouchers
from hotspot.vouchers.lookup import find_voucher, voucher_state
from hotspot.vouchers.redemption import VoucherService
from hotspot.vouchers.sales import mark_sold

N = 6  # contenders per round


def _sell(url: str, voucher_id: int, who: str, start, out) -> None:
    engine = make_engine(url, synchronous="FULL")
    start.wait(10)
    try:
        mark_sold(engine, voucher_id, actor=Actor(who, None, "kasir"))
        out.put(("ok", who))
    except HotspotError as exc:
        out.put((exc.code, who))
    finally:
        engine.dispose()


class _NoGateway:
    """Says yes to every authorize, like a healthy gateway (no kernel in a child process)."""

    def call(self, op, **args):
        return {"id": 1, "mac": "x", "ip": args.get("ip"), "tier": args.get("tier")}


def _redeem(url: str, key: bytes, code: str, i: int, start, out) -> None:
    engine = make_engine(url, synchronous="FULL")
    svc = VoucherService(engine, key, _NoGateway())
    start.wait(10)
    try:
        svc.redeem(code, ip=f"10.10.0.{20 + i}", mac=f"02:00:00:00:01:{i:02x}")
        out.put(("ok", i))
    except HotspotError as exc:
        out.put((exc.code, i))
    finally:
        engine.dispose()


def _race(target, args_for) -> list[tuple[str, object]]:
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Barrier(N), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), start, out)) for i in range(N)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    return results


@pytest.mark.parametrize("round_", range(3))
def test_two_kasirs_one_card(db, key, cfg, batch, round_):
    code = batch("harian", 1)[0]
    vid = find_voucher(db, key, code)
    db.dispose()
    results = _race(_sell, lambda i: (cfg.database.url, vid, f"kasir{i}"))
    assert sorted(r for r, _ in results) == ["ok"] + ["voucher-sold"] * (N - 1)
    rows = batch_vouchers(db, 1)
    assert rows[0]["sold_at"] is not None
    winner = next(w for r, w in results if r == "ok")
    assert rows[0]["operator"] == winner


@pytest.mark.parametrize("package,winners", [("harian", 1), ("keluarga", 3)])
def test_phones_entering_one_code_at_once(db, key, cfg, batch, package, winners):
    code = batch(package, 1)[0]
    db.dispose()
    results = _race(_redeem, lambda i: (cfg.database.url, key, code, i))
    outcomes = sorted(r for r, _ in results)
    assert outcomes == ["ok"] * winners + ["voucher-used"] * (N - winners)
    vid = find_voucher(db, key, code)
    assert len(voucher_state(db, vid)["devices"]) == winners
