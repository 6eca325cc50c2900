"""Delivery: send batches to the collector until the outbox is empty; retry, back off, resume.

``hotspot sync run`` keeps going (collect every ``interval_seconds``, sample health every
``health_seconds``, drain the outbox back to back, back off with jitter up to
``backoff_max_seconds`` while the collector cannot be reached, purge once a day).
``hotspot sync once`` collects and drains once, for a cron job or a timer: exit 0 when
everything was delivered, 1 (one line) when not.

Every request is signed (:mod:`hotspot.wire`) with a fresh nonce, so a retry is a new request
carrying the same idempotency key: the collector takes the batch exactly once. The agent
keeps nothing important in memory: after kill -9 or a reboot it re-sends the batch in flight,
byte for byte, and carries on.
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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from hotspot import wire
from hotspot.collector_time import (
    MAX_ROUND_TRIP,
    Observation,
    boot_id,
    clock_source,
    observation_path,
    write_observation,
)
from hotspot.config import Config, database_path
from hotspot.db import is_storage_full
from hotspot.errors import ConfigError, ErrorCode, HotspotError
from hotspot.health import clock_synchronised, disk_warning
from hotspot.memory import EXIT_MEMORY_CEILING, FreedMemory, MemoryCeiling
from hotspot.timeutil import parse_utc, utcnow
from sync import health as health_mod
from sync.certs import CertKeeper
from sync.outbox import Batch, Outbox, batch_frame
from sync.policy import HttpFetcher, PolicyPuller
from sync.purge import purge

log = logging.getLogger(__name__)

BACKOFF_BASE = 5.0
PURGE_EVERY = dt.timedelta(hours=24)
FULL_SCAN_EVERY = dt.timedelta(hours=24)
# While the storage is full nothing can be queued: try again this often (not every few
# seconds: each try is a line in the journal).
STORAGE_FULL_RETRY = 30.0


class SyncFailed(HotspotError):
    code = ErrorCode.SYNC


class Transport(Protocol):
    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer or {}); raises OSError when there is no answer."""


def post_json(
    opener: urllib.request.OpenerDirector,
    req: urllib.request.Request,
    timeout: float,
    no_answer: tuple[type[Exception], ...],
    unreachable: Callable[[Exception], str],
) -> tuple[int, dict[str, Any]]:
    """Send ``req``: (HTTP status, the answer's JSON object or {}), an error status being an
    answer too (the collector's and the Bot API's transports). The ``no_answer`` errors
    become an ``OSError`` with the text ``unreachable`` makes of them (each caller keeps out
    of it what must not be shown, such as the bot token in the URL)."""
    try:
        with opener.open(req, timeout=timeout) as resp:
            status, data = resp.status, resp.read(65536)
    except urllib.error.HTTPError as exc:
        status, data = exc.code, exc.read(65536)
    except no_answer as exc:
        raise OSError(unreachable(exc)) from None
    try:
        answer = json.loads(data) if data else {}
    except ValueError:
        answer = {}
    return status, answer if isinstance(answer, dict) else {}


class HttpTransport:
    """Plain urllib (no proxy from the environment: reports go to the collector only)."""

    def __init__(self, base_url: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            self.base_url + path, data=body, method="POST", headers=headers
        )
        return post_json(
            self.opener,
            req,
            self.timeout,
            (TimeoutError, urllib.error.URLError, http.client.HTTPException),
            lambda exc: f"collector unreachable: {getattr(exc, 'reason', exc)}",
        )


@dataclass
class Outcome:
    ok: bool
    error: str = ""
    retry_now: bool = False  # a correctable refusal (clock, replay, size): try again at once
    duplicate: bool = False
    batch: Batch | None = None


