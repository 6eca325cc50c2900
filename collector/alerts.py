"""Alerts: the collector raises and clears them from what the villages report, and tells the
province by e-mail (SMTP) and by webhook (a signed JSON POST).

Three steps, each safe to run from several collector processes at once:

* :func:`judge` (pure): one village's latest figures → a :class:`Verdict` per kind — the
  condition holds (True), is gone past its hysteresis band (False), or cannot be told /
  sits inside the band (None: nothing changes).
* :func:`advance` (pure): an alert's state and a verdict → its next state and the event to
  announce, if any. A condition must last ``raise_after_minutes`` to raise and be gone
  ``clear_after_minutes`` to clear: a flapping one raises once, or never, and does not spam.
* :func:`evaluate` writes the alerts and, in the same transaction, one notification per event
  and channel (the outbox); on PostgreSQL under an advisory lock, so two collectors never
  evaluate at once. :func:`deliver` sends what is due — rows taken with ``FOR UPDATE SKIP
  LOCKED``, so two collectors never send the same one — and marks a row sent only after the
  server accepted it; a failure leaves it for a later attempt (backoff up to an hour).

Quiet hours: a non-critical notification made then is held until they end and goes out with
the others held as one digest; a critical one (``[alerts] critical``) goes out at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import random
import smtplib
import ssl
import statistics
import threading
import time
import urllib.error
import urllib.request
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from collector.alert_config import AlertsConfig
from collector.config import CollectorConfig
from collector.models import (
    Alert,
    AlertKind,
    AlertNotification,
    Gateway,
    HealthSample,
    NotifyChannel,
    NotifyEvent,
    UplinkOutage,
)
from hotspot.timeutil import iso, local_time, utcnow

log = logging.getLogger(__name__)

EVALUATE_LOCK = 726217002  # pg_advisory lock key (the migrations use 726217001)
DISK_BAND = 2  # percentage points below the threshold before a disk alert clears
TEMP_BAND = 5  # °C below the threshold before a temperature alert clears
MIN_PROBES = 3  # uplink probes in the window before loss or slowness is judged
MAX_BACKOFF = 3600
BATCH = 200  # notifications taken per channel per round

# get_throttled bits (Raspberry Pi firmware)
UNDERVOLTAGE_NOW = 0x1
THROTTLED_NOW = 0x2 | 0x4 | 0x8  # frequency capped, throttled, soft temperature limit
UNDERVOLTAGE_SINCE_BOOT = 0x10000

KIND_TEXT: dict[AlertKind, dict[str, str]] = {
    AlertKind.NOT_REPORTING: {"id": "tidak melapor", "en": "not reporting"},
    AlertKind.DISK: {"id": "disk hampir penuh", "en": "disk almost full"},
    AlertKind.TEMPERATURE: {"id": "suhu tinggi", "en": "high temperature"},
    AlertKind.UNDERVOLTAGE: {"id": "tegangan kurang", "en": "under-voltage"},
    AlertKind.THROTTLED: {"id": "CPU diperlambat", "en": "CPU throttled"},
    AlertKind.UPLINK_DOWN: {"id": "uplink putus", "en": "uplink down"},
    AlertKind.UPLINK_LOSSY: {"id": "uplink buruk", "en": "uplink lossy or slow"},
    AlertKind.CLOCK: {"id": "jam belum sinkron", "en": "clock not synchronised"},
}
EVENT_TEXT = {
    NotifyEvent.RAISED: {"id": "MUNCUL", "en": "RAISED"},
    NotifyEvent.CLEARED: {"id": "SELESAI", "en": "CLEARED"},
}


# -- the rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VillageState:
    """What the collector knows of one village when it evaluates."""

    gateway_id: str
    last_seen_at: dt.datetime | None
    disk_pct: float | None = None
    temp_c: float | None = None
    throttled: int | None = None
    uplink_ok: bool | None = None
    clock_synced: bool | None = None  # absent from older gateways' records: unknown
    open_outage: str | None = None  # the cause of an outage reported and not ended
    probes: tuple[tuple[bool, float | None], ...] = ()  # (ok, ms) in the uplink window


@dataclass(frozen=True)
class Verdict:
    kind: AlertKind
    firing: bool | None
    detail: str = ""


def judge(cfg: AlertsConfig, v: VillageState, now: dt.datetime) -> list[Verdict]:
    out: list[Verdict] = []
    if v.last_seen_at is None:
        out.append(Verdict(AlertKind.NOT_REPORTING, None))  # registered, never installed
    else:
        silent = (now - v.last_seen_at).total_seconds() / 60
        out.append(
            Verdict(
                AlertKind.NOT_REPORTING,
                silent > cfg.not_reporting_minutes,
                f"last report {silent:.0f} min ago",
            )
        )
    if v.disk_pct is not None:
        out.append(_banded(AlertKind.DISK, v.disk_pct, cfg.disk_pct, DISK_BAND, "disk {:.0f} %"))
    if v.temp_c is not None:
        out.append(_banded(AlertKind.TEMPERATURE, v.temp_c, cfg.temp_c, TEMP_BAND, "{:.0f} °C"))
    if v.throttled is not None:
        bits = f"get_throttled=0x{v.throttled:x}"
        out.append(Verdict(AlertKind.UNDERVOLTAGE, bool(v.throttled & UNDERVOLTAGE_NOW), bits))
        out.append(Verdict(AlertKind.THROTTLED, bool(v.throttled & THROTTLED_NOW), bits))
    if v.open_outage is not None or v.uplink_ok is False:
        cause = f"outage ({v.open_outage})" if v.open_outage else "probe failed"
        out.append(Verdict(AlertKind.UPLINK_DOWN, True, cause))
    elif v.uplink_ok is True:
        out.append(Verdict(AlertKind.UPLINK_DOWN, False))
    out.append(_lossy(cfg, v.probes))
    out.append(
        Verdict(
            AlertKind.CLOCK,
            None if v.clock_synced is None else not v.clock_synced,
            "clock not synchronised",
        )
    )
    return out


def _banded(kind: AlertKind, value: float, threshold: float, band: float, fmt: str) -> Verdict:
    """Fires at the threshold, clears only ``band`` below it: a reading that hovers at the
    threshold does not raise and clear an alert at every report."""
    firing = True if value >= threshold else False if value < threshold - band else None
    return Verdict(kind, firing, fmt.format(value))


def _lossy(cfg: AlertsConfig, probes: Sequence[tuple[bool, float | None]]) -> Verdict:
    if len(probes) < MIN_PROBES:
        return Verdict(AlertKind.UPLINK_LOSSY, None)
    loss = 100 * sum(1 for ok, _ in probes if not ok) / len(probes)
    times = [ms for ok, ms in probes if ok and ms is not None]
    median = statistics.median(times) if times else None
    detail = f"{loss:.0f} % of {len(probes)} probes failed" + (
        f", median {median:.0f} ms" if median is not None else ""
    )
    slow = median is not None and median >= cfg.uplink_slow_ms
    if loss >= cfg.uplink_loss_pct or slow:
        return Verdict(AlertKind.UPLINK_LOSSY, True, detail)
    if loss < cfg.uplink_loss_pct / 2 and (median is None or median < 0.8 * cfg.uplink_slow_ms):
        return Verdict(AlertKind.UPLINK_LOSSY, False, detail)
    return Verdict(AlertKind.UPLINK_LOSSY, None, detail)


# -- hysteresis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlertState:
    first_seen_at: dt.datetime
    raised_at: dt.datetime | None = None
    clearing_since: dt.datetime | None = None
    cleared_at: dt.datetime | None = None


def advance(
    cfg: AlertsConfig, state: AlertState | None, verdict: Verdict, now: dt.datetime
) -> tuple[AlertState | None, NotifyEvent | None]:
    """The next state of an alert that is not closed (None: there is none) and the event to
    announce. A pending alert (never raised) whose condition goes away is forgotten."""
    # Not reporting is measured over not_reporting_minutes already.
    wait = 0 if verdict.kind is AlertKind.NOT_REPORTING else cfg.raise_after_minutes
    if verdict.firing is True:
        if state is None:
            state = AlertState(first_seen_at=now)
        if state.raised_at is None:
            if now - state.first_seen_at >= dt.timedelta(minutes=wait):
                return replace(state, raised_at=now, clearing_since=None), NotifyEvent.RAISED
            return state, None
        return replace(state, clearing_since=None), None
    if verdict.firing is False and state is not None:
        if state.raised_at is None:
            return None, None
        since = state.clearing_since or now
        if now - since >= dt.timedelta(minutes=cfg.clear_after_minutes):
            return replace(state, clearing_since=since, cleared_at=now), NotifyEvent.CLEARED
        return replace(state, clearing_since=since), None
    return state, None


def quiet_until(cfg: AlertsConfig, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet hours ``now`` (naive UTC) falls in, as naive UTC; None outside
    them. The hours are local (``[collector] timezone``) and may span midnight."""
    start, end = cfg.quiet_start, cfg.quiet_end
    if start is None or end is None:
        return None
    local = local_time(now, tz)
    t = local.time().replace(tzinfo=None)
    day = local.date()
    if start < end:
        if not start <= t < end:
            return None
    elif t >= start:
        day += dt.timedelta(days=1)
    elif t >= end:
        return None
    until = dt.datetime.combine(day, end, tzinfo=tz)
    return until.astimezone(dt.UTC).replace(tzinfo=None)


