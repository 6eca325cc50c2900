"""The outbox: what the gateway has to report, and the batches that carry it.

Collecting (:meth:`Outbox.collect`) reads the gateway's own tables — hourly usage, voucher
sales, the gateway's description — compares them with the outbox and writes what changed in
*one* short write transaction, together with a health sample when one is due. Usage is
reported as absolute totals per device-hour (the collector keeps the largest value it has
seen of each, so a record sent twice, or late, is never counted twice); a device-hour still
open is simply sent again when it has grown.

Batching (:meth:`Outbox.make_batch`) takes pending rows in order, packs as many as fit in
``max_batch_kb`` after gzip, and stores that exact body under a fresh idempotency key before
anything is sent. :meth:`Outbox.ack` marks the rows delivered *at the revision that was sent*:
a row that changed while its batch was in flight stays pending.

Steady state on the SD card: one write transaction per collect, one per batch made and one per
batch acknowledged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from hotspot import __version__, wire
from hotspot.config import Config
from hotspot.health import clock_synchronised
from hotspot.model import HourlyUsage
from hotspot.model_sync import SyncBatch, SyncOutbox, SyncState
from hotspot.model_uplink import UplinkOutage
from hotspot.pseudonym import KeyRing, PeriodPseudonymizer
from hotspot.timeutil import iso, utcnow
from hotspot.usage import hourly_query
from sync.sales import monthly_sales

log = logging.getLogger(__name__)

# Hours at or after (now - RESCAN) are compared again on every collect: the engine writes an
# hour's last bytes up to ``gateway.flush_seconds`` (≤ 1 h) after it closed.
RESCAN = dt.timedelta(hours=3)
SALES_RESCAN_DAYS = 40  # the current and the previous month
OUTAGE_RESCAN = dt.timedelta(days=40)  # outages started since, and any still going on
SCAN_WINDOW = dt.timedelta(days=1)  # a full scan reads this much usage at a time


@dataclass(frozen=True)
class Batch:
    id: int
    key: str
    body: bytes
    records: int
    raw_bytes: int
    attempts: int


def hour_of(ts: dt.datetime) -> dt.datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def batch_frame(key: str, created: dt.datetime, gateway: str) -> tuple[bytes, bytes]:
    """What goes before and after a batch's records (joined by commas) in its body."""
    head = (
        f'{{"batch":"{key}","created_at":"{iso(created)}",'
        f'"gateway":{json.dumps(gateway)},"records":['
    ).encode()
    return head, b'],"v":%d}' % wire.PROTOCOL


def _content(record: dict[str, Any]) -> str:
    """The record without its revision: what decides whether it changed."""
    return wire.dump_record({k: v for k, v in record.items() if k != "rev"})


