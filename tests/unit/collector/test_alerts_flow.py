"""Alerts end to end on the in-process collector (SQLite): reports in through the real ingest,
evaluation, the outbox, delivery with recording senders — deduplication, quiet hours and
their digest, retries that neither lose nor repeat, and a webhook that hangs."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from collector import alerts as al
from collector import config as cc
from collector.alerts import DeliveryError
from collector.app import create_app
from collector.models import Alert, AlertKind, AlertNotification, Gateway, NotifyChannel
from hotspot.timeutil import utcnow
from tests.unit.collector.helpers import gateway_record, health_record, post

SECRET_32 = "w" * 32


def make_cfg(tmp_path, **alerts):
    return cc.load(
        overrides={
            "collector": {
                "database_url": f"sqlite:///{tmp_path}/collector.db",
                "dashboard_public": True,
            },
            "alerts": {
                "smtp_host": "127.0.0.1",
                "smtp_port": 2525,
                "mail_to": ["noc@diskominfo.example"],
                "webhook_url": "http://127.0.0.1:9/hook",
                "webhook_secret": SECRET_32,
                "raise_after_minutes": 10,
                "clear_after_minutes": 15,
                **alerts,
            },
        }
    )


@pytest.fixture
def setup(tmp_path):
    def build(**alerts):
        cfg = make_cfg(tmp_path, **alerts)
        app = create_app(cfg)
        from tests.unit.collector.helpers import register

        register(app)
        return cfg, app

    yield build


class Recorder:
    """Senders that record what they were given; ``fail`` makes a channel's server fail."""

    def __init__(self):
        self.sent: list[tuple[str, list[int], bool]] = []
        self.fail: set[str] = set()

    def senders(self):
        def make(channel):
            def send(notices, cfg, digest):
                if channel in self.fail:
                    raise DeliveryError(f"{channel} down")
                self.sent.append((channel, [n.id for n in notices], digest))

            return send

        return {c: make(c.value) for c in NotifyChannel}


def report(app, *, later_s: int = 0, **health):
    """A health report through the real ingest, sampled now (+ ``later_s`` seconds: a second
    sample needs a time of its own)."""
    at = utcnow().replace(microsecond=0) + dt.timedelta(seconds=later_s)
    stamp = at.isoformat() + "Z"
    r = post(
        app.test_client(),
        [gateway_record(), health_record(sampled_at=stamp, **health)],
    )
    assert r.status_code == 200, r.get_json()


def evaluate(app, cfg, now):
    with Session(app.extensions["collector_db"]) as s, s.begin():
        return al.evaluate(s, cfg, now)


def test_raise_dedupe_clear_and_deliver_once(setup):
    cfg, app = setup(not_reporting_minutes=120)  # the test's clock runs ahead of reports
    engine = app.extensions["collector_db"]
    rec = Recorder()
    report(app, disk_pct=95.0, temp_c=50.0)
    t0 = utcnow()
    assert evaluate(app, cfg, t0)["raised"] == 0  # pending: not lasted 10 minutes yet
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=5))["raised"] == 0
    assert al.deliver(engine, cfg, t0, rec.senders())["sent"] == 0
    # Two evaluations at the same moment (two collectors) and later ones: one alert.
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=10))["raised"] == 1
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=10))["raised"] == 0
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=11))["raised"] == 0
    with Session(engine) as s:
        (alert,) = al.open_alerts(s)
        assert alert.kind is AlertKind.DISK and alert.detail == "disk 95 %"
        assert s.scalar(select(func.count()).select_from(AlertNotification)) == 2
    got = al.deliver(engine, cfg, t0 + dt.timedelta(minutes=11), rec.senders())
    assert got == {"sent": 2, "messages": 2, "failed": 0}
    assert sorted(c for c, _, _ in rec.sent) == ["email", "webhook"]
    # Nothing is sent twice.
    assert al.deliver(engine, cfg, t0 + dt.timedelta(minutes=12), rec.senders())["sent"] == 0
    # The disk is cleaned up: cleared after 15 minutes below the band, told once.
    report(app, later_s=5, disk_pct=50.0, temp_c=50.0)
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=20))["cleared"] == 0
    assert evaluate(app, cfg, t0 + dt.timedelta(minutes=35))["cleared"] == 1
    al.deliver(engine, cfg, t0 + dt.timedelta(minutes=35), rec.senders())
    assert len(rec.sent) == 4
    with Session(engine) as s:
        assert al.open_alerts(s) == []
        (closed,) = s.scalars(select(Alert)).all()
        assert closed.cleared_at == t0 + dt.timedelta(minutes=35)


