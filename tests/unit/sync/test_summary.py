"""The daily summary (issue #13, item 7): the message, once a day whatever the clock does,
what each Bot API answer means, the configuration. A fake clock and a fake transport; the
real HTTP exchanges are in test_summary_botapi.py."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from hotspot import config as config_mod
from hotspot import summary as summary_mod
from hotspot.audit import Actor
from hotspot.db import open_database
from hotspot.errors import ConfigError
from hotspot.model import Device, HourlyUsage, Voucher
from hotspot.model_summary import DailySummary, SummaryState, UplinkEvent
from hotspot.summary import Facts, Outages, compose
from hotspot.vouchers.batches import create_batch
from hotspot.vouchers.packages import sync_packages
from hotspot.vouchers.sales import mark_sold
from sync.summary import Sender, Verdict, classify
from tests.unit.sync.botapi import CHAT, TOKEN

# 2026-11-30 is a Monday; 13:00 UTC = 20:00 WIB
SEND_UTC = dt.datetime(2026, 11, 30, 13, 0)
MAC_RE = re.compile(r"([0-9a-f]{2}[:-]){5}[0-9a-f]{2}", re.I)
MACHINE = {"uptime": 3 * 86400 + 4 * 3600, "disk": 41.4}


def summary_config(tmp_path, **summary):
    return config_mod.load(
        overrides={
            "village": {"name": "Desa Sungai Duren", "timezone": "Asia/Jakarta"},
            "database": {"url": f"sqlite:///{tmp_path}/gw.db"},
            "control": {"socket": str(tmp_path / "control.sock")},
            "packages": {
                "harian": {"title": "Harian", "price": 5000, "tier": "premium", "hours": 24}
            },
            "summary": {
                "enabled": True,
                "telegram_bot_token": TOKEN,
                "telegram_chat_id": CHAT,
                "api_base": "http://127.0.0.1:9",
                **summary,
            },
        }
    )


@pytest.fixture
def cfg(tmp_path):
    return summary_config(tmp_path)


@pytest.fixture
def db(cfg):
    engine = open_database(cfg.database.url)
    yield engine
    engine.dispose()


class FakeBot:
    """Answers from a list (status, answer) or raises OSError for None; records texts."""

    def __init__(self, answers=None):
        self.answers = list(answers or [])
        self.sent: list[tuple[str, str, str]] = []

    def send(self, token, chat_id, text):
        self.sent.append((token, chat_id, text))
        answer = self.answers.pop(0) if self.answers else (200, {"ok": True, "result": {}})
        if answer is None:
            raise OSError("Telegram unreachable: [Errno 101] Network is unreachable")
        return answer


class Clock:
    def __init__(self, now: dt.datetime):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def sender(cfg, db, clock, bot=None, **kw):
    return Sender(
        cfg,
        db,
        transport=bot or FakeBot(),
        clock=clock,
        rng=lambda: 0.5,
        sleep=lambda s: None,
        probe=lambda url: (None, None),
        machine=MACHINE,
        **kw,
    )


def rows(db):
    with Session(db) as s:
        return list(s.scalars(select(DailySummary).order_by(DailySummary.id)))


# -- the message --------------------------------------------------------------------------


FACTS = Facts(
    village="Desa Sungai Duren",
    day=dt.date(2026, 11, 30),
    zone="WIB",
    sales_count=14,
    sales_rupiah=95000,
    kasir_cash=[("siti", 40000), ("budi", 55000)],
    agent_cash=[("warung-ani", 30000)],
    unrecorded=2,
    devices=87,
    data_bytes=12_345_678_901,
    uptime_s=3 * 86400 + 4 * 3600 + 59,
    disk_pct=41.4,
    outages=Outages(2, 35),
)


def test_compose_reads_like_the_heads_message():
    assert compose(FACTS) == "\n".join(
        [
            "Ringkasan WiFi Desa Sungai Duren",
            "Senin, 30 November 2026 (WIB)",
            "",
            "Penjualan: 14 voucher, Rp 95.000",
            "Uang per kasir:",
            "- budi: Rp 55.000",
            "- siti: Rp 40.000",
            "Setoran per agen:",
            "- warung-ani: Rp 30.000",
            "Dipakai tanpa dicatat kasir: 2 voucher",
            "",
            "Perangkat dilayani: 87",
            "Data terpakai: 12,3 GB",
            "",
            "Gateway: menyala 3 hari 4 jam, penyimpanan terisi 41%",
            "Internet putus: 2 kali, total 35 menit",
        ]
    )


def test_compose_without_agents_or_sales_or_health():
    f = Facts(
        village="Desa X",
        day=dt.date(2026, 12, 6),
        zone="WITA",
        sales_count=0,
        sales_rupiah=0,
        kasir_cash=[],
        outages=None,
    )
    text = compose(f)
    assert "agen" not in text
    assert "Minggu, 6 Desember 2026 (WITA)" in text
    assert "Uang per kasir: tidak ada penjualan tercatat" in text
    assert "Gateway: tidak terbaca" in text
    assert "Internet putus: tidak tercatat" in text
    assert "Internet putus: tidak pernah" in compose(
        Facts("Desa X", dt.date(2026, 12, 6), "WIT", 0, 0, [], outages=Outages(0, 0))
    )


def test_compose_stays_one_message_with_many_kasir_and_long_names():
    many = [(f"kasir{i:03d}-" + "x" * 80, 1000 * i) for i in range(200)]
    f = Facts("D" * 500, dt.date(2026, 11, 30), "WIB", 200, 10**9, many, agent_cash=many)
    text = compose(f)
    assert len(text) <= summary_mod.MAX_CHARS < 4096
    assert "- dan 185 lainnya:" in text
    assert text.count("\n- ") == 2 * (summary_mod.MAX_NAMES + 1)


def _sell(db, cfg, count: int, kasir: str | None, at: dt.datetime) -> None:
    sync_packages(db, cfg.packages.values())
    create_batch(db, b"k" * 32, "harian", count, clock=lambda: at)
    with Session(db) as s:
        ids = list(
            s.scalars(
                select(Voucher.id)
                .where(Voucher.sold_at.is_(None), Voucher.first_used_at.is_(None))
                .order_by(Voucher.id)
            )
        )[:count]
    for vid in ids:
        if kasir is None:
            with Session(db) as s, s.begin():
                s.get(Voucher, vid).first_used_at = at  # used without a kasir's mark
        else:
            mark_sold(db, vid, actor=Actor(kasir, role="kasir"), clock=lambda: at)


def test_gather_counts_the_day_and_names_no_device(cfg, db):
    day_at = dt.datetime(2026, 11, 30, 3, 0)  # 10:00 WIB
    _sell(db, cfg, 3, "siti", day_at)
    _sell(db, cfg, 1, "budi", day_at)
    _sell(db, cfg, 1, None, day_at)
    _sell(db, cfg, 2, "siti", day_at - dt.timedelta(days=1))  # yesterday: not today's
    macs = ["3c:5a:b4:12:34:56", "02:00:00:00:00:01"]
    with Session(db) as s, s.begin():
        s.execute(
            insert(Device),
            [{"mac": m, "first_seen": day_at, "last_seen": day_at, "blocked": False} for m in macs],
        )
        s.execute(
            insert(HourlyUsage),
            [
                {
                    "mac": m,
                    "hour": day_at,
                    "seconds": 60,
                    "bytes_down": 2_000_000,
                    "bytes_up": 500_000,
                }
                for m in macs
            ],
        )
        s.add(UplinkEvent(at=dt.datetime(2026, 11, 29, 0, 0), ok=True))
        s.add(UplinkEvent(at=dt.datetime(2026, 11, 30, 1, 0), ok=False))
        s.add(UplinkEvent(at=dt.datetime(2026, 11, 30, 1, 20), ok=True))
    facts = summary_mod.gather(db, cfg, dt.date(2026, 11, 30), SEND_UTC, machine=MACHINE)
    assert (facts.sales_count, facts.sales_rupiah) == (5, 25000)
    assert sorted(facts.kasir_cash) == [("budi", 5000), ("siti", 15000)]
    assert facts.unrecorded == 1
    assert (facts.devices, facts.data_bytes) == (2, 5_000_000)
    assert facts.outages == Outages(1, 20)
    assert facts.zone == "WIB"
    text = compose(facts)
    assert MAC_RE.search(text) is None  # pseudonymisation: a count, never an address
    assert "3c:5a" not in text.lower() and "02:00" not in text


def test_outages_down_since_yesterday_and_still_down(cfg, db):
    with Session(db) as s, s.begin():
        s.add(UplinkEvent(at=dt.datetime(2026, 11, 29, 12, 0), ok=False))
    # down since before the day began (00:00 WIB = 17:00 UTC), until 20:00 WIB
    assert summary_mod.outages(db, cfg, dt.date(2026, 11, 30), SEND_UTC) == Outages(1, 20 * 60)
    # nothing recorded up to that day: unknown, not "never"
    assert summary_mod.outages(db, cfg, dt.date(2026, 11, 1), SEND_UTC) is None
    with Session(db) as s, s.begin():
        s.query(UplinkEvent).delete()
    assert summary_mod.outages(db, cfg, dt.date(2026, 11, 30), SEND_UTC) is None


# -- once a day -----------------------------------------------------------------------------


def test_once_per_village_day_across_restarts_and_clock_jumps(cfg, db):
    clock = Clock(SEND_UTC - dt.timedelta(minutes=1))  # 19:59 WIB
    bot = FakeBot()
    s1 = sender(cfg, db, clock, bot)
    assert s1.tick(probe=False)["made"] is None
    clock.now = SEND_UTC  # 20:00 WIB
    assert s1.tick(probe=False)["made"] is not None
    assert len(bot.sent) == 1
    for minutes in (1, 30, 200):  # later that evening, the same process
        clock.now = SEND_UTC + dt.timedelta(minutes=minutes)
        assert s1.tick(probe=False)["made"] is None
    # a restart (a new process: nothing in memory) the same evening
    s2 = sender(cfg, db, clock, bot)
    assert s2.tick(probe=False)["made"] is None
    # the clock jumps back an hour (NTP correcting a fast clock), then forward again
    clock.now = SEND_UTC - dt.timedelta(hours=1)
    assert s2.tick(probe=False)["made"] is None
    clock.now = SEND_UTC + dt.timedelta(minutes=5)
    assert s2.tick(probe=False)["made"] is None
    # the clock jumps forward three days (a Pi without a clock gets NTP): that day only
    clock.now = SEND_UTC + dt.timedelta(days=3, hours=1)
    assert s2.tick(probe=False)["made"] is not None
    # and back to the real day: its summary was made already — not again
    clock.now = SEND_UTC + dt.timedelta(hours=2)
    assert sender(cfg, db, clock, bot).tick(probe=False)["made"] is None
    # the next real day makes its own
    clock.now = SEND_UTC + dt.timedelta(days=1)
    assert s2.tick(probe=False)["made"] is not None
    days = [r.scheduled_day for r in rows(db)]
    assert days == [dt.date(2026, 11, 30), dt.date(2026, 12, 3), dt.date(2026, 12, 1)]
    assert len(bot.sent) == 3
    assert all(r.state is SummaryState.SENT for r in rows(db))


def test_send_at_is_village_time(tmp_path):
    cfg = summary_config(tmp_path, send_at="07:30")
    cfg = config_mod.load(
        overrides={**cfg.raw, "village": {"name": "Desa Y", "timezone": "Asia/Jayapura"}}
    )
    db = open_database(cfg.database.url)
    clock = Clock(dt.datetime(2026, 11, 29, 22, 29))  # 07:29 WIT on the 30th
    s = sender(cfg, db, clock)
    assert s.due_day() is None
    clock.now = dt.datetime(2026, 11, 29, 22, 30)
    assert s.due_day() == dt.date(2026, 11, 30)
    assert "(WIT)" in s.compose(dt.date(2026, 11, 30))
    db.dispose()


def test_disabled_sends_nothing(tmp_path):
    cfg = summary_config(tmp_path, enabled=False)
    db = open_database(cfg.database.url)
    with pytest.raises(ConfigError):
        sender(cfg, db, Clock(SEND_UTC)).tick(probe=False)
    db.dispose()


# -- what an answer means -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "answer", "kind", "delay"),
    [
        (200, {"ok": True, "result": {"message_id": 7}}, "sent", None),
        (200, {}, "retry", None),  # not the Bot API (a captive portal upstream)
        (200, {"ok": False}, "retry", None),
        (401, {"ok": False, "error_code": 401, "description": "Unauthorized"}, "failed", None),
        (400, {"ok": False, "description": "Bad Request: chat not found"}, "failed", None),
        (
            403,
            {"ok": False, "description": "Forbidden: bot was blocked by the user"},
            "failed",
            None,
        ),
        (404, {}, "failed", None),
        (429, {"ok": False, "parameters": {"retry_after": 17}}, "retry", 17.0),
        (429, {"ok": False, "parameters": {"retry_after": 10**9}}, "retry", 86400.0),
        (429, {"ok": False, "parameters": {"retry_after": "x"}}, "retry", None),
        (429, {}, "retry", None),
        (500, {}, "retry", None),
        (502, {"description": "Bad Gateway"}, "retry", None),
        (None, {}, "retry", None),
    ],
)
def test_classify(status, answer, kind, delay):
    v = classify(status, answer, "timed out" if status is None else "")
    assert (v.kind, v.delay) == (kind, delay)
    if kind == "sent":
        assert v.message_id == 7


def test_429_waits_retry_after_and_5xx_backs_off_keeping_the_order(cfg, db):
    clock = Clock(SEND_UTC)
    bot = FakeBot(
        [
            (429, {"ok": False, "error_code": 429, "parameters": {"retry_after": 40}}),
            (502, {"ok": False}),
            None,  # no answer
        ]
    )
    s = sender(cfg, db, clock, bot)
    first = s.queue_summary(dt.date(2026, 11, 28), scheduled=False)
    second = s.queue_summary(dt.date(2026, 11, 29), scheduled=False)
    assert s.drain() == {"sent": 0, "failed": 0, "retry": 1}
    r = rows(db)[0]
    assert r.next_attempt_at == SEND_UTC + dt.timedelta(seconds=40)
    clock.now += dt.timedelta(seconds=39)
    assert s.drain() == {"sent": 0, "failed": 0, "retry": 0}  # not yet; the second waits too
    assert len(bot.sent) == 1
    clock.now += dt.timedelta(seconds=1)
    assert s.drain()["retry"] == 1  # 502: back off 30 s * 2 (attempt 2), jitter 0.5 → 45 s
    assert rows(db)[0].next_attempt_at == clock.now + dt.timedelta(seconds=45)
    clock.now += dt.timedelta(seconds=45)
    assert s.drain()["retry"] == 1  # no answer: 120 s * 0.75
    assert rows(db)[0].next_attempt_at == clock.now + dt.timedelta(seconds=90)
    clock.now += dt.timedelta(seconds=90)
    assert s.drain() == {"sent": 2, "failed": 0, "retry": 0}
    texts = [t for _, _, t in bot.sent]
    assert len(texts) == 5 and texts[-2] == texts[0] and texts[-1] != texts[0]
    assert [r.id for r in rows(db) if r.state is SummaryState.SENT] == [first, second]


def test_a_refusal_is_kept_not_retried_until_the_bot_or_chat_changes(tmp_path, cfg, db):
    clock = Clock(SEND_UTC)
    bot = FakeBot([(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})])
    s = sender(cfg, db, clock, bot)
    s.tick(probe=False)
    for _ in range(5):
        clock.now += dt.timedelta(hours=1)
        s.tick(probe=False)
    assert len(bot.sent) == 1  # no loop
    (r,) = rows(db)
    assert (r.state, r.last_error) == (SummaryState.FAILED, "Telegram answered 401: Unauthorized")
    assert TOKEN not in (r.last_error or "")
    listed = summary_mod.queue(db)
    assert listed[0]["state"] == "failed" and "401" in listed[0]["last_error"]
    # the admin puts in the right token: tried once more, and sent
    fixed = summary_config(
        tmp_path, telegram_bot_token="987654321:BBEabcdefghijklmnopqrstuvwxyz9876"
    )
    s2 = sender(fixed, db, clock, bot)
    s2.tick(probe=False)
    assert len(bot.sent) == 2 and rows(db)[0].state is SummaryState.SENT


def test_retry_command_requeues_refused(cfg, db):
    clock = Clock(SEND_UTC)
    bot = FakeBot([(400, {"ok": False, "description": "Bad Request: chat not found"})])
    s = sender(cfg, db, clock, bot)
    s.tick(probe=False)
    assert rows(db)[0].state is SummaryState.FAILED
    assert s.retry_failed(999) == 0
    assert s.retry_failed() == 1
    s.drain()
    assert rows(db)[0].state is SummaryState.SENT


def test_a_row_left_sending_is_sent_again_once(cfg, db):
    """kill -9 between the 'sending' mark and the answer: at least once, here exactly twice."""
    clock = Clock(SEND_UTC)
    bot = FakeBot()
    s = sender(cfg, db, clock, bot)
    rid = s.queue_summary(dt.date(2026, 11, 30), scheduled=True)
    s._set(rid, state=SummaryState.SENDING, attempts=1)  # where the killed process stopped
    assert sender(cfg, db, clock, bot).drain()["sent"] == 1
    assert sender(cfg, db, clock, bot).drain()["sent"] == 0
    assert len(bot.sent) == 1


def test_uplink_changes_are_noted_once(cfg, db):
    clock = Clock(SEND_UTC)
    answers = iter([(True, 5.0), (True, 5.0), (False, None), (False, None), (True, 4.0)])
    s = sender(cfg, db, clock)
    s.probe = lambda url: next(answers)
    for _ in range(5):
        s.tick()
        clock.now += dt.timedelta(minutes=1)
    with Session(db) as ses:
        assert [e.ok for e in ses.scalars(select(UplinkEvent).order_by(UplinkEvent.id))] == [
            True,
            False,
            True,
        ]


def test_verdict_is_plain_data():
    assert Verdict("sent") == Verdict("sent")


# -- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("summary", "key"),
    [
        ({"enabled": "yes"}, "summary.enabled"),
        ({"telegram_bot_token": "not-a-token"}, "summary.telegram_bot_token"),
        ({"telegram_bot_token": TOKEN + " "}, "summary.telegram_bot_token"),
        ({"telegram_chat_id": "head of village"}, "summary.telegram_chat_id"),
        ({"telegram_chat_id": 1.5}, "summary.telegram_chat_id"),
        ({"send_at": "8pm"}, "summary.send_at"),
        ({"send_at": "24:00"}, "summary.send_at"),
        ({"api_base": "ftp://x"}, "summary.api_base"),
        ({"api_base": "https://u:p@api.telegram.org"}, "summary.api_base"),
        ({"enabled": True, "telegram_bot_token": ""}, "summary.telegram_bot_token"),
        ({"enabled": True, "telegram_chat_id": ""}, "summary.telegram_chat_id"),
        ({"colour": "red"}, "summary.colour"),
    ],
)
def test_config_refuses(tmp_path, summary, key):
    base = {"enabled": False, "telegram_bot_token": TOKEN, "telegram_chat_id": CHAT}
    with pytest.raises(ConfigError) as exc:
        config_mod.load(overrides={"summary": {**base, **summary}})
    assert exc.value.key == key
    assert TOKEN.split(":")[1] not in str(exc.value)  # the token is never repeated


def test_config_defaults_and_numbers():
    s = config_mod.load().summary
    assert (s.enabled, s.send_at, s.api_base) == (False, dt.time(20, 0), "https://api.telegram.org")
    s = config_mod.load(
        overrides={
            "summary": {"enabled": True, "telegram_bot_token": TOKEN, "telegram_chat_id": 12345}
        }
    ).summary
    assert s.telegram_chat_id == "12345"
    assert TOKEN not in repr(s) and TOKEN not in repr(
        config_mod.load(overrides={"summary": {"telegram_bot_token": TOKEN}})
    )


def test_masked_token():
    assert summary_mod.masked_token(TOKEN) == "123456789:••••0123"
    assert summary_mod.masked_token("") == ""


def test_gather_reads_the_agents_payments_of_the_day(cfg, db):
    """Without an explicit list, the agents' line comes from the ledger: the payments the
    admin recorded on that village day, not the day before."""
    from hotspot import operators
    from hotspot.audit import Actor
    from hotspot.vouchers import agents

    root = Actor("cli:root", role="admin")
    for name in ("warung-ani", "warung-budi"):
        operators.add(db, name, "agen", "kata-sandi-panjang-1", actor=root)
    today = dt.datetime(2026, 11, 30, 5, 0)  # 12:00 WIB
    paid = [
        ("warung-ani", 30000, today),
        ("warung-ani", 15000, today + dt.timedelta(hours=2)),
        ("warung-budi", 20000, today),
        ("warung-budi", 99000, today - dt.timedelta(days=1)),  # yesterday's
    ]
    for i, (agent, amount, at) in enumerate(paid):
        agents.settle(db, agent, amount, f"{i:032x}", actor=root, clock=lambda at=at: at)
    facts = summary_mod.gather(db, cfg, dt.date(2026, 11, 30), SEND_UTC, machine=MACHINE)
    assert facts.agent_cash == [("warung-ani", 45000), ("warung-budi", 20000)]
    assert "Setoran per agen:" in compose(facts)