# -- evaluation -------------------------------------------------------------------------------


def village_states(s: Session, cfg: AlertsConfig, now: dt.datetime) -> list[VillageState]:
    gateways = list(s.scalars(select(Gateway).where(Gateway.disabled.is_(False))))
    latest = {
        h.gateway_id: h
        for h in s.scalars(
            select(HealthSample).join(
                Gateway,
                (HealthSample.gateway_id == Gateway.id)
                & (HealthSample.sampled_at == Gateway.last_health_at),
            )
        )
    }
    since = now - dt.timedelta(minutes=cfg.uplink_window_minutes)
    probes: dict[str, list[tuple[bool, float | None]]] = {}
    # Only villages heard from within the window, each by its primary key (gateway_id,
    # sampled_at): never a scan of a year of every village's samples.
    recent = [g.id for g in gateways if g.last_health_at is not None and g.last_health_at >= since]
    for chunk in (recent[i : i + 500] for i in range(0, len(recent), 500)):
        for gid, ok, ms in s.execute(
            select(HealthSample.gateway_id, HealthSample.uplink_ok, HealthSample.uplink_ms)
            .where(
                HealthSample.gateway_id.in_(chunk),
                HealthSample.sampled_at >= since,
                HealthSample.uplink_ok.is_not(None),
            )
            .order_by(HealthSample.gateway_id, HealthSample.sampled_at)
        ):
            probes.setdefault(gid, []).append((bool(ok), ms))
    outages = {
        gid: cause
        for gid, cause in s.execute(
            select(UplinkOutage.gateway_id, UplinkOutage.cause).where(
                UplinkOutage.ended_at.is_(None)
            )
        )
    }
    out = []
    for gw in gateways:
        h = latest.get(gw.id)
        out.append(
            VillageState(
                gateway_id=gw.id,
                last_seen_at=gw.last_seen_at,
                disk_pct=h.disk_pct if h else None,
                temp_c=h.temp_c if h else None,
                throttled=h.throttled if h else None,
                uplink_ok=h.uplink_ok if h else None,
                # stored once the clock-state migration is in; absent = unknown
                clock_synced=getattr(h, "clock_synced", None) if h else None,
                open_outage=outages.get(gw.id),
                probes=tuple(probes.get(gw.id, ())),
            )
        )
    return out