def test_not_reporting_is_critical_and_beats_quiet_hours(setup):
    cfg, app = setup(quiet_hours="00:00-23:59")  # always quiet but one minute
    engine = app.extensions["collector_db"]
    rec = Recorder()
    report(app, disk_pct=95.0, temp_c=50.0)
    t0 = utcnow()
    # 40 minutes later, silent: not_reporting (critical) raises at once; disk waits 10 min.
    later = t0 + dt.timedelta(minutes=40)
    if al.quiet_until(cfg.alerts, cfg.tz, later) is None:
        pytest.skip("the one loud minute of the day")
    evaluate(app, cfg, t0)
    evaluate(app, cfg, later)
    with Session(engine) as s:
        kinds = {a.kind: a.critical for a in al.open_alerts(s)}
    assert kinds == {AlertKind.NOT_REPORTING: True, AlertKind.DISK: False}
    al.deliver(engine, cfg, later, rec.senders())
    # Only the critical one went out; the disk waits for the end of quiet hours...
    assert len(rec.sent) == 2 and all(not digest for _, _, digest in rec.sent)
    end = al.quiet_until(cfg.alerts, cfg.tz, later)
    assert end is not None
    assert al.deliver(engine, cfg, end - dt.timedelta(seconds=1), rec.senders())["sent"] == 0
    # ... and then goes out as one digest per channel.
    al.deliver(engine, cfg, end, rec.senders())
    assert [(c, d) for c, _, d in rec.sent[2:]] == [("email", True), ("webhook", True)]


def test_quiet_hours_digest_gathers_several(setup):
    cfg, app = setup(quiet_hours="00:00-23:59", raise_after_minutes=0)
    engine = app.extensions["collector_db"]
    rec = Recorder()
    report(app, disk_pct=95.0, temp_c=90.0, throttled=0x6)
    now = utcnow()
    if al.quiet_until(cfg.alerts, cfg.tz, now) is None:
        pytest.skip("the one loud minute of the day")
    assert evaluate(app, cfg, now)["raised"] == 3  # disk, temperature, throttled
    end = al.quiet_until(cfg.alerts, cfg.tz, now)
    al.deliver(engine, cfg, end, rec.senders())
    assert [(c, len(ids), d) for c, ids, d in rec.sent] == [
        ("email", 3, True),
        ("webhook", 3, True),
    ]


def test_a_server_down_is_retried_without_loss_or_repeat(setup):
    cfg, app = setup(raise_after_minutes=0)
    engine = app.extensions["collector_db"]
    rec = Recorder()
    report(app, disk_pct=95.0, temp_c=50.0)
    now = utcnow()
    evaluate(app, cfg, now)
    rec.fail = {"email"}
    got = al.deliver(engine, cfg, now, rec.senders())
    assert got["failed"] == 1 and [c for c, _, _ in rec.sent] == ["webhook"]
    with Session(engine) as s:
        row = s.scalars(
            select(AlertNotification).where(AlertNotification.channel == NotifyChannel.EMAIL)
        ).one()
        assert row.sent_at is None and row.attempts == 1 and "email down" in row.last_error
        retry_at = row.next_attempt_at
    assert retry_at > now
    # Before the backoff is over nothing is tried; after it the mail goes, once.
    rec.fail = set()
    assert al.deliver(engine, cfg, retry_at - dt.timedelta(seconds=1), rec.senders())["sent"] == 0
    assert al.deliver(engine, cfg, retry_at, rec.senders())["sent"] == 1
    assert al.deliver(engine, cfg, retry_at + dt.timedelta(hours=2), rec.senders())["sent"] == 0
    assert sorted(c for c, _, _ in rec.sent) == ["email", "webhook"]