@dataclass
class Agent:
    config: Config
    db: Engine
    transport: Transport | None = None
    clock: Callable[[], dt.datetime] = utcnow
    wallclock: Callable[[], float] = time.time
    rng: Callable[[], float] = random.random
    monotonic: Callable[[], float] = time.monotonic
    synced: Callable[[], bool | None] = clock_synchronised
    boot: str = field(default_factory=boot_id)
    outbox: Outbox = field(init=False)
    clock_offset: float = 0.0
    batch_limit: int = field(init=False)
    unstored_health_at: float | None = field(default=None, init=False)  # monotonic
    # The province's policy (sync/policy.py): pulled on the collect cycle when a key is pinned.
    policy: PolicyPuller | None = None
    # The portal's HTTPS certificate through the collector (sync/certs.py): [sync] cert_zone.
    certs: CertKeeper | None = None
    # Freed memory back to the system once an hour, and [sync] restart_above_mb
    # (hotspot/memory.py): made from the configuration unless given.
    freed_memory: FreedMemory | None = None
    memory_ceiling: MemoryCeiling | None = None

    def __post_init__(self) -> None:
        require_configured(self.config)
        self.outbox = Outbox(self.config, self.db, clock=self.clock, synced=self.synced)
        if self.transport is None:
            self.transport = HttpTransport(
                self.config.sync.upstream_url, self.config.sync.timeout_seconds
            )
        self.batch_limit = self.config.sync.max_batch_kb * 1024
        if self.freed_memory is None:
            self.freed_memory = FreedMemory()
        if self.memory_ceiling is None:
            self.memory_ceiling = MemoryCeiling(self.config.sync.restart_above_mb)
        if self.policy is None and self.config.policy.public_key:
            self.policy = PolicyPuller(
                self.config,
                self.outbox,
                HttpFetcher(self.config.sync.upstream_url, self.config.sync.timeout_seconds),
                wallclock=self.wallclock,
                clock_offset=lambda: self.clock_offset,
            )
        if self.certs is None and self.config.sync.cert_zone:
            self.certs = CertKeeper(
                self.config,
                self.outbox,
                HttpFetcher(self.config.sync.upstream_url, self.config.sync.timeout_seconds),
                self.transport,
                clock=self.clock,
                wallclock=self.wallclock,
                clock_offset=lambda: self.clock_offset,
            )

    # -- collecting ----------------------------------------------------------------------

    def health_due(self) -> bool:
        last = self.outbox.get_state("last_health_at")
        if not last:
            return True
        age = (self.clock() - parse_utc(last)).total_seconds()
        return age < 0 or age >= self.config.sync.health_seconds * 0.9

    def collect(
        self,
        *,
        full: bool = False,
        with_health: bool | None = None,
        cpu_interval: float | None = None,
    ) -> dict[str, int]:
        sample = None
        if with_health if with_health is not None else self.health_due():
            sample = health_mod.sample(
                self.config,
                self.db,
                self.clock(),
                backlog=self.outbox.pending(),
                cpu_interval=cpu_interval,
            )
            if disk_warning(self.config, sample["disk_pct"]):
                log.warning(
                    "storage %.1f %% full (the warning is at %d %%): free some space",
                    sample["disk_pct"],
                    self.config.database.disk_warning_pct,
                )
            synced = self.synced()
            sample["clock_synced"] = synced
            sample["clock_source"] = clock_source(self.config, synced, self.boot)
            if synced is False:
                log.warning(
                    "clock not synchronised%s: times reported may be off",
                    f" (the collector's differs by {self.clock_offset:+.0f} s)"
                    if self.clock_offset
                    else "",
                )
        try:
            counts = self.outbox.collect(full=full, health=sample)
        except OperationalError as exc:
            if sample is not None and is_storage_full(exc):
                self.send_unstored_health(sample)
            raise
        if any(counts.values()):
            log.debug("queued %s", counts)
        return counts

    def send_unstored_health(self, sample: dict[str, Any]) -> bool:
        """A health sample the outbox cannot store (the storage is full), sent at once in a
        batch of its own that is kept nowhere: the province sees the full storage while it is
        full. At most one per ``sync.health_seconds``; lost if the collector cannot be reached
        either. True when the collector took it."""
        mono = time.monotonic()
        last = self.unstored_health_at
        if last is not None and mono - last < self.config.sync.health_seconds:
            return False
        self.unstored_health_at = mono
        key = uuid.uuid4().hex
        head, tail = batch_frame(key, self.clock(), self.config.sync.gateway_id)
        raw = head + wire.dump_record(sample).encode() + tail
        batch = Batch(0, key, wire.compress(raw), 1, len(raw), 0)
        assert self.transport is not None
        try:
            status, answer = self.transport.post(wire.INGEST_PATH, batch.body, self.headers(batch))
        except OSError as exc:
            log.warning("storage full: health sample not sent either: %s", exc)
            return False
        took = status == 200 and bool(answer.get("ok")) and answer.get("batch") == key
        log.warning(
            "storage full: health sample sent without queueing it (%s)",
            "delivered" if took else f"collector answered {status}",
        )
        return took

    # -- sending -------------------------------------------------------------------------

    def headers(self, batch: Batch) -> dict[str, str]:
        ts = str(int(self.wallclock() + self.clock_offset))
        s = self.config.sync
        return {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            **wire.signed_headers(s.secret, s.gateway_id, ts, batch.key, batch.body),
        }

    def send_one(self) -> Outcome | None:
        """Send the batch in flight, or a new one; None when nothing is pending."""
        batch = self.outbox.current_batch() or self.outbox.make_batch(self.batch_limit)
        if batch is None:
            return None
        log.info(
            "sending batch %s: %d records, %d bytes (attempt %d)",
            batch.key,
            batch.records,
            len(batch.body),
            batch.attempts + 1,
        )
        assert self.transport is not None
        headers = self.headers(batch)
        sent = self.monotonic()
        try:
            status, answer = self.transport.post(wire.INGEST_PATH, batch.body, headers)
        except OSError as exc:
            return self._failed(batch, str(exc) or exc.__class__.__name__)
        received = self.monotonic()
        code = str(answer.get("error", ""))
        message = str(answer.get("message", ""))[:200]
        if status == 200 and answer.get("ok") and answer.get("batch") == batch.key:
            self.outbox.ack(batch)
            self.learn_time(answer, headers[wire.H_NONCE], batch.key, sent, received)
            log.info(
                "batch %s delivered%s",
                batch.key,
                " (the collector already had it)" if answer.get("duplicate") else "",
            )
            return Outcome(True, duplicate=bool(answer.get("duplicate")), batch=batch)
        if (
            status == 401
            and code == "stale"
            and isinstance(answer.get("server_time"), (int, float))
        ):
            # Our clock is off (a Pi without a real-time clock, no NTP yet): sign with the
            # collector's time. A wrong answer here only delays delivery; it cannot forge.
            self.clock_offset = float(answer["server_time"]) - self.wallclock()
            log.warning(
                "clock differs from the collector's by %.0f s; adjusting", self.clock_offset
            )
            return Outcome(False, "collector: stale timestamp", retry_now=True, batch=batch)
        if status == 409 and code == "replay":
            return Outcome(False, "collector: replayed request", retry_now=True, batch=batch)
        if status == 413 and self.batch_limit > 1024:
            self.outbox.release(batch)
            self.batch_limit = max(1024, len(batch.body) // 2)
            log.warning(
                "collector refused %d bytes as too large; batches now at most %d",
                len(batch.body),
                self.batch_limit,
            )
            return Outcome(False, "collector: batch too large", retry_now=True, batch=batch)
        detail = f"{code}: {message}" if code else (message or "no explanation")
        return self._failed(batch, f"collector answered {status} ({detail})")

    def learn_time(
        self, answer: dict[str, Any], nonce: str, key: str, sent: float, received: float
    ) -> Observation | None:
        """Keep the collector's time from an acknowledgement of *this* request (its signature
        covers our nonce: a forged, unsigned or replayed time is dropped, and so is the
        ``Date`` header, which nobody signs) for the gateway daemon, which sets the clock
        by it while NTP cannot be reached (hotspot/collector_time.py)."""
        try:
            time_ms = wire.verify_ack(
                self.config.sync.secret, answer, self.config.sync.gateway_id, nonce, key
            )
        except wire.WireError as exc:
            log.debug("collector's time not taken: %s", exc)
            return None
        if received - sent > MAX_ROUND_TRIP:
            return None
        # The collector stamped its answer somewhere in the round trip: its middle.
        obs = Observation(time_ms / 1000, (sent + received) / 2, self.boot)
        try:
            write_observation(observation_path(self.config), obs)
        except OSError as exc:
            log.warning("could not keep the collector's time: %s", exc)
            return None
        return obs

    def _failed(self, batch: Batch, error: str) -> Outcome:
        log.warning("batch %s not delivered: %s", batch.key, error)
        try:
            self.outbox.note_failure(batch, error)
        except OperationalError as exc:  # the database is busy: the note is not essential
            log.debug("could not record the failure: %s", exc)
        return Outcome(False, error, batch=batch)

    def backoff(self, failures: int) -> float:
        """Exponential with jitter ("equal jitter"): half fixed, half random; capped."""
        cap = float(self.config.sync.backoff_max_seconds)
        delay: float = min(cap, min(BACKOFF_BASE, cap) * 2 ** max(0, failures - 1))
        return delay / 2 + self.rng() * delay / 2

    def drain(
        self,
        *,
        max_failures: int,
        sleep: Callable[[float], Any] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Outcome:
        """Send until nothing is pending, or ``max_failures`` failures in a row."""
        failures = quick = 0
        last = Outcome(True)
        while not should_stop():
            outcome = self.send_one()
            if outcome is None:
                return last
            last = outcome
            if outcome.ok:
                failures = quick = 0
                continue
            if outcome.retry_now and quick < 3:
                quick += 1
                continue
            failures += 1
            if failures >= max_failures:
                return outcome
            sleep(self.backoff(failures))
        return last

    # -- entry points --------------------------------------------------------------------

    def once(
        self, *, max_failures: int = 3, sleep: Callable[[float], Any] = time.sleep
    ) -> dict[str, Any]:
        """Collect, then deliver everything; raise SyncFailed when something is left."""
        self.collect(cpu_interval=0.2)
        if self.policy is not None:
            self.policy.pull()
        if self.certs is not None:
            self.certs.step()
        outcome = self.drain(max_failures=max_failures, sleep=sleep)
        stats = self.outbox.stats()
        left = stats["pending"]
        if left or not outcome.ok:
            raise SyncFailed(f"{left} record(s) not delivered: {outcome.error or 'unknown error'}")
        return stats

    def run(self, stop: threading.Event) -> int:
        """The long-running agent; returns when ``stop`` is set."""
        s = self.config.sync
        import psutil

        psutil.cpu_percent(interval=None)  # prime: later calls measure since the previous
        next_collect = next_health = 0.0
        last_full = last_purge = None
        failures = 0
        log.info(
            "sync agent for %s → %s every %d s", s.gateway_id, s.upstream_url, s.interval_seconds
        )
        while not stop.is_set():
            if self.past_memory_ceiling():
                return EXIT_MEMORY_CEILING
            mono = time.monotonic()
            now = self.clock()
            try:
                if last_purge is None or now - last_purge >= PURGE_EVERY:
                    purge(self.config, self.db, now=now)
                    last_purge = now
                if mono >= next_collect or mono >= next_health:
                    full = last_full is None or now - last_full >= FULL_SCAN_EVERY
                    self.collect(full=full, with_health=mono >= next_health)
                    if full:
                        last_full = now
                    if self.policy is not None and mono >= next_collect:
                        self.policy.pull()
                    if self.certs is not None and mono >= next_collect:
                        self.certs.step()
                    if mono >= next_health:
                        next_health = mono + s.health_seconds
                    next_collect = mono + s.interval_seconds
            except OperationalError as exc:  # busy database or full storage: try again
                stop.wait(self._database_failed("collect", exc))
                continue
            try:
                outcome = self.send_one()
            except OperationalError as exc:
                # A batch the collector took but whose acknowledgement could not be written
                # is sent again, byte for byte: the collector takes it once.
                stop.wait(self._database_failed("send", exc))
                continue
            if outcome is None:  # all delivered: wait for the next collect
                failures = 0
                stop.wait(max(0.0, min(next_collect, next_health) - time.monotonic()))
            elif outcome.ok:
                failures = 0
            elif outcome.retry_now:
                continue
            else:
                failures += 1
                delay = self.backoff(failures)
                log.info("retrying in %.1f s", delay)
                stop.wait(delay)
        log.info("sync agent stopped")
        return 0

    def past_memory_ceiling(self) -> bool:
        """Give the allocator's freed memory back when an hour has passed; True (after one
        warning) when the agent is past ``[sync] restart_above_mb`` even so. Stopping then
        loses nothing: what is queued is in the outbox, the batch in flight goes again byte
        for byte, and systemd starts the agent again (``Restart=always``)."""
        assert self.freed_memory is not None and self.memory_ceiling is not None
        self.freed_memory.due()
        size = self.memory_ceiling.exceeded()
        if size is None:
            return False
        log.warning(
            "resident memory %.0f MB is past [sync] restart_above_mb = %d: stopping to be "
            "started again (nothing is lost: the outbox is on disk)",
            size,
            self.memory_ceiling.limit_mb,
        )
        return True

    def _database_failed(self, what: str, exc: OperationalError) -> float:
        """Log a failed database step of the agent's loop; how long to wait before the next
        try. The outbox neither grows nor loses anything meanwhile."""
        interval = float(self.config.sync.interval_seconds)
        if is_storage_full(exc):
            wait = min(STORAGE_FULL_RETRY, interval)
            log.warning("%s: storage full: nothing new queued; trying again in %.0f s", what, wait)
            return wait
        log.warning("%s: %s", what, str(exc).splitlines()[0])
        return min(5.0, interval)


def require_configured(config: Config) -> None:
    s = config.sync
    if not s.upstream_url:
        raise ConfigError("sync.upstream_url", "not set: this gateway does not report")


def lock_path(config: Config) -> Path:
    db = database_path(config.database.url)
    if db is not None:
        return db.with_name(db.name + ".sync.lock")
    return Path(tempfile.gettempdir()) / f"hotspot-sync-{config.sync.gateway_id}.lock"


class AgentLock:
    """One agent per database: ``sync once`` from a timer while ``sync run`` runs would send
    the same rows twice (harmless, but wasteful on a slow link)."""

    def __init__(self, config: Config):
        self.path = lock_path(config)
        self.fd: int | None = None

    def __enter__(self) -> AgentLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            raise SyncFailed(f"another sync agent is running (lock {self.path})") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
