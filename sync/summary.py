"""The daily summary service (issue #13, item 7): make the day's message at ``[summary]
send_at`` and deliver the queue to Telegram's Bot API (``sendMessage``), store and forward.

``hotspot summary run`` (unit ``hotspot-summary``, the sync agent's user) wakes every
minute: it notes whether the internet is reachable (for the day's outage line), makes the
day's summary when it is due, and sends what is queued, oldest first.

Once a day
    The scheduled summary of a village day is a row with that day in the unique column
    ``scheduled_day``: it is made at most once, whatever the clock does (a restart, kill -9,
    a clock that jumps back or forward). It is made on the day itself, at or after
    ``send_at``; a day whose ``send_at`` passed while the gateway was off is not made later.
Delivery
    A 200 answer with ``"ok": true`` marks it sent. 429: wait ``retry_after``. 5xx, no answer,
    a timeout, an answer that is not the Bot API's (a hotel's captive portal): back off
    (30 s doubling to an hour, with jitter) and keep the order — nothing newer goes before
    it. Any other 4xx (wrong token 401, chat not found 400/403/404): refused for good, kept
    with the error for ``hotspot summary queue`` and the console, tried again only when the
    admin changes the token or the chat (or runs ``hotspot summary retry``).
At least once, never in a loop
    Telegram has no idempotency key. The row is marked ``sending`` (committed) before the
    request and ``sent`` after the answer; a process killed between the two sends that one
    message again when it restarts. So each kill (or power cut) inside that window — one
    request, at most ``TIMEOUT`` seconds — can add one duplicate; nothing else can.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import http.client
import json
import logging
import os
import random
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hotspot import summary as summary_mod
from hotspot.config import Config, database_path
from hotspot.errors import ConfigError, ErrorCode, HotspotError
from hotspot.model_summary import DailySummary, SummaryState, UplinkEvent
from hotspot.timeutil import local_time, utcnow
from sync.agent import post_json
from sync.health import probe_uplink

log = logging.getLogger(__name__)

TIMEOUT = 30.0  # seconds one sendMessage may take
BACKOFF_BASE = 30.0
BACKOFF_MAX = 3600.0
RETRY_AFTER_MAX = 86400
WAKE_SECONDS = 60.0
SPACING = 1.0  # Telegram: about one message a second to one chat
MAX_PER_DRAIN = 20


class SummaryFailed(HotspotError):
    code = ErrorCode.SYNC


class Transport(Protocol):
    def send(self, token: str, chat_id: str, text: str) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer or {}); raises OSError when there is no answer."""


class BotApi:
    """``POST {api_base}/bot<token>/sendMessage`` with a JSON body (urllib, no proxy from
    the environment). The URL holds the token: it is never logged, and errors are made here
    without it."""

    def __init__(self, api_base: str, timeout: float = TIMEOUT):
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def send(self, token: str, chat_id: str, text: str) -> tuple[int, dict[str, Any]]:
        body = json.dumps(
            {"chat_id": chat_id, "text": text, "disable_web_page_preview": True}
        ).encode()
        req = urllib.request.Request(
            f"{self.api_base}/bot{token}/sendMessage",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "hotspot-desa-summary/1"},
        )
        return post_json(
            self.opener,
            req,
            self.timeout,
            (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError),
            lambda exc: (
                f"Telegram unreachable: {getattr(exc, 'reason', None) or exc.__class__.__name__}"
            ),
        )


@dataclass(frozen=True)
class Verdict:
    """What an answer means: ``sent``, ``retry`` (after ``delay`` s, None = back off) or
    ``failed`` (for good)."""

    kind: str
    error: str = ""
    delay: float | None = None
    message_id: int | None = None


def classify(status: int | None, answer: dict[str, Any], error: str = "") -> Verdict:
    """The Bot API's answer (``status`` None: no answer at all, ``error`` says why)."""
    if status is None:
        return Verdict("retry", error or "no answer")
    description = str(answer.get("description", ""))[:200]
    detail = f"Telegram answered {status}" + (f": {description}" if description else "")
    if status == 200 and answer.get("ok") is True:
        result = answer.get("result")
        mid = result.get("message_id") if isinstance(result, dict) else None
        return Verdict("sent", message_id=mid if isinstance(mid, int) else None)
    if status == 429:
        params = answer.get("parameters")
        after = params.get("retry_after") if isinstance(params, dict) else None
        if isinstance(after, (int, float)) and not isinstance(after, bool) and after > 0:
            return Verdict("retry", detail, delay=float(min(after, RETRY_AFTER_MAX)))
        return Verdict("retry", detail)
    if 400 <= status < 500:
        return Verdict("failed", detail)
    if status == 200:  # a 200 that is not the Bot API's (a captive portal upstream)
        return Verdict("retry", "an answer that is not Telegram's")
    return Verdict("retry", detail)