def test_a_webhook_that_hangs_does_not_block_evaluation(setup, tmp_path):
    """A webhook URL whose server accepts the connection and never answers: evaluation is
    committed first and is not held; delivery gives up after timeout_seconds and keeps the
    notification for later; the e-mail is not held back by it for longer than that."""
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # the kernel completes the handshake; nobody ever reads or answers
    port = hang.getsockname()[1]
    try:
        cfg, app = setup(
            raise_after_minutes=0,
            webhook_url=f"http://127.0.0.1:{port}/hook",
            timeout_seconds=1,
            smtp_host="",
        )
        engine = app.extensions["collector_db"]
        report(app, disk_pct=95.0, temp_c=50.0)
        started = time.monotonic()
        result = al.run_once(engine, cfg, utcnow())
        elapsed = time.monotonic() - started
        assert result["raised"] == 1 and result["failed"] == 1 and result["sent"] == 0
        assert elapsed < 30  # the timeout ended it (generous: a loaded machine)
        with Session(engine) as s:
            assert len(al.open_alerts(s)) == 1  # the evaluation was committed
            row = s.scalars(select(AlertNotification)).one()
            assert row.sent_at is None and row.attempts == 1
            assert "timed out" in row.last_error
    finally:
        hang.close()


def test_disabled_village_is_not_evaluated(setup):
    cfg, app = setup(raise_after_minutes=0)
    report(app, disk_pct=95.0, temp_c=50.0)
    assert evaluate(app, cfg, utcnow())["raised"] == 1
    with Session(app.extensions["collector_db"]) as s, s.begin():
        s.execute(update(Gateway).values(disabled=True))
    assert evaluate(app, cfg, utcnow()) == {
        "skipped": False,
        "raised": 0,
        "cleared": 0,
        "villages": 0,
    }
    with Session(app.extensions["collector_db"]) as s:
        assert al.open_alerts(s) == []  # a disabled village's alert ends, untold
        assert s.scalars(select(Alert)).one().cleared_at is not None


def test_the_server_loop_evaluates_and_delivers(setup):
    """What each `collector run` worker starts (collector.server): alerts raised and sent
    without anyone running a command; two such loops (two workers) send each message once."""
    cfg, app = setup(raise_after_minutes=0)
    engine = app.extensions["collector_db"]
    report(app, disk_pct=95.0, temp_c=50.0)
    sent = []

    def recording(notices, cfg, digest):
        sent.append([n.id for n in notices])

    original = dict(al.SENDERS)
    al.SENDERS.update({c: recording for c in NotifyChannel})
    stops = [al.start_loop(engine, cfg, interval=0.05) for _ in range(2)]
    try:
        deadline = time.monotonic() + 20
        while len(sent) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a few more rounds of both loops: nothing more may go out
    finally:
        for stop in stops:
            stop.set()
        al.SENDERS.update(original)
    assert sorted(sent) == [[1], [2]], sent


def test_lossy_uplink_from_the_window_of_samples(setup):
    """Four samples in the window, two of whose probes failed (50 %): uplink_lossy; the
    newest probe succeeded, so the uplink is not down."""
    cfg, app = setup(raise_after_minutes=0)
    for i, ok in enumerate((True, False, False, True)):
        report(
            app,
            later_s=i - 300,
            disk_pct=50.0,
            temp_c=50.0,
            uplink_ok=ok,
            uplink_ms=80.0 if ok else None,
        )
    evaluate(app, cfg, utcnow())
    with Session(app.extensions["collector_db"]) as s:
        (alert,) = al.open_alerts(s)
    assert alert.kind is AlertKind.UPLINK_LOSSY
    assert alert.detail == "50 % of 4 probes failed, median 80 ms"
