"""Delivery against an in-process collector: exactly once through loss, crashes, clock skew
and size limits; backoff with jitter; one-line failures."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from collector.models import IngestBatch
from hotspot import config as config_mod
from sync.agent import Agent, SyncFailed
from sync.outbox import Outbox
from tests.unit.collector.helpers import (
    FlaskTransport,
    LossyTransport,
    daily_sums,
    register,
    totals,
)
from tests.unit.sync.conftest import START, gateway_overrides, gateway_totals, seed_usage

NOW = START + dt.timedelta(days=7, hours=2)


def agent(cfg, db, transport, **kw):
    return Agent(cfg, db, transport=transport, clock=lambda: NOW, **kw)


def no_sleep(_s):
    return None


def assert_same(gwdb, cdb, a):
    expected = gateway_totals(gwdb, a.outbox.pseudonym)
    got = totals(cdb)
    assert got == expected
    sums = tuple(sum(v[i] for v in expected.values()) for i in range(3))
    assert daily_sums(cdb) == sums


def test_a_week_of_backlog_arrives_exactly(gwcfg, gwdb, app, cdb):
    seed_usage(gwdb, devices=30, hours=7 * 24)
    a = agent(gwcfg, gwdb, FlaskTransport(app))
    a.collect(full=True, with_health=True, cpu_interval=0)
    out = a.drain(max_failures=1, sleep=no_sleep)
    assert out.ok
    assert a.outbox.pending() == 0
    assert_same(gwdb, cdb, a)
    assert a.transport.statuses and set(a.transport.statuses) == {200}
    # Nothing new: nothing sent.
    calls = a.transport.calls
    a.collect()
    assert a.send_one() is None and a.transport.calls == calls


def test_lost_requests_and_lost_answers_never_count_twice(tmp_path, gwdb, app, cdb):
    cfg = config_mod.load(overrides=gateway_overrides(tmp_path, max_batch_kb=2))
    seed_usage(gwdb, devices=20, hours=72)
    transport = LossyTransport(app, lose_request=0.3, lose_answer=0.3, seed=3)
    a = agent(cfg, gwdb, transport)
    a.collect(full=True, with_health=False)
    out = a.drain(max_failures=50, sleep=no_sleep)
    assert out.ok and a.outbox.pending() == 0
    assert transport.lost_answers > 0
    assert_same(gwdb, cdb, a)
    with Session(cdb) as s:
        dups = s.scalar(select(func.sum(IngestBatch.duplicates)))
        batches = s.scalar(select(func.count()).select_from(IngestBatch))
    assert dups >= 1  # retried after a lost answer: acknowledged, not applied
    assert batches == a.outbox.stats()["delivered_batches"]


def test_killed_after_the_collector_applied_before_the_ack(gwcfg, gwdb, app, cdb):
    seed_usage(gwdb, devices=5, hours=24)
    a = agent(gwcfg, gwdb, FlaskTransport(app))
    a.collect(full=True, with_health=False)
    batch = a.outbox.make_batch(a.batch_limit)
    status, answer = a.transport.post("/ingest/v1/batch", batch.body, a.headers(batch))
    assert status == 200 and not answer["duplicate"]
    # kill -9 here; a new process starts over from the database
    b = agent(gwcfg, gwdb, FlaskTransport(app))
    assert b.outbox.current_batch() == batch
    first = b.send_one()
    assert first.ok and first.duplicate
    assert b.drain(max_failures=1, sleep=no_sleep).ok
    assert_same(gwdb, cdb, b)


def test_live_hours_update_in_place(gwcfg, gwdb, app, cdb):
    from sqlalchemy import update

    from hotspot.model import HourlyUsage

    seed_usage(
        gwdb, devices=3, hours=2, start=NOW.replace(minute=0) - dt.timedelta(hours=1), density=1.0
    )
    a = agent(gwcfg, gwdb, FlaskTransport(app))
    for _ in range(3):
        with Session(gwdb) as s, s.begin():
            s.execute(
                update(HourlyUsage).values(
                    bytes_down=HourlyUsage.bytes_down + 1000, seconds=HourlyUsage.seconds + 60
                )
            )
        a.collect(with_health=False)
        assert a.drain(max_failures=1, sleep=no_sleep).ok
        assert_same(gwdb, cdb, a)


def test_a_wrong_clock_is_corrected_from_the_collectors_answer(gwcfg, gwdb, app, cdb):
    seed_usage(gwdb, devices=2, hours=3)
    import time

    a = agent(gwcfg, gwdb, FlaskTransport(app), wallclock=lambda: time.time() - 3 * 86400)
    a.collect(full=True, with_health=False)
    assert a.drain(max_failures=1, sleep=no_sleep).ok
    assert a.transport.statuses[0] == 401 and 200 in a.transport.statuses
    assert abs(a.clock_offset - 3 * 86400) < 60
    assert_same(gwdb, cdb, a)


def test_too_large_batches_are_split(tmp_path, gwdb, app, cdb):
    app.config["COLLECTOR"] = app.config["COLLECTOR"].__class__(
        **{**app.config["COLLECTOR"].__dict__, "max_body_kb": 4}
    )
    app.config["MAX_CONTENT_LENGTH"] = 4 * 1024
    cfg = config_mod.load(overrides=gateway_overrides(tmp_path, max_batch_kb=64))
    seed_usage(gwdb, devices=20, hours=24)
    a = agent(cfg, gwdb, FlaskTransport(app))
    a.collect(full=True, with_health=False)
    assert a.drain(max_failures=1, sleep=no_sleep).ok
    assert 413 in a.transport.statuses and a.batch_limit <= 4096
    assert_same(gwdb, cdb, a)


class Down:
    def post(self, *a):
        raise OSError("collector unreachable: [Errno 111] Connection refused")


def test_once_fails_in_one_line_when_something_is_left(gwcfg, gwdb):
    seed_usage(gwdb, devices=2, hours=3)
    a = agent(gwcfg, gwdb, Down())
    with pytest.raises(SyncFailed) as err:
        a.once(sleep=no_sleep)
    msg = err.value.message
    assert "not delivered" in msg and "Connection refused" in msg and "\n" not in msg
    st = a.outbox.stats()
    assert st["pending"] > 0 and "Connection refused" in st["last_error"]
    assert st["batch_in_flight"]["attempts"] == 3


@pytest.mark.parametrize(
    "register_as, secret, expect",
    [
        (None, None, "401 (bad-signature: unknown gateway or bad signature"),  # one answer
        ("desa-uji", "another-secret-" + "y" * 30, "401 (bad-signature"),
    ],
)
def test_refusals_are_reported(tmp_path, gwdb, ccfg, register_as, secret, expect):
    from collector.app import create_app

    fresh = create_app(
        ccfg.__class__(**{**ccfg.__dict__, "database_url": f"sqlite:///{tmp_path}/c2.db"})
    )
    if register_as:
        register(fresh, register_as, secret)
    cfg = config_mod.load(overrides=gateway_overrides(tmp_path))
    seed_usage(gwdb, devices=1, hours=2, density=1.0)
    a = agent(cfg, gwdb, FlaskTransport(fresh))
    with pytest.raises(SyncFailed, match=expect.replace("(", r"\(")):
        a.once(sleep=no_sleep)
    fresh.extensions["collector_db"].dispose()


def test_backoff_grows_with_jitter_up_to_the_cap(tmp_path, gwdb):
    cfg = config_mod.load(overrides=gateway_overrides(tmp_path, backoff_max_seconds=900))
    lo = Agent(cfg, gwdb, transport=Down(), rng=lambda: 0.0)
    hi = Agent(cfg, gwdb, transport=Down(), rng=lambda: 0.999999)
    assert lo.backoff(1) == 2.5 and hi.backoff(1) == pytest.approx(5.0)
    assert lo.backoff(3) == 10 and hi.backoff(3) == pytest.approx(20)
    assert lo.backoff(30) == 450 and hi.backoff(30) == pytest.approx(900)
    import random

    real = Agent(cfg, gwdb, transport=Down(), rng=random.Random(1).random)
    delays = [real.backoff(8) for _ in range(20)]
    assert len(set(delays)) == 20 and all(320 <= d <= 640 for d in delays)


def test_status_reports_backlog(gwcfg, gwdb):
    seed_usage(gwdb, devices=2, hours=3, density=1.0)
    ob = Outbox(gwcfg, gwdb, clock=lambda: NOW)
    ob.collect(full=True)
    st = ob.stats()
    assert st["pending"] == 7 and st["pending_by_kind"] == {"usage": 6, "gateway": 1}
    assert st["last_success_at"] is None