class Outbox:
    def __init__(
        self,
        config: Config,
        db: Engine,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        key: bytes | None = None,
        synced: Callable[[], bool | None] = clock_synchronised,
    ):
        self.config = config
        self.db = db
        self.clock = clock
        # ``key``: one fixed key for every period (tests); else a key per period, destroyed
        # once its period's hours are collected (hotspot/pseudonym.py)
        self.keys = KeyRing(config, db, fixed=key, clock=clock)
        self.pseudonym = PeriodPseudonymizer(self.keys)
        self.synced = synced
        self.unnamed = 0  # device-hours of periods whose key is gone, since the last collect

    # -- state ---------------------------------------------------------------------------

    def get_state(self, name: str, default: str | None = None) -> str | None:
        with Session(self.db) as s:
            row = s.get(SyncState, name)
            return row.value if row is not None else default

    @staticmethod
    def put_state(s: Session, name: str, value: Any) -> None:
        row = s.get(SyncState, name)
        if row is None:
            s.add(SyncState(name=name, value=str(value), updated_at=utcnow()))
        else:
            row.value, row.updated_at = str(value), utcnow()

    @staticmethod
    def bump_state(s: Session, name: str, by: int) -> None:
        row = s.get(SyncState, name)
        Outbox.put_state(s, name, int(row.value if row is not None else 0) + by)

    # -- collecting ----------------------------------------------------------------------

    def _usage_records(
        self, s: Session, lo: dt.datetime | None, hi: dt.datetime | None
    ) -> list[tuple[str, dict[str, Any], dt.datetime]]:
        out = []
        for mac, hour, seconds, down, up in s.execute(hourly_query(lo, hi)):
            named = self.pseudonym(mac, hour)
            if named is None:  # its period's key is gone: reported already, or never
                self.unnamed += 1
                continue
            client, period = named
            rec = {
                "kind": "usage",
                "client": client,
                "period_start": hour,
                "seconds": min(int(seconds or 0), 86_400),
                "bytes_down": int(down or 0),
                "bytes_up": int(up or 0),
                "key_period": period,
            }
            out.append((f"{client}|{iso(hour)}", rec, hour))
        return out

    def gateway_record(self) -> dict[str, Any]:
        return {
            "kind": "gateway",
            "village": self.config.village.name[:100],
            "timezone": self.config.village.timezone,
            "version": __version__,
        }

    def outage_records(self, since: dt.datetime | None) -> list[dict[str, Any]]:
        """The uplink's outages (gateway/uplink.py) started at or after ``since`` (all when
        None), and the one going on: each a window, sent again when it ends."""
        query = select(UplinkOutage.started_at, UplinkOutage.ended_at, UplinkOutage.cause)
        if since is not None:
            query = query.where(
                UplinkOutage.ended_at.is_(None) | (UplinkOutage.started_at >= since)
            )
        with Session(self.db) as s:
            rows = s.execute(query.order_by(UplinkOutage.started_at)).all()
        return [
            {"kind": "outage", "started_at": start, "ended_at": end, "cause": cause.value}
            for start, end, cause in rows
        ]

    def _windows(
        self, since: dt.datetime | None, now: dt.datetime
    ) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
        """Hour ranges to scan, a day at a time, so a full scan of months of data never holds
        more than a day of it in memory; the last range is open-ended."""
        if since is None:
            with Session(self.db) as s:
                since = s.scalar(select(func.min(HourlyUsage.hour)))
            if since is None:
                return [(None, None)]
        out: list[tuple[dt.datetime | None, dt.datetime | None]] = []
        lo = since
        while lo + SCAN_WINDOW < now:
            out.append((lo, lo + SCAN_WINDOW))
            lo += SCAN_WINDOW
        out.append((lo, None))
        return out

    def _changes(
        self,
        wanted: dict[tuple[str, str], tuple[dict[str, Any], dt.datetime | None]],
        now: dt.datetime,
        counts: dict[str, int],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The outbox inserts and updates that make the outbox hold ``wanted``."""
        existing: dict[tuple[str, str], tuple[int, int, str]] = {}
        keys_by_kind: dict[str, list[str]] = {}
        for kind, key in wanted:
            keys_by_kind.setdefault(kind, []).append(key)
        with Session(self.db) as s:
            for kind, keys in keys_by_kind.items():
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    for row_id, key, rev, payload in s.execute(
                        select(
                            SyncOutbox.id, SyncOutbox.key, SyncOutbox.rev, SyncOutbox.payload
                        ).where(SyncOutbox.kind == kind, SyncOutbox.key.in_(chunk))
                    ):
                        existing[(kind, key)] = (row_id, rev, payload)
        inserts, updates = [], []
        rev_now = int(time.time() * 1000)
        for (kind, key), (rec, period) in wanted.items():
            content = _content(rec)
            old = existing.get((kind, key))
            if old is not None:
                old_rec = json.loads(old[2])
                old_rec.pop("rev", None)
                if wire.dump_record(old_rec) == content:
                    continue
            rev = max(rev_now, (old[1] + 1) if old else 1)
            if kind in ("sales", "gateway", "outage"):
                rec = {**rec, "rev": rev}
            payload = wire.dump_record(rec)
            try:
                wire.validate_record(json.loads(payload))
            except wire.WireError as exc:  # never queue what the collector would refuse
                log.error("not reporting %s %s: %s", kind, key, exc)
                continue
            counts[kind] += 1
            if old is None:
                inserts.append(
                    {
                        "kind": kind,
                        "key": key,
                        "payload": payload,
                        "rev": rev,
                        "sent_rev": 0,
                        "period": period,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            else:
                updates.append({"row_id": old[0], "payload": payload, "rev": rev, "now": now})
        return inserts, updates

    @staticmethod
    def _write(s: Session, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        if inserts:
            s.execute(insert(SyncOutbox), inserts)
        for u in updates:
            s.execute(
                update(SyncOutbox)
                .where(SyncOutbox.id == u["row_id"])
                .values(payload=u["payload"], rev=u["rev"], updated_at=u["now"])
            )

    def collect(
        self, *, full: bool = False, health: dict[str, Any] | None = None
    ) -> dict[str, int]:
        """Queue what changed since the last collect (every hour, sale and setting when
        ``full``); returns how many records of each kind were queued. In steady state this is
        one write transaction; a full scan writes one more per day of history."""
        now = self.clock()
        counts = {k: 0 for k in wire.KINDS}
        self.unnamed = 0
        mark = None if full else self.get_state("usage_watermark")
        since = None if mark is None else dt.datetime.fromisoformat(mark)
        windows = self._windows(since, now)
        for lo, hi in windows[:-1]:
            with Session(self.db) as s:
                wanted: dict[tuple[str, str], tuple[dict[str, Any], dt.datetime | None]] = {
                    ("usage", key): (rec, hour) for key, rec, hour in self._usage_records(s, lo, hi)
                }
            inserts, updates = self._changes(wanted, now, counts)
            if inserts or updates:
                with Session(self.db) as s, s.begin():
                    self._write(s, inserts, updates)
        lo, hi = windows[-1]
        with Session(self.db) as s:
            wanted = {
                ("usage", key): (rec, hour) for key, rec, hour in self._usage_records(s, lo, hi)
            }
        sales_since = None if full or since is None else now - dt.timedelta(days=SALES_RESCAN_DAYS)
        for rec in monthly_sales(self.config, self.db, since=sales_since):
            wanted[("sales", f"{rec['month']}|{rec['package']}")] = (rec, None)
        outage_since = None if full or since is None else now - OUTAGE_RESCAN
        for rec in self.outage_records(outage_since):
            wanted[("outage", iso(rec["started_at"]))] = (rec, rec["started_at"])
        wanted[("gateway", "info")] = (self.gateway_record(), None)
        inserts, updates = self._changes(wanted, now, counts)
        health_key = None
        if health is not None:
            payload = wire.dump_record(health)
            wire.validate_record(json.loads(payload))
            health_key = iso(health["sampled_at"])
            health_row = {
                "kind": "health",
                "key": health_key,
                "payload": payload,
                "rev": 1,
                "sent_rev": 0,
                "period": health["sampled_at"],
                "created_at": now,
                "updated_at": now,
            }
        # A second sample within the same second replaces nothing: neither one still in the
        # outbox nor one already delivered and dropped from it (the collector keeps one
        # sample per second, so counting both would report one more than it received).
        last_key = self.get_state("last_health_key") if health_key is not None else None
        with Session(self.db) as s, s.begin():
            if health_key is not None and health_key != last_key:
                dup = s.scalar(
                    select(SyncOutbox.id).where(
                        SyncOutbox.kind == "health", SyncOutbox.key == health_key
                    )
                )
                if dup is None:
                    inserts.append(health_row)
                    counts["health"] += 1
                    self.put_state(s, "last_health_key", health_key)
            self._write(s, inserts, updates)
            watermark = hour_of(now) - RESCAN
            self.put_state(s, "usage_watermark", watermark.isoformat())
            # Every hour before the watermark has been read in its final form: the keys of
            # periods ended by then name nothing more. Not on a clock nobody set (a year
            # ahead would destroy this month's key): that waits, nothing is lost.
            destroyed = (
                self.keys.destroy_through(s, watermark)
                if self.keys.rotating and self.synced() is not False
                else []
            )
            if destroyed:  # in the same commit: a power cut before the scrub still scrubs
                self.put_state(s, "pseudonym_scrub_pending", "1")
            self.put_state(s, "last_collect_at", iso(now))
            if health is not None:
                self.put_state(s, "last_health_at", iso(now))
            for kind, n in counts.items():
                if n:
                    self.bump_state(s, f"queued_{kind}", n)
        if destroyed:
            self.pseudonym.forget(destroyed)
            log.info("pseudonym keys of %s destroyed (their hours are all reported)", destroyed)
        if self.get_state("pseudonym_scrub_pending"):
            self._scrub()
        if self.unnamed and not full:  # a full scan passes reported history: no news
            log.warning(
                "%d device-hours stamped in a period whose pseudonym key is gone (a clock set "
                "back?): not reported",
                self.unnamed,
            )
        return counts

    def _scrub(self) -> None:
        """Truncate the WAL that still holds destroyed keys; retried at the next collect
        until it completes (a reader can keep it from completing)."""
        done = self.keys.scrub()
        with Session(self.db) as s, s.begin():
            self.put_state(s, "pseudonym_scrub_pending", "" if done else "1")

    # -- batches -------------------------------------------------------------------------

    def pending(self) -> int:
        """Records not yet acknowledged at their latest revision."""
        with Session(self.db) as s:
            return int(
                s.scalar(
                    select(func.count())
                    .select_from(SyncOutbox)
                    .where(SyncOutbox.rev > SyncOutbox.sent_rev)
                )
                or 0
            )

    def current_batch(self) -> Batch | None:
        """The oldest batch not yet acknowledged (it must be sent again, unchanged)."""
        with Session(self.db) as s:
            b = s.scalar(select(SyncBatch).order_by(SyncBatch.id).limit(1))
            if b is None:
                return None
            return Batch(b.id, b.key, b.body, b.records, b.raw_bytes, b.attempts)

    def make_batch(self, max_bytes: int) -> Batch | None:
        """Pack pending rows into a new batch of at most ``max_bytes`` (gzip), store it."""
        with Session(self.db) as s:
            rows = s.execute(
                select(SyncOutbox.id, SyncOutbox.rev, SyncOutbox.payload)
                .where(SyncOutbox.batch_id.is_(None), SyncOutbox.rev > SyncOutbox.sent_rev)
                .order_by(SyncOutbox.id)
                .limit(wire.MAX_RECORDS)
            ).all()
        if not rows:
            return None
        key = uuid.uuid4().hex
        created = self.clock()
        head, tail = batch_frame(key, created, self.config.sync.gateway_id)
        payloads = [r.payload.encode() for r in rows]

        def build(n: int) -> tuple[bytes, int]:
            raw = head + b",".join(payloads[:n]) + tail
            return wire.compress(raw), len(raw)

        # Nothing compresses better than ~30x here: bound the search by raw size first.
        hi, total = 0, len(head) + len(tail)
        while hi < len(payloads) and total + len(payloads[hi]) + 1 <= max_bytes * 30:
            total += len(payloads[hi]) + 1
            hi += 1
        hi = max(hi, 1)
        body, raw_len = build(hi)
        if len(body) > max_bytes and hi > 1:
            lo = 1  # invariant: build(lo) fits (or lo == 1), build(hi) does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if len(build(mid)[0]) <= max_bytes:
                    lo = mid
                else:
                    hi = mid
            hi = lo
            body, raw_len = build(hi)
        chosen = rows[:hi]
        with Session(self.db) as s, s.begin():
            batch = SyncBatch(
                key=key,
                created_at=created,
                body=body,
                records=len(chosen),
                raw_bytes=raw_len,
                attempts=0,
            )
            s.add(batch)
            s.flush()
            for r in chosen:
                res = s.execute(
                    update(SyncOutbox)
                    .where(
                        SyncOutbox.id == r.id,
                        SyncOutbox.rev == r.rev,
                        SyncOutbox.batch_id.is_(None),
                    )
                    .values(batch_id=batch.id, inflight_rev=r.rev)
                )
                if res.rowcount != 1:  # type: ignore[attr-defined]  # pragma: no cover - one agent at a time (lock file); DML gives a CursorResult
                    raise RuntimeError("the outbox changed under the agent")
            self.bump_state(s, "batches_made", 1)
            return Batch(batch.id, key, body, len(chosen), raw_len, 0)

    def ack(self, batch: Batch) -> None:
        """The collector has the batch: its rows are delivered at the revision sent."""
        now = self.clock()
        with Session(self.db) as s, s.begin():
            s.execute(
                update(SyncOutbox)
                .where(SyncOutbox.batch_id == batch.id)
                .values(sent_rev=SyncOutbox.inflight_rev, inflight_rev=None, batch_id=None)
            )
            # Delivered health samples are not needed here any more.
            s.execute(
                delete(SyncOutbox).where(
                    SyncOutbox.kind == "health",
                    SyncOutbox.batch_id.is_(None),
                    SyncOutbox.rev <= SyncOutbox.sent_rev,
                )
            )
            s.execute(delete(SyncBatch).where(SyncBatch.id == batch.id))
            self.bump_state(s, "delivered_records", batch.records)
            self.bump_state(s, "delivered_batches", 1)
            self.put_state(s, "last_success_at", iso(now))
            self.put_state(s, "last_error", "")

    def release(self, batch: Batch) -> None:
        """Give up a batch the collector will never take as it is (too large): its rows are
        pending again and go out in smaller batches."""
        with Session(self.db) as s, s.begin():
            s.execute(
                update(SyncOutbox)
                .where(SyncOutbox.batch_id == batch.id)
                .values(inflight_rev=None, batch_id=None)
            )
            s.execute(delete(SyncBatch).where(SyncBatch.id == batch.id))

    def note_failure(self, batch: Batch | None, error: str) -> None:
        now = self.clock()
        with Session(self.db) as s, s.begin():
            if batch is not None:
                s.execute(
                    update(SyncBatch)
                    .where(SyncBatch.id == batch.id)
                    .values(
                        attempts=SyncBatch.attempts + 1, last_attempt_at=now, last_error=error[:300]
                    )
                )
            self.put_state(s, "last_error", error[:300])
            self.put_state(s, "last_error_at", iso(now))

    def stats(self) -> dict[str, Any]:
        with Session(self.db) as s:
            state = {
                r.name: r.value
                for r in s.scalars(select(SyncState))
                if not r.name.startswith("pseudonym_key")
            }
            by_kind = dict(
                s.execute(
                    select(SyncOutbox.kind, func.count())
                    .where(SyncOutbox.rev > SyncOutbox.sent_rev)
                    .group_by(SyncOutbox.kind)
                ).all()
            )
            batch = s.scalar(select(SyncBatch).order_by(SyncBatch.id).limit(1))
            oldest = s.scalar(
                select(func.min(SyncOutbox.updated_at)).where(SyncOutbox.rev > SyncOutbox.sent_rev)
            )
        return {
            "pending": sum(by_kind.values()),
            "pending_by_kind": by_kind,
            "oldest_pending": iso(oldest) if oldest else None,
            "batch_in_flight": None
            if batch is None
            else {
                "key": batch.key,
                "records": batch.records,
                "bytes": len(batch.body),
                "attempts": batch.attempts,
                "last_error": batch.last_error,
            },
            "last_success_at": state.get("last_success_at") or None,
            "last_error": state.get("last_error") or None,
            "last_error_at": state.get("last_error_at") or None,
            "delivered_records": int(state.get("delivered_records", 0)),
            "delivered_batches": int(state.get("delivered_batches", 0)),
        }