def channels(cfg: AlertsConfig) -> list[NotifyChannel]:
    out = []
    if cfg.email:
        out.append(NotifyChannel.EMAIL)
    if cfg.webhook:
        out.append(NotifyChannel.WEBHOOK)
    return out


def evaluate(s: Session, cfg: CollectorConfig, now: dt.datetime) -> dict[str, Any]:
    """One evaluation of every village, in the caller's transaction. On PostgreSQL a second
    collector evaluating at the same moment skips (``{"skipped": true}``)."""
    acfg = cfg.alerts
    if s.get_bind().dialect.name == "postgresql":
        if not s.scalar(text(f"SELECT pg_try_advisory_xact_lock({EVALUATE_LOCK})")):
            return {"skipped": True, "raised": 0, "cleared": 0, "villages": 0}
    else:
        _write_lock(s)
    active = {
        (a.gateway_id, a.kind): a
        for a in s.scalars(select(Alert).where(Alert.cleared_at.is_(None)))
    }
    chans = channels(acfg)
    hold = quiet_until(acfg, cfg.tz, now)
    counts = {"skipped": False, "raised": 0, "cleared": 0, "villages": 0}
    states = village_states(s, acfg, now)
    evaluated = {v.gateway_id for v in states}
    for (gid, _kind), stale in active.items():
        if gid not in evaluated:  # the village was disabled: its alerts end, untold
            stale.cleared_at = now
    for v in states:
        counts["villages"] += 1
        for verdict in judge(acfg, v, now):
            row = active.get((v.gateway_id, verdict.kind))
            state = (
                AlertState(row.first_seen_at, row.raised_at, row.clearing_since, row.cleared_at)
                if row is not None
                else None
            )
            new, event = advance(acfg, state, verdict, now)
            if new is None:
                if row is not None:
                    s.delete(row)  # pending, never raised: nobody was told
                continue
            if row is None:
                row = Alert(
                    gateway_id=v.gateway_id,
                    kind=verdict.kind,
                    critical=verdict.kind in acfg.critical,
                    first_seen_at=new.first_seen_at,
                    detail=verdict.detail[:200],
                )
                s.add(row)
            row.raised_at, row.clearing_since, row.cleared_at = (
                new.raised_at,
                new.clearing_since,
                new.cleared_at,
            )
            if verdict.firing and verdict.detail:
                row.detail = verdict.detail[:200]
            if event is None:
                continue
            counts[event.value] += 1
            s.flush()  # the alert's id
            for channel in chans:
                s.add(
                    AlertNotification(
                        alert_id=row.id,
                        event=event,
                        channel=channel,
                        critical=row.critical,
                        created_at=now,
                        hold_until=None if row.critical else hold,
                        next_attempt_at=now,
                        attempts=0,
                    )
                )
            log.info("alert %s %s: %s (%s)", event.value, v.gateway_id, verdict.kind, row.detail)
    return counts


