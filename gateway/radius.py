"""RADIUS in the gateway (issue #16): sessions opened on a server's grant, their accounting,
and the server's CoA and Disconnect-Requests. docs/radius.md says what goes over the wire.

* **Accounting.** Start (when the portal's ``radius-authorize`` opens the session),
  Interim-Update (every ``interim_seconds``, from the tick) and Stop (from the session's end,
  whatever ended it) are written to ``radius_accounting`` *in the engine's transaction*: a
  record exists exactly when the change it reports was committed. One thread sends the queue
  oldest first, one record at a time, deleting each when the server acknowledges it; while
  no server answers it backs off (up to a minute) and keeps everything, in order, across
  restarts — except Interim-Updates made stale by a newer record of the same session.
  Acct-Delay-Time says how late each record is.
* **Dynamic authorization (RFC 5176).** One thread listens on UDP ``coa_port``. A datagram
  is looked at only if it comes from a configured server's address; it must carry a valid
  Request Authenticator and Message-Authenticator (the shared secret) and an Event-Timestamp
  within ``coa_window_seconds``; a copy of one already answered gets the same answer again
  and changes nothing. Anything else is dropped without a reply.

Neither thread holds the engine's lock while it waits on the network: the control socket and
the tick never wait for a RADIUS server.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import ColumnElement, delete, event, select, update
from sqlalchemy import Engine as DbEngine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from gateway.engine import SessionEngine
from hotspot.config import Config
from hotspot.errors import HotspotError
from hotspot.model import ClientSession, EndReason, Source
from hotspot.model_radius import RadiusAccounting, RadiusSession
from hotspot.protocol import RadiusAuthorizeRequest, SessionInfo
from hotspot.pseudonym import pseudonym
from hotspot.radius.attributes import (
    AccountingFigures,
    DataLimitAttribute,
    StatusType,
    accounting_attributes,
    calling_station_id,
    grant_from_attributes,
    terminate_cause,
)
from hotspot.radius.packets import (
    DISCONNECT_REQUEST,
    MAX_PACKET,
    DynAuthRefused,
    DynAuthRequest,
    Nas,
    ReplayGuard,
    accounting_request,
    dynauth_reply,
    parse_dynauth,
)
from hotspot.radius.transport import NoAnswer, Server, exchange
from hotspot.timeutil import utcnow

log = logging.getLogger(__name__)

BACKOFF_MAX = 60.0  # seconds between tries while no server answers
IDLE_POLL = 2.0  # how often an empty queue is looked at again (a new record also wakes it)
BATCH = 200  # records sent before the thread looks at its stop flag again

# RFC 5176 section 3.5
ERROR_MISSING_ATTRIBUTE = 402
ERROR_INVALID_REQUEST = 404
ERROR_SESSION_NOT_FOUND = 503
ERROR_RESOURCES_UNAVAILABLE = 506


def _epoch(when: dt.datetime) -> int:
    return int(when.replace(tzinfo=dt.UTC).timestamp())


class RadiusService:
    def __init__(
        self,
        config: Config,
        db: DbEngine,
        engine: SessionEngine,
        secret: bytes,
        pseudonym_key: bytes | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.config = config
        self.radius = config.radius
        self.db = db
        self.engine = engine
        self.secret = secret
        self.pseudonym_key = pseudonym_key
        self.clock = clock
        self.nas = Nas(self.radius.nas_identifier, self.radius.nas_ip_address)
        self.acct_servers = [Server(s.host, self.radius.acct_port) for s in self.radius.servers]
        self.server_addresses = {s.host for s in self.radius.servers}
        self.guard = ReplayGuard(self.radius.coa_window_seconds)
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.sent = 0  # records acknowledged since start (status, tests)
        self.last_error: str | None = None
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None
        engine.end_hooks.append(self._on_end)
        engine.tick_hooks.append(self._on_tick)

    # -- sessions --------------------------------------------------------------------------

    def calling_station(self, mac: str) -> str:
        if self.radius.calling_station_id == "pseudonym" and self.pseudonym_key is not None:
            return pseudonym(self.pseudonym_key, mac)
        return calling_station_id(mac)

    def authorize(self, req: RadiusAuthorizeRequest) -> SessionInfo:
        interim = req.interim_seconds or self.radius.interim_seconds
        classes = req.classes or ""

        def start(db: Session, sess: ClientSession, now: dt.datetime) -> None:
            rs = RadiusSession(
                session_id=sess.id,
                acct_session_id=secrets.token_hex(8).upper(),
                username=req.username,
                calling_station=self.calling_station(sess.mac),
                classes=classes,
                interim_seconds=interim,
                next_interim_at=now + dt.timedelta(seconds=interim),
                offline=bool(req.offline),
            )
            db.add(rs)
            self._enqueue(db, self._figures(rs, sess, StatusType.START, now), now)

        info = self.engine.authorize(
            ip=req.ip,
            tier=req.tier,
            source=Source.RADIUS,
            expires_at=req.expires_at,
            bytes_limit=req.bytes_limit,
            down_kbps=req.down_kbps,
            up_kbps=req.up_kbps,
            idle_minutes=req.idle_minutes,
            on_start=start,
        )
        self.wake.set()
        return info

    def _figures(
        self,
        rs: RadiusSession,
        sess: ClientSession,
        status: StatusType,
        now: dt.datetime,
        reason: EndReason | None = None,
    ) -> AccountingFigures:
        down, up = self.engine.session_bytes(sess) if status is not StatusType.START else (0, 0)
        if status is StatusType.STOP:  # _end has just added the last unflushed bytes
            down, up = sess.bytes_down, sess.bytes_up
        return AccountingFigures(
            status=status,
            acct_session_id=rs.acct_session_id,
            username=rs.username,
            framed_ip=sess.ip,
            calling_station=rs.calling_station,
            session_seconds=int((now - sess.started_at).total_seconds()),
            bytes_from_client=up,
            bytes_to_client=down,
            cause=terminate_cause(reason) if status is StatusType.STOP else None,
            classes=tuple(bytes.fromhex(c) for c in rs.classes.split(",") if c),
            interim_seconds=rs.interim_seconds,
        )

    def _enqueue(self, db: Session, figures: AccountingFigures, now: dt.datetime) -> None:
        if figures.status is not StatusType.START:
            # An Interim-Update still waiting is out of date once a newer one (or the Stop)
            # is written: while the uplink is down for days the queue holds at most one per
            # session, not one every interval.
            db.execute(
                delete(RadiusAccounting).where(
                    RadiusAccounting.acct_session_id == figures.acct_session_id,
                    RadiusAccounting.status == int(StatusType.INTERIM),
                )
            )
        db.add(
            RadiusAccounting(
                created_at=now,
                acct_session_id=figures.acct_session_id,
                status=int(figures.status),
                attributes=json.dumps(accounting_attributes(figures)),
                attempts=0,
            )
        )

    def _wake_after_commit(self, db: Session) -> None:
        """Wake the sender once ``db``'s transaction has committed: woken before, it finds
        the queue as it was and the new record waits for the next look (``IDLE_POLL``)."""
        if not event.contains(db, "after_commit", self._wake_sender):
            event.listen(db, "after_commit", self._wake_sender)

    def _wake_sender(self, _db: Session) -> None:
        self.wake.set()

    def _on_end(
        self, db: Session, sess: ClientSession, reason: EndReason, now: dt.datetime
    ) -> None:
        if sess.source is not Source.RADIUS:
            return
        rs = db.get(RadiusSession, sess.id)
        if rs is None:
            return
        rs.next_interim_at = None
        self._enqueue(db, self._figures(rs, sess, StatusType.STOP, now, reason), now)
        self._wake_after_commit(db)

    def _on_tick(self, db: Session, active: list[ClientSession], now: dt.datetime) -> None:
        mine = [s for s in active if s.source is Source.RADIUS]
        if not mine:
            return
        due = db.scalars(
            select(RadiusSession).where(
                RadiusSession.session_id.in_([s.id for s in mine]),
                RadiusSession.next_interim_at <= now,
            )
        ).all()
        if not due:
            return
        by_id = {s.id: s for s in mine}
        for rs in due:
            sess = by_id[rs.session_id]
            self._enqueue(db, self._figures(rs, sess, StatusType.INTERIM, now), now)
            rs.next_interim_at = now + dt.timedelta(seconds=rs.interim_seconds)
        self._wake_after_commit(db)

    # -- the accounting queue -----------------------------------------------------------------

    def send_queue(self) -> bool:
        """Send queued records oldest first until the queue is empty (True) or no server
        answers (False: the record stays first in line)."""
        for _ in range(BATCH):
            if self.stopping.is_set():
                return True
            with Session(self.db) as db:
                row = db.scalars(
                    select(RadiusAccounting).order_by(RadiusAccounting.id).limit(1)
                ).first()
                if row is None:
                    return True
                row_id, created = row.id, row.created_at
                sent = _identity(row)
                attrs = json.loads(row.attributes)
            delay = int((self.clock() - created).total_seconds())
            request = accounting_request(self.secret, self.nas, attrs, delay, _epoch(created))
            try:
                exchange(
                    request,
                    self.acct_servers,
                    timeout=self.radius.timeout_seconds,
                    attempts=self.radius.attempts,
                )
            except NoAnswer as exc:
                self.last_error = f"no answer from {exc}"
                with Session(self.db) as db, db.begin():
                    db.execute(
                        update(RadiusAccounting)
                        .where(RadiusAccounting.id == row_id, *_still(sent))
                        .values(
                            attempts=RadiusAccounting.attempts + 1,
                            last_error=self.last_error[:200],
                        )
                    )
                return False
            with Session(self.db) as db, db.begin():
                # The row at that id may no longer be the one sent: a session that ended
                # while its Interim-Update was on the way replaced it by its Stop, and SQLite
                # gives a new row the id a deleted one had. So the test and the delete are
                # one statement: a test by a read first, then a delete by id, deleted the
                # Stop when the ending's transaction committed between the two (the driver
                # runs a read outside any transaction; the delete waited for the lock).
                db.execute(
                    delete(RadiusAccounting).where(RadiusAccounting.id == row_id, *_still(sent))
                )
            self.sent += 1
            self.last_error = None
        return True

    def queued(self) -> int:
        with Session(self.db) as db:
            return len(db.scalars(select(RadiusAccounting.id)).all())

    def _sender(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                drained = self.send_queue()
            except SQLAlchemyError as exc:
                log.error("radius accounting: database: %s", str(exc).splitlines()[0])
                drained = False
            if drained:
                backoff = 1.0
                wait = IDLE_POLL
            else:
                log.warning("radius accounting: %s; retrying in %.0f s", self.last_error, backoff)
                wait, backoff = backoff, min(BACKOFF_MAX, backoff * 2)
            self.wake.wait(wait)
            self.wake.clear()

    # -- dynamic authorization ----------------------------------------------------------------

    def handle_datagram(self, data: bytes, source: str, now: float | None = None) -> bytes | None:
        """The reply to one datagram on the CoA port, or None to stay silent."""
        if source not in self.server_addresses:
            log.warning("radius: ignored a datagram on the CoA port from %s (not a server)", source)
            return None
        if len(data) >= 20:
            again = self.guard.answered(source, data[4:20])
            if again is not None:
                log.info("radius: a copy of a request already answered, from %s", source)
                return again
        try:
            request = parse_dynauth(
                data,
                self.secret,
                now=time.time() if now is None else now,
                window_seconds=self.radius.coa_window_seconds,
                require_message_authenticator=self.radius.require_message_authenticator,
            )
        except DynAuthRefused as exc:
            log.warning("radius: dropped a CoA/Disconnect-Request from %s: %s", source, exc)
            return None
        reply = self._act(request)
        self.guard.remember(source, request.authenticator, reply)
        return reply

    def _targets(self, attrs: dict[str, list[Any]]) -> list[ClientSession]:
        """The running RADIUS sessions a request names (RFC 5176 section 3: Acct-Session-Id,
        else Framed-IP-Address, Calling-Station-Id or User-Name — all that are given must
        match)."""
        with Session(self.db) as db:
            q = (
                select(ClientSession)
                .join(RadiusSession, RadiusSession.session_id == ClientSession.id)
                .where(ClientSession.ended_at.is_(None))
            )
            named = False
            for attr, column in (
                ("Acct-Session-Id", RadiusSession.acct_session_id),
                ("User-Name", RadiusSession.username),
                ("Calling-Station-Id", RadiusSession.calling_station),
                ("Framed-IP-Address", ClientSession.ip),
            ):
                if attrs.get(attr):
                    q = q.where(column == str(attrs[attr][0]))
                    named = True
            if not named:
                return []
            found = list(db.scalars(q))
            db.expunge_all()
            return found

    def _act(self, request: DynAuthRequest) -> bytes:
        attrs = request.attributes
        if not any(
            attrs.get(a)
            for a in ("Acct-Session-Id", "User-Name", "Calling-Station-Id", "Framed-IP-Address")
        ):
            return dynauth_reply(request, ack=False, error_cause=ERROR_MISSING_ATTRIBUTE)
        targets = self._targets(attrs)
        if not targets:
            return dynauth_reply(request, ack=False, error_cause=ERROR_SESSION_NOT_FOUND)
        try:
            if request.code == DISCONNECT_REQUEST:
                for sess in targets:
                    self.engine.deauthorize(mac=sess.mac, reason=EndReason.KICK)
                    log.info("radius: Disconnect-Request ended session %d", sess.id)
                return dynauth_reply(request, ack=True)
            grant = grant_from_attributes(attrs, DataLimitAttribute(self.radius.data_limit))
            if grant.problems:
                return dynauth_reply(request, ack=False, error_cause=ERROR_INVALID_REQUEST)
            if not (grant.down_kbps or grant.up_kbps or grant.session_seconds or grant.bytes_limit):
                return dynauth_reply(request, ack=False, error_cause=ERROR_MISSING_ATTRIBUTE)
            for sess in targets:
                self.engine.change_limits(
                    session_id=sess.id,
                    down_kbps=grant.down_kbps,
                    up_kbps=grant.up_kbps,
                    expires_at=(
                        sess.started_at + dt.timedelta(seconds=grant.session_seconds)
                        if grant.session_seconds
                        else None
                    ),
                    bytes_limit=grant.bytes_limit,
                )
                log.info("radius: CoA-Request changed session %d", sess.id)
            return dynauth_reply(request, ack=True)
        except (HotspotError, SQLAlchemyError) as exc:
            log.error("radius: acting on a %d request failed: %s", request.code, exc)
            return dynauth_reply(request, ack=False, error_cause=ERROR_RESOURCES_UNAVAILABLE)

    def _listener(self, sock: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                data, (source, port) = sock.recvfrom(MAX_PACKET + 1)
            except TimeoutError:
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                continue
            if len(data) > MAX_PACKET:
                log.warning("radius: dropped an oversized datagram from %s", source)
                continue
            try:
                reply = self.handle_datagram(data, source)
            except Exception:  # a bug must not stop the listener: log it whole, go on
                log.exception("radius: handling a datagram from %s failed", source)
                continue
            if reply is not None:
                try:
                    sock.sendto(reply, (source, port))
                except OSError as exc:
                    log.warning("radius: cannot answer %s: %s", source, exc)

    # -- the threads ---------------------------------------------------------------------------

    def start(self) -> None:
        threads = [threading.Thread(target=self._sender, name="radius-acct", daemon=True)]
        if self.radius.coa_port:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.radius.coa_listen or "0.0.0.0", self.radius.coa_port))
            sock.settimeout(0.5)
            self._sock = sock
            threads.append(
                threading.Thread(
                    target=self._listener, args=(sock,), name="radius-coa", daemon=True
                )
            )
            log.info("radius: listening for CoA/Disconnect on UDP %d", self.radius.coa_port)
        for t in threads:
            t.start()
        self._threads = threads

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        for t in self._threads:
            t.join(timeout=10)
        if self._sock is not None:
            self._sock.close()


def _identity(row: RadiusAccounting) -> tuple[str, int, dt.datetime, str]:
    """What tells a queued record from another that later took its id."""
    return (row.acct_session_id, row.status, row.created_at, row.attributes)


def _still(sent: tuple[str, int, dt.datetime, str]) -> tuple[ColumnElement[bool], ...]:
    """The conditions under which the row at a record's id is still that record."""
    session_id, status, created, attributes = sent
    return (
        RadiusAccounting.acct_session_id == session_id,
        RadiusAccounting.status == status,
        RadiusAccounting.created_at == created,
        RadiusAccounting.attributes == attributes,
    )
