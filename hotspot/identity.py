"""Device identities: who a device is across MAC changes.

The portal gives every browser a long-lived, signed device cookie whose value is a random
device id (never the MAC). When a form comes back (accept the terms, redeem a voucher), the
portal links the device's current MAC — which the gateway read from the kernel — to an
identity:

1. a MAC already linked keeps its identity for good (its usage cannot be moved away to make
   another identity's allowance fresh; a reinstalled browser on the same MAC gets its old
   identity back);
2. a new MAC with a known device cookie joins that identity (the same phone after MAC
   randomisation);
3. a new MAC without a known cookie is a new identity — at most ``cap`` a day are made per
   address; after that the MAC joins the newest identity made at that address today, whose
   allowance it shares (a laptop that rotates its MAC and drops its cookies gets "used up",
   not a fresh allowance).

The gateway's engine counts the free tier's daily allowance over all the MACs of an identity
(:func:`macs_of`).
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, Select, bindparam, func, insert, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from hotspot.mac import normalize_mac
from hotspot.model import ClientSession, DeviceIdentity, DeviceIdentityMac, Source

log = logging.getLogger(__name__)

DEVICE_ID_BYTES = 16  # 32 hex characters


def new_device_id() -> str:
    return secrets.token_hex(DEVICE_ID_BYTES)


def is_device_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and len(value) == 2 * DEVICE_ID_BYTES
        and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True)
class Identified:
    device_id: str | None  # None: not linked (a voucher form from an unknown device)
    created: bool = False  # a new identity was made for this MAC
    capped: bool = False  # the address had made its day's new identities: joined the newest


# The statements of a login, built once (building one costs about as much as running it on
# SQLite: issue #12, the portal's real path).
_IDENTITY_OF = select(DeviceIdentityMac.identity_id).where(
    DeviceIdentityMac.mac == bindparam("mac")
)
_IDENTITY_EXISTS = select(DeviceIdentity.id).where(DeviceIdentity.id == bindparam("id"))
_MADE_HERE = (
    select(func.count())
    .select_from(DeviceIdentity)
    .where(
        DeviceIdentity.created_ip == bindparam("ip"), DeviceIdentity.created_day == bindparam("day")
    )
)
_NEWEST_HERE = (
    select(DeviceIdentity.id)
    .where(
        DeviceIdentity.created_ip == bindparam("ip"), DeviceIdentity.created_day == bindparam("day")
    )
    .order_by(DeviceIdentity.created_at.desc(), DeviceIdentity.id)
    .limit(1)
)
_NEW_IDENTITY = insert(DeviceIdentity)
# macs_of's two queries, built once: the gateway asks them at every `client` op, login and
# tick (building the statements cost more than running them).
_LINKS_OF_MACS = select(DeviceIdentityMac.mac, DeviceIdentityMac.identity_id).where(
    DeviceIdentityMac.mac.in_(bindparam("macs", expanding=True))
)
_LINKS_OF_IDENTITIES = select(DeviceIdentityMac.mac, DeviceIdentityMac.identity_id).where(
    DeviceIdentityMac.identity_id.in_(bindparam("ids", expanding=True))
)
_NEW_LINK = insert(DeviceIdentityMac)
# ... and the tick's: every link of an identity one of whose MACs has a running session, in
# one statement with no parameter per MAC (an IN of 10,000 MACs was compiled anew at every
# tick: a third of a second of it at 10,000 sessions; issue #12, item 4).
_RUNNING_IDENTITIES = (
    select(DeviceIdentityMac.identity_id)
    .join(ClientSession, ClientSession.mac == DeviceIdentityMac.mac)
    .where(ClientSession.ended_at.is_(None))
)
_LINKS_OF_RUNNING = select(DeviceIdentityMac.mac, DeviceIdentityMac.identity_id).where(
    DeviceIdentityMac.identity_id.in_(_RUNNING_IDENTITIES)
)


def identity_of(conn: Connection, mac: str) -> str | None:
    return conn.execute(_IDENTITY_OF, {"mac": normalize_mac(mac)}).scalar()


def macs_of(conn: Connection, macs: Iterable[str]) -> dict[str, frozenset[str]]:
    """Each MAC → every MAC of its identity (itself alone when it has none). Two queries,
    whatever the number of MACs."""
    wanted = set(macs)
    out = {m: frozenset((m,)) for m in wanted}
    if not wanted:
        return out
    mine = dict(conn.execute(_LINKS_OF_MACS, {"macs": sorted(wanted)}).all())
    if not mine:
        return out
    groups: dict[str, set[str]] = {}
    for mac, identity in conn.execute(_LINKS_OF_IDENTITIES, {"ids": sorted(set(mine.values()))}):
        groups.setdefault(identity, set()).add(mac)
    for mac, identity in mine.items():
        out[mac] = frozenset(groups.get(identity, {mac}))
    return out


def macs_of_running(conn: Connection, running: Iterable[str]) -> dict[str, frozenset[str]]:
    """What :func:`macs_of` gives for ``running``, the MACs of every running session as
    read in the same transaction as ``conn``, in one query whatever their number. (Given
    another set of MACs it is wrong for those whose sessions are not running: use
    :func:`macs_of`.)"""
    out = {m: frozenset((m,)) for m in running}
    links = conn.execute(_LINKS_OF_RUNNING).all()
    groups: dict[str, set[str]] = {}
    for mac, identity in links:
        groups.setdefault(identity, set()).add(mac)
    frozen = {identity: frozenset(macs) for identity, macs in groups.items()}
    for mac, identity in links:
        if mac in out:
            out[mac] = frozen[identity]
    return out


class DeviceIdentities:
    """Links MACs to device identities (the portal's only writer of these tables)."""

    def __init__(self, engine: Engine, *, new_per_address: int = 3):
        self.engine = engine
        self.new_per_address = new_per_address
        self.sqlite = engine.dialect.name == "sqlite"

    def identify(
        self,
        mac: str,
        ip: str,
        cookie_id: str | None,
        *,
        now: dt.datetime,
        day: dt.date,
        create: bool = True,
    ) -> Identified:
        """The identity of ``mac`` (from the gateway) at ``ip``, given the device id its
        cookie carried (verified by the caller, or None). ``create=False`` (a voucher form)
        links to a known identity but makes none: only the free tier needs one."""
        mac = normalize_mac(mac)
        known = self._read(mac)  # a MAC keeps its identity for good: no write lock to see it
        if known is not None:
            return Identified(known)
        for _ in range(3):  # a concurrent request linked the same MAC: read theirs
            try:
                return self._identify(mac, ip, cookie_id, now, day, create)
            except IntegrityError:
                continue
        return Identified(self._read(mac))

    def _read(self, mac: str) -> str | None:
        with self.engine.connect() as conn:
            return identity_of(conn, mac)

    def _identify(
        self,
        mac: str,
        ip: str,
        cookie_id: str | None,
        now: dt.datetime,
        day: dt.date,
        create: bool,
    ) -> Identified:
        with self.engine.connect() as conn:
            if self.sqlite:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            known = identity_of(conn, mac)
            if known is not None:
                conn.rollback()
                return Identified(known)
            if cookie_id is not None and not is_device_id(cookie_id):
                cookie_id = None
            if cookie_id is not None and conn.execute(_IDENTITY_EXISTS, {"id": cookie_id}).scalar():
                self._link(conn, mac, cookie_id, now)
                conn.commit()
                log.info("device %s: MAC %s joins its identity (device cookie)", cookie_id, mac)
                return Identified(cookie_id)
            if not create:
                conn.rollback()
                return Identified(None)
            here = {"ip": ip, "day": day}
            made_here = conn.execute(_MADE_HERE, here).scalar_one()
            if made_here >= self.new_per_address:
                newest = conn.execute(_NEWEST_HERE, here).scalar_one()
                self._link(conn, mac, newest, now)
                conn.commit()
                log.warning(
                    "address %s: %d new devices today already; MAC %s shares %s's allowance",
                    ip,
                    made_here,
                    mac,
                    newest,
                )
                return Identified(newest, capped=True)
            device_id = cookie_id or new_device_id()
            conn.execute(
                _NEW_IDENTITY,
                {"id": device_id, "created_at": now, "created_ip": ip, "created_day": day},
            )
            self._link(conn, mac, device_id, now)
            conn.commit()
            return Identified(device_id, created=True)

    @staticmethod
    def _link(conn: Connection, mac: str, device_id: str, now: dt.datetime) -> None:
        conn.execute(_NEW_LINK, {"mac": mac, "identity_id": device_id, "linked_at": now})


def accepted_free_since(
    engine: Engine, *, mac: str | None, device_id: str | None, since: dt.datetime
) -> bool:
    """Whether this device — its MAC, or any MAC of the identity its device cookie names —
    started a free-tier session at or after ``since`` (the local midnight: it accepted the
    terms today, ``portal.free_remember_acceptance = "day"``)."""
    if not mac and not device_id:
        return False
    params = {"mac": normalize_mac(mac) if mac else None, "device_id": device_id, "since": since}
    with engine.connect() as conn:
        found = conn.execute(_accepted_statement(bool(mac), bool(device_id)), params).first()
    return found is not None


@functools.cache
def _accepted_statement(by_mac: bool, by_identity: bool) -> Select[int]:
    """The query of :func:`accepted_free_since`, built once per shape (every splash asks)."""
    who = []
    if by_mac:
        who.append(ClientSession.mac == bindparam("mac"))
    if by_identity:
        who.append(
            ClientSession.mac.in_(
                select(DeviceIdentityMac.mac).where(
                    DeviceIdentityMac.identity_id == bindparam("device_id")
                )
            )
        )
    return (
        select(ClientSession.id)
        .where(
            or_(*who),
            ClientSession.source == Source.FREE,
            ClientSession.started_at >= bindparam("since"),
        )
        .limit(1)
    )