# -- delivery ---------------------------------------------------------------------------------


def _write_lock(s: Session) -> None:
    """SQLite (a trial): take the database's write lock before reading, so two collector
    workers evaluate or deliver one after the other (PostgreSQL has the advisory lock and
    SKIP LOCKED instead)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("UPDATE alert SET id = id WHERE 0"))


class DeliveryError(Exception):
    """A server that did not take a message (answered an error, or was not there)."""


@dataclass(frozen=True)
class Notice:
    """One notification as a message shows it."""

    id: int
    event: NotifyEvent
    kind: AlertKind
    critical: bool
    gateway_id: str
    village: str
    kabupaten: str | None
    kecamatan: str | None
    first_seen_at: dt.datetime
    raised_at: dt.datetime | None
    cleared_at: dt.datetime | None
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "event": self.event.value,
            "kind": self.kind.value,
            "critical": self.critical,
            "gateway_id": self.gateway_id,
            "village": self.village,
            "kabupaten": self.kabupaten,
            "kecamatan": self.kecamatan,
            "first_seen_at": iso(self.first_seen_at),
            "raised_at": iso(self.raised_at) if self.raised_at else None,
            "cleared_at": iso(self.cleared_at) if self.cleared_at else None,
            "detail": self.detail,
        }


def message_key(notices: Sequence[Notice]) -> str:
    """The same notifications always make the same key: a receiver can drop a repeat (a
    collector that died after sending and before marking them sent sends them again)."""
    ids = ",".join(str(n.id) for n in notices)
    return hashlib.sha256(ids.encode()).hexdigest()[:32]


def _line(n: Notice, cfg: CollectorConfig, lang: str) -> str:
    when = n.cleared_at if n.event is NotifyEvent.CLEARED else n.raised_at
    place = " / ".join(x for x in (n.kabupaten, n.kecamatan) if x)
    return (
        f"{EVENT_TEXT[n.event][lang]:8} {local_time(when or n.first_seen_at, cfg.tz):%Y-%m-%d %H:%M}"
        f"  {n.village} ({n.gateway_id}{', ' + place if place else ''})"
        f"  {KIND_TEXT[n.kind][lang]}{' [!]' if n.critical else ''}: {n.detail}"
    )


def email_message(notices: Sequence[Notice], cfg: CollectorConfig, digest: bool) -> EmailMessage:
    lang = cfg.language
    acfg = cfg.alerts
    heading = f"{cfg.title} — {cfg.region}" if cfg.region else cfg.title
    msg = EmailMessage()
    if digest:
        subject = (
            f"Ringkasan {len(notices)} peringatan"
            if lang == "id"
            else f"Digest of {len(notices)} alerts"
        )
    else:
        n = notices[0]
        subject = f"{EVENT_TEXT[n.event][lang]}: {n.village} — {KIND_TEXT[n.kind][lang]}"
    msg["Subject"] = f"[{cfg.title}] {subject}"
    msg["From"] = acfg.mail_from
    msg["To"] = ", ".join(acfg.mail_to)
    msg["Message-ID"] = f"<alert-{message_key(notices)}@hotspot-collector>"
    msg["X-Hotspot-Alert-Ids"] = ",".join(str(n.id) for n in notices)
    tzline = f"Waktu dalam {cfg.timezone}" if lang == "id" else f"Times in {cfg.timezone}"
    msg.set_content(
        "\n".join([heading, "", *(_line(n, cfg, lang) for n in notices), "", tzline]) + "\n"
    )
    return msg


def send_email(notices: Sequence[Notice], cfg: CollectorConfig, digest: bool) -> None:
    acfg = cfg.alerts
    msg = email_message(notices, cfg, digest)
    try:
        with smtplib.SMTP(acfg.smtp_host, acfg.smtp_port, timeout=acfg.timeout_seconds) as smtp:
            if acfg.smtp_starttls:
                # the server's certificate checked against the system's CAs and its name
                smtp.starttls(context=ssl.create_default_context())
            if acfg.smtp_user:
                smtp.login(acfg.smtp_user, acfg.smtp_password)
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:  # ssl.SSLError is an OSError
        raise DeliveryError(f"smtp {acfg.smtp_host}:{acfg.smtp_port}: {exc}") from None


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=`` HMAC-SHA256(secret, ``"v1\\n<timestamp>\\n"`` + body), as the gateways sign."""
    mac = hmac.new(secret.encode(), f"v1\n{timestamp}\n".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def send_webhook(notices: Sequence[Notice], cfg: CollectorConfig, digest: bool) -> None:
    acfg = cfg.alerts
    body = json.dumps(
        {
            "type": "digest" if digest else "alert",
            "title": cfg.title,
            "region": cfg.region,
            "key": message_key(notices),
            "notifications": [n.as_json() for n in notices],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    ts = str(int(time.time()))
    req = urllib.request.Request(
        acfg.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "hotspot-collector",
            "X-Hotspot-Timestamp": ts,
            "X-Hotspot-Signature": webhook_signature(acfg.webhook_secret, ts, body),
            "Idempotency-Key": message_key(notices),
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=acfg.timeout_seconds) as resp:
            resp.read(4096)
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"webhook answered {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, refused connections
        raise DeliveryError(f"webhook: {exc}") from None


Sender = Callable[[Sequence[Notice], CollectorConfig, bool], None]
SENDERS: dict[NotifyChannel, Sender] = {
    NotifyChannel.EMAIL: send_email,
    NotifyChannel.WEBHOOK: send_webhook,
}


def _notices(s: Session, rows: Sequence[AlertNotification]) -> list[Notice]:
    alerts = {
        a.id: a for a in s.scalars(select(Alert).where(Alert.id.in_({r.alert_id for r in rows})))
    }
    gws = {
        g.id: g
        for g in s.scalars(
            select(Gateway).where(Gateway.id.in_({a.gateway_id for a in alerts.values()}))
        )
    }
    out = []
    for r in rows:
        a = alerts[r.alert_id]
        g = gws[a.gateway_id]
        out.append(
            Notice(
                id=r.id,
                event=r.event,
                kind=a.kind,
                critical=r.critical,
                gateway_id=g.id,
                village=g.village or g.id,
                kabupaten=g.kabupaten,
                kecamatan=g.kecamatan,
                first_seen_at=a.first_seen_at,
                raised_at=a.raised_at,
                cleared_at=a.cleared_at,
                detail=a.detail,
            )
        )
    return out


def deliver(
    engine: Engine,
    cfg: CollectorConfig,
    now: dt.datetime,
    senders: dict[NotifyChannel, Sender] | None = None,
) -> dict[str, int]:
    """Send the notifications that are due, per channel: each on its own, and those held
    through quiet hours as one digest. The first failure of a channel ends its round (a
    server that hangs costs one timeout per round, not one per message)."""
    senders = senders or SENDERS
    counts = {"sent": 0, "messages": 0, "failed": 0}
    for channel in channels(cfg.alerts):
        with Session(engine) as s, s.begin():
            _write_lock(s)
            rows = list(
                s.scalars(
                    select(AlertNotification)
                    .where(
                        AlertNotification.channel == channel,
                        AlertNotification.sent_at.is_(None),
                        AlertNotification.next_attempt_at <= now,
                        or_(
                            AlertNotification.hold_until.is_(None),
                            AlertNotification.hold_until <= now,
                        ),
                    )
                    .order_by(AlertNotification.id)
                    .limit(BATCH)
                    .with_for_update(skip_locked=True)
                )
            )
            if not rows:
                continue
            by_id = {r.id: r for r in rows}
            notices = _notices(s, rows)
            held = [n for n in notices if by_id[n.id].hold_until is not None]
            messages: list[tuple[list[Notice], bool]] = [
                ([n], False) for n in notices if by_id[n.id].hold_until is None
            ]
            if held:
                messages.append((held, True))
            for group, digest in messages:
                try:
                    senders[channel](group, cfg, digest)
                except DeliveryError as exc:
                    log.warning("alert %s not delivered: %s", channel.value, exc)
                    for n in group:
                        r = by_id[n.id]
                        r.attempts += 1
                        r.last_error = str(exc)[:300]
                        r.next_attempt_at = now + dt.timedelta(
                            seconds=min(MAX_BACKOFF, 30 * 2 ** min(r.attempts, 10))
                        )
                    counts["failed"] += len(group)
                    break
                for n in group:
                    by_id[n.id].sent_at = now
                counts["sent"] += len(group)
                counts["messages"] += 1
    return counts


def run_once(engine: Engine, cfg: CollectorConfig, now: dt.datetime) -> dict[str, Any]:
    """Evaluate (committed first: a slow mail server never holds the alerts back), then
    deliver."""
    with Session(engine) as s, s.begin():
        result = evaluate(s, cfg, now)
    result.update(deliver(engine, cfg, now))
    return result


def start_loop(
    engine: Engine, cfg: CollectorConfig, interval: float | None = None
) -> threading.Event:
    """Evaluate and deliver every ``interval`` seconds (``[alerts] interval_seconds``, with a
    little jitter so several workers do not all wake at once) on a daemon thread; set the
    returned event to stop it. Every worker of every collector may run one: the locks above
    let one evaluation through at a time and give each notification to one sender."""
    stop = threading.Event()
    period = interval if interval is not None else float(cfg.alerts.interval_seconds)

    def loop() -> None:
        while not stop.wait(period * random.uniform(0.9, 1.1)):
            try:
                run_once(engine, cfg, utcnow())
            except SQLAlchemyError as exc:  # the database away for a moment: next round
                log.warning("alert evaluation failed: %s", str(exc).splitlines()[0])

    threading.Thread(target=loop, name="alerts", daemon=True).start()
    return stop


def open_alerts(s: Session, gateway_id: str | None = None, limit: int | None = None) -> list[Alert]:
    """The alerts raised and not cleared, the critical and newest first."""
    q = select(Alert).where(Alert.raised_at.is_not(None), Alert.cleared_at.is_(None))
    if gateway_id is not None:
        q = q.where(Alert.gateway_id == gateway_id)
    return list(s.scalars(q.order_by(Alert.critical.desc(), Alert.raised_at.desc()).limit(limit)))


def count_open_alerts(s: Session) -> int:
    return int(
        s.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.raised_at.is_not(None), Alert.cleared_at.is_(None))
        )
        or 0
    )


def recent_alerts(s: Session, gateway_id: str, limit: int = 20) -> list[Alert]:
    return list(
        s.scalars(
            select(Alert)
            .where(Alert.gateway_id == gateway_id, Alert.raised_at.is_not(None))
            .order_by(Alert.raised_at.desc())
            .limit(limit)
        )
    )
