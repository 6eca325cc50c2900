"""Redeeming a code on a device, exactly once, and the brake on guessing.

Redemption (:meth:`VoucherService.redeem`)
    One database write transaction (``BEGIN IMMEDIATE`` on SQLite, a row lock elsewhere)
    decides, and a conditional ``UPDATE … WHERE state = 'new'`` with its row count claims
    the first use: two phones with the same code at the same moment are serialized; the
    first wins, the second finds the voucher bound to a device that was bound seconds ago and
    is told "already in use" (or joins, while the package allows more devices).
    Re-entering a running code on a device that uses it re-authorizes it (after an idle
    timeout, or at a new address). On a *new* MAC — phones randomise it — the code moves
    there when one of its devices has been away (no traffic) for a while; a device that is
    still using it is never displaced.
    A second code on a device that runs a single-device voucher tops it up: the remaining
    time and data of the first are carried into the second (time adds; data adds; a package
    without a data quota makes the sum unlimited), and the first is marked ``merged``.
    Then the gateway is asked to authorize; if it refuses (a blocked device, …) the claim
    is undone, so a refused phone does not burn a voucher.

Kernel-free: the gateway is reached only through an object with ``call(op, **args)`` (a
:class:`hotspot.control.ControlClient`, or a fake in tests).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from hotspot.config import Config
from hotspot.errors import ErrorCode, HotspotError
from hotspot.mac import normalize_mac
from hotspot.model import (
    ClientSession,
    Package,
    RedeemAttempt,
    Voucher,
    VoucherBatch,
    VoucherDevice,
    VoucherState,
)
from hotspot.timeutil import iso, utcnow
from hotspot.units import MB
from hotspot.vouchers.codes import code_hash, normalize_code
from hotspot.vouchers.errors import VoucherError

log = logging.getLogger(__name__)


# A binding younger than this is never displaced (two phones racing for one code).
BIND_LEASE_SECONDS = 60
# A device whose session saw no traffic for this long (or that has none) is "away": its
# place on a voucher may go to a new MAC (the same phone after MAC randomisation).
AWAY_SECONDS = 180


class Gateway(Protocol):
    def call(self, op: str, **args: Any) -> Any: ...


class RateLimited(VoucherError):
    code = ErrorCode.RATE_LIMITED

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Redemption:
    voucher_id: int
    package: str  # its name
    title: str  # what the price list calls it
    tier: str
    expires_at: dt.datetime
    bytes_limit: int | None
    session: dict[str, Any]  # the gateway's description of the new session
    first_use: bool = False
    joined: bool = False  # a further device on a multi-device voucher
    moved_from: str | None = None  # the MAC it moved from
    topped_up: int | None = None  # the voucher whose remainder it absorbed


@dataclass
class _Plan:
    voucher_id: int
    package: str
    title: str
    tier: str
    expires_at: dt.datetime
    bytes_total: int | None
    first_use: bool = False
    bound: bool = False  # this call added the binding
    joined: bool = False
    moved_from: str | None = None
    moved_binding: tuple[dt.datetime, dt.datetime] | None = None
    kick_old: bool = False
    merged: int | None = None


class VoucherService:
    """Redeems codes for the portal. Thread-safe (state lives in the database)."""

    def __init__(
        self,
        engine: Engine,
        key: bytes,
        gateway: Gateway,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        attempts: int = 5,
        window_seconds: int = 60,
        cooldown_seconds: int = 300,
    ):
        self.engine = engine
        self.key = key
        self.gateway = gateway
        self.clock = clock
        self.attempts = attempts
        self.window = dt.timedelta(seconds=window_seconds)
        self.cooldown = dt.timedelta(seconds=cooldown_seconds)
        self.sqlite = engine.dialect.name == "sqlite"

    @classmethod
    def from_config(
        cls, config: Config, engine: Engine, key: bytes, gateway: Gateway, **kw: Any
    ) -> VoucherService:
        p = config.portal
        return cls(
            engine,
            key,
            gateway,
            attempts=p.voucher_attempts,
            window_seconds=p.voucher_window_seconds,
            cooldown_seconds=p.voucher_cooldown_seconds,
            **kw,
        )

    # -- the brake on guessing ----------------------------------------------------------------

    def retry_after(self, client: str) -> int:
        """Seconds this device must wait before its next attempt (0 = may try now)."""
        now = self.clock()
        with self.engine.connect() as conn:
            until = conn.execute(
                select(RedeemAttempt.blocked_until).where(RedeemAttempt.client == client)
            ).scalar()
        if until is None or until <= now:
            return 0
        return max(1, int((until - now).total_seconds() + 0.999))

    def _failed(self, client: str) -> None:
        """Count a wrong code; the ``attempts``-th within the window starts the cool-down."""
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            row = conn.execute(select(RedeemAttempt).where(RedeemAttempt.client == client)).first()
            window_start, failures, blocked = now, 0, None
            if row is not None:
                blocked = row.blocked_until
                if now - row.window_start < self.window:
                    window_start, failures = row.window_start, row.failures
            failures += 1
            if failures >= self.attempts:
                blocked, window_start, failures = now + self.cooldown, now, 0
            values = dict(window_start=window_start, failures=failures, blocked_until=blocked)
            if row is None:
                conn.execute(insert(RedeemAttempt).values(client=client, **values))
            else:
                conn.execute(
                    update(RedeemAttempt).where(RedeemAttempt.client == client).values(**values)
                )
            conn.commit()

    # -- the transaction ----------------------------------------------------------------------

    def _begin_write(self, conn: Connection) -> None:
        """Take the database's write lock first, so that everything read afterwards in this
        transaction stays true until commit (SQLite: one writer at a time)."""
        if self.sqlite:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    def redeem(
        self, code: str, *, ip: str, mac: str, live_session: dict[str, Any] | None = None
    ) -> Redemption:
        """Use ``code`` on the device ``mac`` at ``ip`` (both from the gateway, never from the
        request). ``live_session`` is the gateway's current description of the device's
        session, if the caller has it (its byte counts are fresher than the database's).
        Raises :class:`VoucherError` (a code the user gets a message for), or what the
        gateway raised (a blocked device, the gateway unreachable)."""
        mac = normalize_mac(mac)
        wait = self.retry_after(mac)
        if wait:
            raise RateLimited(f"too many wrong codes from {mac}; wait {wait} s", wait)
        bare = normalize_code(code)
        if bare is None:
            self._failed(mac)
            raise VoucherError("not a voucher code", code=ErrorCode.VOUCHER_UNKNOWN)
        digest = code_hash(self.key, bare)
        with self.engine.connect() as conn:
            found = conn.execute(select(Voucher.id).where(Voucher.code_hash == digest)).scalar()
        if found is None:
            self._failed(mac)
            raise VoucherError("no such voucher", code=ErrorCode.VOUCHER_UNKNOWN)
        plan = self._claim(found, mac, live_session)
        try:
            session = self.gateway.call(
                "authorize",
                ip=ip,
                tier=plan.tier,
                source="voucher",
                expires_at=iso(plan.expires_at),
                bytes_limit=self._bytes_limit(plan),
                voucher_id=plan.voucher_id,
            )
        except BaseException:
            self._undo(plan, mac)
            raise
        if plan.kick_old and plan.moved_from:
            try:
                self.gateway.call("deauthorize", mac=plan.moved_from, reason="replaced")
            except HotspotError as exc:  # it left by itself meanwhile: fine
                log.info(
                    "voucher %d: old device %s: %s", plan.voucher_id, plan.moved_from, exc.message
                )
        log.info(
            "voucher %d used by %s at %s%s%s%s",
            plan.voucher_id,
            mac,
            ip,
            " (first use)" if plan.first_use else "",
            f" (moved from {plan.moved_from})" if plan.moved_from else "",
            f" (topped up voucher {plan.merged})" if plan.merged else "",
        )
        return Redemption(
            plan.voucher_id,
            plan.package,
            plan.title,
            plan.tier,
            plan.expires_at,
            self._bytes_limit(plan),
            session,
            first_use=plan.first_use,
            joined=plan.joined,
            moved_from=plan.moved_from,
            topped_up=plan.merged,
        )

    def _used_bytes(
        self, conn: Connection, voucher_id: int, live: dict[str, Any] | None = None
    ) -> int:
        used = (
            conn.execute(
                select(
                    func.coalesce(func.sum(ClientSession.bytes_down + ClientSession.bytes_up), 0)
                ).where(ClientSession.voucher_id == voucher_id)
            ).scalar()
            or 0
        )
        if live and live.get("voucher_id") == voucher_id and live.get("id") is not None:
            stored = (
                conn.execute(
                    select(ClientSession.bytes_down + ClientSession.bytes_up).where(
                        ClientSession.id == live["id"]
                    )
                ).scalar()
                or 0
            )
            fresh = int(live.get("bytes_down") or 0) + int(live.get("bytes_up") or 0)
            used += max(0, fresh - stored)
        return int(used)

    def _bytes_limit(self, plan: _Plan) -> int | None:
        """The voucher's whole quota: the gateway counts it over all the voucher's sessions
        and devices together."""
        return plan.bytes_total

    def _claim(self, voucher_id: int, mac: str, live: dict[str, Any] | None) -> _Plan:
        now = self.clock()
        with self.engine.connect() as conn:
            self._begin_write(conn)
            try:
                plan = self._decide(conn, voucher_id, mac, live, now)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
            return plan

    def _decide(
        self,
        conn: Connection,
        voucher_id: int,
        mac: str,
        live: dict[str, Any] | None,
        now: dt.datetime,
        hops: int = 0,
    ) -> _Plan:
        v = conn.execute(
            select(
                Voucher.id,
                Voucher.state,
                Voucher.valid_until,
                Voucher.expires_at,
                Voucher.bytes_total,
                Voucher.merged_into,
                Voucher.void_reason,
                VoucherBatch.package_name,
                VoucherBatch.tier,
                VoucherBatch.hours,
                VoucherBatch.data_mb,
                VoucherBatch.devices,
                Package.title,
            )
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .join(Package, VoucherBatch.package_id == Package.id)
            .where(Voucher.id == voucher_id)
            .with_for_update()
        ).one()
        batch = v  # the batch's copy of the package terms comes along in the same row
        bindings = {
            b.mac: b
            for b in conn.execute(
                select(VoucherDevice).where(VoucherDevice.voucher_id == voucher_id)
            )
        }

        if v.state == VoucherState.VOID.value:
            if v.void_reason == "expired":  # unsold stock past its shelf life
                raise VoucherError(
                    "this voucher was not used in time", code=ErrorCode.VOUCHER_EXPIRED
                )
            raise VoucherError("this voucher was withdrawn", code=ErrorCode.VOUCHER_VOID)
        if v.state == VoucherState.MERGED.value:
            # Its remainder lives on in the voucher that absorbed it: re-entering the old code
            # on that device just reconnects it.
            if v.merged_into is not None and hops < 5:
                target = conn.execute(
                    select(VoucherDevice.mac).where(
                        VoucherDevice.voucher_id == v.merged_into, VoucherDevice.mac == mac
                    )
                ).scalar()
                if target is not None:
                    return self._decide(conn, v.merged_into, mac, live, now, hops + 1)
            raise VoucherError("this voucher was already used", code=ErrorCode.VOUCHER_USED)
        if v.state == VoucherState.NEW.value:
            if v.valid_until is not None and now >= v.valid_until:
                raise VoucherError(
                    "this voucher was not used in time", code=ErrorCode.VOUCHER_EXPIRED
                )
        else:  # active
            if v.expires_at is not None and now >= v.expires_at:
                raise VoucherError("this voucher's time is over", code=ErrorCode.VOUCHER_EXPIRED)
            if v.bytes_total is not None and self._used_bytes(conn, v.id, live) >= v.bytes_total:
                raise VoucherError(
                    "this voucher's data is used up", code=ErrorCode.VOUCHER_EXHAUSTED
                )

        plan = _Plan(
            voucher_id=v.id,
            package=batch.package_name,
            title=v.title,
            tier=batch.tier,
            expires_at=v.expires_at or now,
            bytes_total=v.bytes_total,
        )

        # Which device slot: already mine, a free one, or the one of a device that left.
        if mac in bindings:
            conn.execute(
                update(VoucherDevice)
                .where(VoucherDevice.voucher_id == v.id, VoucherDevice.mac == mac)
                .values(last_seen_at=now)
            )
        else:
            if len(bindings) >= batch.devices:
                away = self._away(conn, v.id, bindings, now)
                if not away:
                    raise VoucherError(
                        "this voucher is in use on another device", code=ErrorCode.VOUCHER_USED
                    )
                old = min(away, key=lambda b: b.last_seen_at)
                conn.execute(
                    delete(VoucherDevice).where(
                        VoucherDevice.voucher_id == v.id, VoucherDevice.mac == old.mac
                    )
                )
                plan.moved_from = old.mac
                plan.moved_binding = (old.bound_at, old.last_seen_at)
                plan.kick_old = (
                    conn.execute(
                        select(ClientSession.id).where(
                            ClientSession.mac == old.mac,
                            ClientSession.voucher_id == v.id,
                            ClientSession.ended_at.is_(None),
                        )
                    ).first()
                    is not None
                )
            else:
                plan.joined = bool(bindings)
            conn.execute(
                insert(VoucherDevice).values(
                    voucher_id=v.id, mac=mac, bound_at=now, last_seen_at=now
                )
            )
            plan.bound = True

        if v.state == VoucherState.NEW.value:
            expires = now + dt.timedelta(hours=batch.hours)
            total = batch.data_mb * MB if batch.data_mb else None
            merged = self._topup_source(conn, mac, v.id, now)
            if merged is not None:
                old_v, carry_bytes = merged, None
                expires += max(dt.timedelta(0), old_v.expires_at - now)
                if old_v.bytes_total is not None:
                    carry_bytes = max(0, old_v.bytes_total - self._used_bytes(conn, old_v.id, live))
                total = None if total is None or carry_bytes is None else total + carry_bytes
                res = conn.execute(
                    update(Voucher)
                    .where(Voucher.id == old_v.id, Voucher.state == VoucherState.ACTIVE.value)
                    .values(state=VoucherState.MERGED.value, merged_into=v.id)
                )
                if res.rowcount == 1:
                    plan.merged = old_v.id
            res = conn.execute(
                update(Voucher)
                .where(Voucher.id == v.id, Voucher.state == VoucherState.NEW.value)
                .values(
                    state=VoucherState.ACTIVE.value,
                    first_used_at=now,
                    expires_at=expires,
                    bytes_total=total,
                    topup_of=plan.merged,
                )
            )
            if res.rowcount != 1:  # pragma: no cover - impossible under the write lock
                raise VoucherError("this voucher was already used", code=ErrorCode.VOUCHER_USED)
            plan.first_use = True
            plan.expires_at, plan.bytes_total = expires, total
        return plan

    def _away(
        self, conn: Connection, voucher_id: int, bindings: dict[str, Any], now: dt.datetime
    ) -> list[Any]:
        """Bindings whose device may give up its place: bound a while ago, and not using
        the voucher now (no running session on it, or one without traffic lately)."""
        out = []
        for b in bindings.values():
            if now - b.bound_at < dt.timedelta(seconds=BIND_LEASE_SECONDS):
                continue
            sess = conn.execute(
                select(ClientSession.last_activity_at).where(
                    ClientSession.mac == b.mac,
                    ClientSession.voucher_id == voucher_id,
                    ClientSession.ended_at.is_(None),
                )
            ).first()
            if sess is not None and now - sess.last_activity_at < dt.timedelta(
                seconds=AWAY_SECONDS
            ):
                continue
            out.append(b)
        return out

    def _topup_source(
        self, conn: Connection, mac: str, new_id: int, now: dt.datetime
    ) -> Any | None:
        """The running single-device voucher of this device, if it has one to top up."""
        sess = conn.execute(
            select(ClientSession.voucher_id).where(
                ClientSession.mac == mac,
                ClientSession.ended_at.is_(None),
                ClientSession.voucher_id.is_not(None),
            )
        ).first()
        if sess is None or sess.voucher_id == new_id:
            return None
        row = conn.execute(
            select(Voucher.id, Voucher.expires_at, Voucher.bytes_total, VoucherBatch.devices)
            .join(VoucherBatch, Voucher.batch_id == VoucherBatch.id)
            .where(Voucher.id == sess.voucher_id, Voucher.state == VoucherState.ACTIVE.value)
        ).first()
        if row is None or row.devices != 1 or row.expires_at is None or row.expires_at <= now:
            return None
        return row

    def _undo(self, plan: _Plan, mac: str) -> None:
        """The gateway refused: give the voucher back as it was."""
        try:
            with self.engine.connect() as conn:
                self._begin_write(conn)
                if plan.bound:
                    conn.execute(
                        delete(VoucherDevice).where(
                            VoucherDevice.voucher_id == plan.voucher_id, VoucherDevice.mac == mac
                        )
                    )
                if plan.moved_from and plan.moved_binding:
                    conn.execute(
                        insert(VoucherDevice).values(
                            voucher_id=plan.voucher_id,
                            mac=plan.moved_from,
                            bound_at=plan.moved_binding[0],
                            last_seen_at=plan.moved_binding[1],
                        )
                    )
                if plan.first_use:
                    conn.execute(
                        update(Voucher)
                        .where(
                            Voucher.id == plan.voucher_id,
                            Voucher.state == VoucherState.ACTIVE.value,
                        )
                        .values(
                            state=VoucherState.NEW.value,
                            first_used_at=None,
                            expires_at=None,
                            bytes_total=None,
                            topup_of=None,
                        )
                    )
                if plan.merged:
                    conn.execute(
                        update(Voucher)
                        .where(
                            and_(Voucher.id == plan.merged, Voucher.merged_into == plan.voucher_id)
                        )
                        .values(state=VoucherState.ACTIVE.value, merged_into=None)
                    )
                conn.commit()
        except Exception:  # pragma: no cover - logged, the original error matters more
            log.exception("voucher %d: could not undo the claim", plan.voucher_id)
