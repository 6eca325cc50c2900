"""Operator accounts of the console: passwords (argon2id), the login brake, login sessions.

There is no default account (Mikhmon's ``mikhmon/1234`` is what not to do): the first admin
is made on the gateway with ``hotspot operators add NAME --role admin``; admins make the
rest in the console.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotspot.audit import Actor, record, write
from hotspot.db import is_storage_full
from hotspot.errors import ErrorCode, HotspotError, NotFound, UsageError
from hotspot.model_operator import ROLES, LoginAttempt, Operator, OperatorSession
from hotspot.timeutil import utcnow

if TYPE_CHECKING:
    from argon2 import PasswordHasher

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9._-]{1,31}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 128
# Passwords nobody may choose: defaults of other village hotspot tools, and the obvious.
WEAK = {
    "12345678",
    "123456789",
    "1234567890",
    "password",
    "password1",
    "qwertyui",
    "admin123",
    "admin1234",
    "kasir123",
    "kasir1234",
    "mikhmon1234",
    "11111111",
    "00000000",
    "87654321",
    "bumdes123",
    "bumdes1234",
    "hotspot123",
    "wifidesa",
    "passw0rd",
    "iloveyou",
    "abcdefgh",
    "abcd1234",
    "rahasia123",
    "indonesia",
}

_hasher: PasswordHasher | None = None


def hasher() -> PasswordHasher:
    """argon2id with OWASP's small-memory profile (19 MiB, 2 passes): a login costs a Pi
    about 50 ms and 19 MiB, and a stolen hash costs a guesser the same per try."""
    global _hasher
    if _hasher is None:
        from argon2 import PasswordHasher, Type

        _hasher = PasswordHasher(
            time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID
        )
    return _hasher


class PasswordError(UsageError):
    code = ErrorCode.BAD_PASSWORD


class LoginRefused(HotspotError):
    """``bad-login`` (wrong name or password: one message for both) or ``locked``
    (too many attempts: ``retry_after`` seconds)."""

    code = ErrorCode.BAD_LOGIN

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_LOGIN, retry_after: int = 0):
        super().__init__(message, code=code)
        self.retry_after = retry_after


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name.strip().lower()):
        raise UsageError("a name is 2 to 32 of a-z, 0-9, '.', '_', '-', starting with a letter")
    return name.strip().lower()


def check_password(password: str, name: str = "") -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise PasswordError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise PasswordError(f"a password has at most {MAX_PASSWORD} characters")
    low = password.lower()
    if low in WEAK or (name and name.lower() in low) or len(set(password)) < 4:
        raise PasswordError("this password is too easy to guess")
    return password


def hash_password(password: str) -> str:
    return hasher().hash(password)


# A hash to check wrong names against, so that a wrong name costs as long as a wrong password.
_DUMMY: list[str] = []


def _verify(stored: str | None, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    if stored is None:
        if not _DUMMY:
            _DUMMY.append(hash_password(secrets.token_hex(16)))
        stored = _DUMMY[0]
        try:
            hasher().verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            pass
        return False
    try:
        return bool(hasher().verify(stored, password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _public(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "full_name": row.full_name,
        "role": row.role,
        "active": bool(row.active),
        "created_at": row.created_at,
        "last_login_at": row.last_login_at,
    }


def add(
    engine: Engine,
    name: str,
    role: str,
    password: str,
    *,
    actor: Actor,
    full_name: str = "",
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    name = check_name(name)
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    check_password(password, name)
    full_name = (full_name or "").strip()[:64]
    digest = hash_password(password)
    now = clock()
    with write(engine) as conn:
        if conn.execute(select(Operator.id).where(Operator.name == name)).first() is not None:
            raise UsageError(f"an operator named {name!r} exists")
        res = conn.execute(
            insert(Operator).values(
                name=name,
                full_name=full_name or None,
                role=role,
                password_hash=digest,
                active=True,
                session_version=1,
                created_at=now,
                updated_at=now,
            )
        )
        oid = int(res.inserted_primary_key[0])  # type: ignore[index]  # one-row insert: a Row
        record(
            conn,
            actor,
            "operator.create",
            f"operator:{oid}",
            after={"name": name, "role": role, "full_name": full_name or None},
            at=now,
        )
    return {"id": oid, "name": name, "role": role, "full_name": full_name or None, "active": True}


def get(engine: Engine, operator_id: int | None = None, name: str | None = None) -> Any:
    q = select(Operator)
    q = (
        q.where(Operator.id == operator_id)
        if operator_id is not None
        else q.where(Operator.name == (name or "").strip().lower())
    )
    with engine.connect() as conn:
        row = conn.execute(q).first()
    if row is None:
        raise NotFound(f"no operator {name or operator_id!r}")
    return row


def listing(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [_public(r) for r in conn.execute(select(Operator).order_by(Operator.name))]


def count_admins(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(
            conn.execute(
                select(Operator.id).where(Operator.role == "admin", Operator.active.is_(True))
            ).all()
        )


def change(
    engine: Engine,
    operator_id: int,
    *,
    actor: Actor,
    role: str | None = None,
    active: bool | None = None,
    full_name: str | None = None,
    password: str | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
) -> dict[str, Any]:
    """Change an account; a new password, role or status ends its login sessions. The last
    active admin cannot be demoted or disabled."""
    now = clock()
    if role is not None and role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    with write(engine) as conn:
        row = conn.execute(select(Operator).where(Operator.id == operator_id)).first()
        if row is None:
            raise NotFound(f"no operator {operator_id}")
        if password is not None:
            check_password(password, row.name)
        values: dict[str, Any] = {}
        if role is not None and role != row.role:
            values["role"] = role
        if active is not None and bool(active) != bool(row.active):
            values["active"] = bool(active)
        if full_name is not None and (full_name.strip()[:64] or None) != row.full_name:
            values["full_name"] = full_name.strip()[:64] or None
        losing_admin = (
            row.role == "admin"
            and row.active
            and (values.get("role", "admin") != "admin" or values.get("active", True) is False)
        )
        if losing_admin:
            others = conn.execute(
                select(Operator.id).where(
                    Operator.role == "admin", Operator.active.is_(True), Operator.id != operator_id
                )
            ).first()
            if others is None:
                raise UsageError("this is the last active admin: make another admin first")
        if password is not None:
            values["password_hash"] = hash_password(password)
        if not values:
            return _public(row)
        if {"role", "active", "password_hash"} & set(values):
            values["session_version"] = row.session_version + 1
            conn.execute(delete(OperatorSession).where(OperatorSession.operator_id == operator_id))
        conn.execute(
            update(Operator).where(Operator.id == operator_id).values(**values, updated_at=now)
        )
        shown = {k: v for k, v in values.items() if k not in ("password_hash", "session_version")}
        before = {k: getattr(row, k) for k in shown}
        if "password_hash" in values:
            shown["password"] = "changed"
            before["password"] = None
        record(
            conn,
            actor,
            "operator.update",
            f"operator:{operator_id}",
            before=before,
            after=shown,
            at=now,
        )
        row = conn.execute(select(Operator).where(Operator.id == operator_id)).first()
        return _public(row)


# -- the login brake ----------------------------------------------------------------------
#
# Wrong passwords slow down the one who types them, not the account: a lock per account let
# any phone on the open WiFi lock ``admin`` out with five guesses (#10.13). Three counters,
# rows of ``login_attempt``:
#   pair:NAME|ADDR  wrong passwords for one account from one address: after ``free_attempts``
#                   each further one doubles a wait (15 s, 30 s, … up to ``max_delay``);
#   ip:ADDR         wrong passwords from one address for any name: over ``ip_attempts`` in the
#                   window that address waits ``max_delay``;
#   all             wrong passwords from untrusted places gateway-wide: over ``ceiling`` in the
#                   window, untrusted logins wait until the window ends (guessing from many
#                   addresses is capped, whatever the addresses).
# A trusted login (a device that logged in to this account before, or the management network)
# is held back only by its own pair counter: the kiosk still gets in during an attack.


@dataclass(frozen=True)
class Brake:
    free_attempts: int = 5
    ip_attempts: int = 20
    window: dt.timedelta = dt.timedelta(minutes=15)
    max_delay: dt.timedelta = dt.timedelta(minutes=15)
    ceiling: int = 100
    first_delay: dt.timedelta = dt.timedelta(seconds=15)

    @classmethod
    def from_config(cls, cfg: Any) -> Brake:
        o = cfg.operator
        return cls(
            free_attempts=o.login_attempts,
            ip_attempts=o.login_ip_attempts,
            window=dt.timedelta(seconds=o.login_window_seconds),
            max_delay=dt.timedelta(seconds=o.login_lockout_seconds),
            ceiling=o.login_ceiling,
        )

    def delay(self, failures: int) -> dt.timedelta:
        """The wait after ``failures`` wrong passwords in a row for one account and address."""
        over = failures - self.free_attempts
        if over < 0:
            return dt.timedelta(0)
        doubled: dt.timedelta = self.first_delay * (1 << min(over, 16))
        return min(self.max_delay, doubled)


GLOBAL_KEY = "all"


def _pair_key(name: str, ip: str) -> str:
    return f"pair:{name[:28]}|{ip[:45]}"


def _keys(name: str, ip: str, trusted: bool) -> list[str]:
    pair = _pair_key(name, ip)
    return [pair] if trusted else [pair, f"ip:{ip[:45]}", GLOBAL_KEY]


def locked_for(engine: Engine, name: str, ip: str, now: dt.datetime, trusted: bool = False) -> int:
    """Seconds until this name from this address may try again (0 = now)."""
    with engine.connect() as conn:
        untils = [
            u
            for (u,) in conn.execute(
                select(LoginAttempt.blocked_until).where(
                    LoginAttempt.key.in_(_keys(name, ip, trusted))
                )
            )
            if u is not None and u > now
        ]
    if not untils:
        return 0
    return max(1, int((max(untils) - now).total_seconds() + 0.999))


def _failed(
    engine: Engine, name: str, ip: str, brake: Brake, now: dt.datetime, trusted: bool
) -> None:
    with write(engine) as conn:
        for key in _keys(name, ip, trusted):
            row = conn.execute(select(LoginAttempt).where(LoginAttempt.key == key)).first()
            start, failures = now, 0
            if row is not None and now - row.window_start < brake.window:
                start, failures = row.window_start, row.failures
            failures += 1
            until: dt.datetime | None = None
            if key.startswith("pair:"):
                # A sliding window: the wait keeps doubling while the guessing goes on.
                start = now
                wait = brake.delay(failures)
                until = now + wait if wait else None
            elif key.startswith("ip:") and failures >= brake.ip_attempts:
                until, start, failures = now + brake.max_delay, now, 0
            elif key == GLOBAL_KEY and failures >= brake.ceiling:
                until = start + brake.window
            values = dict(window_start=start, failures=failures, blocked_until=until)
            if row is None:
                conn.execute(insert(LoginAttempt).values(key=key, **values))
            else:
                conn.execute(update(LoginAttempt).where(LoginAttempt.key == key).values(**values))


def unlock(engine: Engine, name: str) -> None:
    """Lift the waits of an account (from every address) and the gateway-wide ceiling."""
    name = name.strip().lower()
    with write(engine) as conn:
        conn.execute(
            delete(LoginAttempt).where(
                LoginAttempt.key.startswith(f"pair:{name[:28]}|", autoescape=True)
                | LoginAttempt.key.in_([f"op:{name}", GLOBAL_KEY])
            )
        )


def authenticate(
    engine: Engine,
    name: str,
    password: str,
    ip: str,
    *,
    brake: Brake,
    trusted: bool = False,
    clock: Callable[[], dt.datetime] = utcnow,
) -> Any:
    """The operator row for a right name and password from ``ip``; raises
    :class:`LoginRefused`. While braked, the password is not even checked. ``trusted``: the
    caller knows this device or network (see the brake above)."""
    now = clock()
    name = (name or "").strip().lower()[:64]
    password = (password or "")[: MAX_PASSWORD + 1]
    wait = locked_for(engine, name, ip, now, trusted)
    if wait:
        raise LoginRefused("too many attempts", code=ErrorCode.LOCKED, retry_after=wait)
    with engine.connect() as conn:
        row = conn.execute(select(Operator).where(Operator.name == name)).first()
    ok = _verify(row.password_hash if row is not None else None, password)
    if not ok or row is None or not row.active:
        _failed(engine, name, ip, brake, now, trusted)
        wait = locked_for(engine, name, ip, now, trusted)
        if wait:
            raise LoginRefused("too many attempts", code=ErrorCode.LOCKED, retry_after=wait)
        raise LoginRefused("wrong name or password")
    with write(engine) as conn:
        conn.execute(delete(LoginAttempt).where(LoginAttempt.key == _pair_key(name, ip)))
        values: dict[str, Any] = {"last_login_at": now}
        if hasher().check_needs_rehash(row.password_hash):
            values["password_hash"] = hash_password(password)
        conn.execute(update(Operator).where(Operator.id == row.id).values(**values))
        record(
            conn,
            Actor(row.name, row.id, row.role, ip),
            "operator.login",
            f"operator:{row.id}",
            at=now,
        )
    return row


# -- login sessions -------------------------------------------------------------------------


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(
    engine: Engine, operator: Any, ip: str, hours: int, clock: Callable[[], dt.datetime] = utcnow
) -> str:
    token = secrets.token_urlsafe(32)
    now = clock()
    with write(engine) as conn:
        # Old, ended sessions go now and then (cheap: indexed by operator).
        conn.execute(delete(OperatorSession).where(OperatorSession.expires_at < now))
        conn.execute(
            insert(OperatorSession).values(
                token_hash=_token_hash(token),
                operator_id=operator.id,
                version=operator.session_version,
                created_at=now,
                last_seen_at=now,
                expires_at=now + dt.timedelta(hours=hours),
                ip=ip[:45],
            )
        )
    return token


def session_operator(
    engine: Engine, token: str | None, idle: dt.timedelta, clock: Callable[[], dt.datetime] = utcnow
) -> Any | None:
    """The operator of a live login session, or None (no such session, expired, idle too
    long, made before a password or role change, or the account disabled)."""
    if not token or len(token) > 100:
        return None
    now = clock()
    th = _token_hash(token)
    with Session(engine, expire_on_commit=False) as db:
        row = db.execute(
            select(OperatorSession, Operator)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(OperatorSession.token_hash == th)
        ).first()
    if row is None:
        return None
    s, op = row.OperatorSession, row.Operator
    if (
        now >= s.expires_at
        or now - s.last_seen_at > idle
        or s.version != op.session_version
        or not op.active
    ):
        close_session(engine, token)
        return None
    if now - s.last_seen_at > dt.timedelta(minutes=1):  # few writes: once a minute at most
        try:
            with engine.begin() as conn:
                conn.execute(
                    update(OperatorSession)
                    .where(OperatorSession.token_hash == th)
                    .values(last_seen_at=now)
                )
        except OperationalError as exc:
            if not is_storage_full(exc):
                raise
            # The console must still open (to show that the storage is full); the idle clock
            # is written again on a later page, once there is room.
            log.warning("console: idle clock of a login not written: storage full")
    return op


def close_session(engine: Engine, token: str | None) -> None:
    if not token:
        return
    with engine.begin() as conn:
        conn.execute(
            delete(OperatorSession).where(OperatorSession.token_hash == _token_hash(token))
        )