@dataclass
class Sender:
    config: Config
    db: Engine
    transport: Transport | None = None
    clock: Callable[[], dt.datetime] = utcnow
    rng: Callable[[], float] = random.random
    sleep: Callable[[float], Any] = time.sleep
    probe: Callable[[str], tuple[bool | None, float | None]] = probe_uplink
    machine: dict[str, Any] | None = None  # tests: instead of the live health probe
    spacing: float = SPACING
    # Tests: instead of the agents' payments of the day from the ledger.
    agent_cash: Callable[[dt.date], list[tuple[str, int]] | None] = field(default=lambda day: None)

    def __post_init__(self) -> None:
        if self.transport is None:
            self.transport = BotApi(self.config.summary.api_base)

    # -- making ------------------------------------------------------------------------------

    def compose(self, day: dt.date) -> str:
        facts = summary_mod.gather(
            self.db,
            self.config,
            day,
            self.clock(),
            agent_cash=self.agent_cash(day),
            machine=self.machine,
        )
        return summary_mod.compose(facts)

    def due_day(self) -> dt.date | None:
        """Today (village time) when its scheduled summary is due and not made yet."""
        local = local_time(self.clock(), self.config.village.tz)
        if local.time().replace(second=0, microsecond=0) < self.config.summary.send_at:
            return None
        day = local.date()
        with Session(self.db) as s:
            made = s.scalar(select(DailySummary.id).where(DailySummary.scheduled_day == day))
        return None if made is not None else day

    def make_due(self) -> int | None:
        """Queue today's scheduled summary if it is due; its id, or None."""
        day = self.due_day()
        if day is None:
            return None
        return self.queue_summary(day, scheduled=True)

    def queue_summary(self, day: dt.date, *, scheduled: bool) -> int | None:
        text = self.compose(day)
        try:
            with Session(self.db) as s, s.begin():
                row = DailySummary(
                    day=day,
                    scheduled_day=day if scheduled else None,
                    created_at=self.clock(),
                    text=text,
                    state=SummaryState.PENDING,
                    attempts=0,
                )
                s.add(row)
                s.flush()
                rid = row.id
        except IntegrityError:  # another process made it a moment ago: once is once
            return None
        log.info("summary of %s queued (#%d, %d characters)", day, rid, len(text))
        return rid

    # -- the uplink ------------------------------------------------------------------------

    def note_uplink(self, ok: bool | None) -> None:
        """Record a change of the internet's reachability (nothing when unchanged)."""
        if ok is None:
            return
        with Session(self.db) as s, s.begin():
            last = s.scalar(select(UplinkEvent.ok).order_by(UplinkEvent.id.desc()).limit(1))
            if last is None or bool(last) != ok:
                s.add(UplinkEvent(at=self.clock(), ok=ok))
                log.info("internet %s", "back" if ok else "unreachable")

    # -- sending ---------------------------------------------------------------------------

    def requeue_changed(self) -> int:
        """Refused summaries go back to the queue once the bot or the chat is another."""
        fp = summary_mod.fingerprint(self.config.summary)
        with Session(self.db) as s, s.begin():
            n = s.execute(
                update(DailySummary)
                .where(
                    DailySummary.state == SummaryState.FAILED,
                    DailySummary.failed_config != fp,
                )
                .values(state=SummaryState.PENDING, next_attempt_at=None, failed_config=None)
            ).rowcount  # type: ignore[attr-defined]  # DML gives a CursorResult
        if n:
            log.info("the bot or chat changed: %d refused summaries queued again", n)
        return int(n)

    def retry_failed(self, row_id: int | None = None) -> int:
        """``hotspot summary retry``: refused summaries (or one) back into the queue."""
        q = update(DailySummary).where(DailySummary.state == SummaryState.FAILED)
        if row_id is not None:
            q = q.where(DailySummary.id == row_id)
        with Session(self.db) as s, s.begin():
            n = s.execute(
                q.values(state=SummaryState.PENDING, next_attempt_at=None, failed_config=None)
            ).rowcount  # type: ignore[attr-defined]
        return int(n)

    def _oldest(self) -> DailySummary | None:
        with Session(self.db, expire_on_commit=False) as s:
            return s.scalar(
                select(DailySummary)
                .where(DailySummary.state.in_((SummaryState.PENDING, SummaryState.SENDING)))
                .order_by(DailySummary.id)
                .limit(1)
            )

    def _set(self, row_id: int, **values: Any) -> None:
        with Session(self.db) as s, s.begin():
            s.execute(update(DailySummary).where(DailySummary.id == row_id).values(**values))

    def backoff(self, attempts: int) -> float:
        delay: float = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1))
        return delay / 2 + self.rng() * delay / 2

    def send_one(self) -> Verdict | None:
        """Send the oldest summary in the queue if its time has come; None when there is
        nothing to send now (empty, or the oldest waits for its retry time)."""
        row = self._oldest()
        if row is None:
            return None
        now = self.clock()
        if row.next_attempt_at is not None and row.next_attempt_at > now:
            return None
        if row.state is SummaryState.SENDING:
            log.warning(
                "summary #%d was being sent when the sender stopped: sending it again "
                "(it may arrive twice)",
                row.id,
            )
        s = self.config.summary
        # Durable before the request: a kill after this line resends it, once.
        self._set(
            row.id, state=SummaryState.SENDING, attempts=row.attempts + 1, last_attempt_at=now
        )
        assert self.transport is not None
        try:
            status, answer = self.transport.send(s.telegram_bot_token, s.telegram_chat_id, row.text)
        except OSError as exc:
            verdict, answered = classify(None, {}, str(exc) or exc.__class__.__name__), False
        else:
            verdict, answered = classify(status, answer), True
        done = self.clock()
        if verdict.kind == "sent":
            self._set(
                row.id,
                state=SummaryState.SENT,
                sent_at=done,
                message_id=verdict.message_id,
                last_error=None,
                next_attempt_at=None,
            )
            log.info("summary #%d of %s sent", row.id, row.day)
        elif verdict.kind == "failed":
            self._set(
                row.id,
                state=SummaryState.FAILED,
                last_error=verdict.error[:300],
                failed_config=summary_mod.fingerprint(s),
                next_attempt_at=None,
            )
            log.error("summary #%d refused, not retried: %s", row.id, verdict.error)
        else:
            delay = verdict.delay if verdict.delay is not None else self.backoff(row.attempts + 1)
            self._set(
                row.id,
                state=SummaryState.PENDING,
                last_error=verdict.error[:300],
                next_attempt_at=done + dt.timedelta(seconds=delay),
            )
            log.warning(
                "summary #%d not sent (%s); next try in %.0f s", row.id, verdict.error, delay
            )
        self.note_uplink(answered)  # an answer, even a refusal: the internet is there
        return verdict

    def drain(self) -> dict[str, int]:
        """Send what is due, oldest first, until a retry must wait (the order is kept)."""
        counts = {"sent": 0, "failed": 0, "retry": 0}
        for i in range(MAX_PER_DRAIN):
            verdict = self.send_one()
            if verdict is None:
                break
            counts[verdict.kind] += 1
            if verdict.kind == "retry":
                break
            if i + 1 < MAX_PER_DRAIN and self._oldest() is not None:
                self.sleep(self.spacing)
        return counts

    def tick(self, *, probe: bool = True) -> dict[str, Any]:
        """One round: the uplink, a due summary, the queue."""
        require_enabled(self.config)
        if probe:
            self.note_uplink(self.probe(self.config.summary.api_base)[0])
        self.requeue_changed()
        made = self.make_due()
        counts = self.drain()
        return {"made": made, **counts}

    def run(self, stop: threading.Event) -> int:
        log.info(
            "summary service: daily at %s %s to chat %s",
            f"{self.config.summary.send_at:%H:%M}",
            self.config.village.timezone,
            self.config.summary.telegram_chat_id,
        )
        while not stop.is_set():
            try:
                with SenderLock(self.config):
                    self.tick()
            except SummaryFailed as exc:  # `send-now` is sending: next round
                log.info("%s", exc.message)
            except OperationalError as exc:  # a busy database: next round
                log.warning("summary: %s", str(exc).splitlines()[0])
            stop.wait(WAKE_SECONDS)
        log.info("summary service stopped")
        return 0


def require_enabled(config: Config) -> None:
    if not config.summary.enabled:
        raise ConfigError("summary.enabled", "is false: no daily summary is sent")


def lock_path(config: Config) -> Path:
    db = database_path(config.database.url)
    if db is not None:
        return db.with_name(db.name + ".summary.lock")
    return Path(tempfile.gettempdir()) / "hotspot-summary.lock"


class SenderLock:
    """One sender at a time per database, held for one round: ``send-now`` while the
    service sends must not send the same row twice. ``wait``: seconds to wait for it."""

    def __init__(self, config: Config, wait: float = 0.0):
        self.path = lock_path(config)
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> SenderLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.2)
        os.close(self.fd)
        self.fd = None
        raise SummaryFailed(f"the summary is being sent by another process (lock {self.path})")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
