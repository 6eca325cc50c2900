"""A villager's RADIUS login (issue #16): the portal asks the server, the gateway opens the
session on the grant (``radius-authorize`` over the control socket).

The Access-Request runs in the request's thread and waits at most ``servers × attempts ×
timeout_seconds`` (6 s with the defaults): a gunicorn thread is never held longer, and the
gateway never waits at all. Reject and silence become clear pages (portal/captive.py).

With ``[radius] offline = "cached"``, every Access-Accept is remembered in
``radius_login_cache`` under a keyed hash of name and password (the password itself is never
stored), with what the server granted; while no server answers, the same name and password
are let in again for what remains of that grant. Sessions already running never depend on
the server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from hotspot.config import Config
from hotspot.errors import ErrorCode, HotspotError, Refused
from hotspot.model_radius import RadiusLoginCache
from hotspot.protocol import RadiusAuthorizeRequest
from hotspot.pseudonym import load_key, pseudonym
from hotspot.radius.attributes import (
    DataLimitAttribute,
    Grant,
    calling_station_id,
    grant_from_attributes,
)
from hotspot.radius.secret import read_secret
from hotspot.timeutil import utcnow

log = logging.getLogger(__name__)

MAX_NAME = 253
MAX_PASSWORD = 128  # RFC 2865 section 5.2


@dataclass(frozen=True)
class Login:
    """A login the server (or the cache) accepted: what the gateway is asked to open."""

    username: str
    grant: Grant
    expires_at: dt.datetime | None
    offline: bool = False

    def request(self, ip: str, tier: str) -> RadiusAuthorizeRequest:
        g = self.grant
        return RadiusAuthorizeRequest(
            ip=ip,
            username=self.username,
            tier=tier,
            expires_at=self.expires_at,
            idle_minutes=g.idle_minutes,
            down_kbps=g.down_kbps,
            up_kbps=g.up_kbps,
            bytes_limit=g.bytes_limit,
            classes=",".join(c.hex() for c in g.classes) or None,
            interim_seconds=g.interim_seconds,
            offline=1 if self.offline else 0,
        )


class RadiusLogins:
    def __init__(
        self,
        config: Config,
        db: Engine,
        secret: bytes,
        cache_key: bytes,
        pseudonym_key: bytes | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ):
        self.radius = config.radius
        self.tier = config.radius.tier
        self.db = db
        self.secret = secret
        self.cache_key = cache_key
        self.pseudonym_key = pseudonym_key
        self.clock = clock
        # pyrad (packets, transport) is loaded by the portals that have [radius] on only.
        from hotspot.radius.packets import Nas
        from hotspot.radius.transport import Server

        self.nas = Nas(self.radius.nas_identifier, self.radius.nas_ip_address)
        self.servers = [Server(s.host, s.port) for s in self.radius.servers]
        self.data_limit = DataLimitAttribute(self.radius.data_limit)

    @classmethod
    def from_config(
        cls, config: Config, db: Engine, cache_key: bytes, clock: Callable[[], dt.datetime]
    ) -> RadiusLogins:
        secret = read_secret(config.radius.secret_file)
        key = load_key(config, db) if config.radius.calling_station_id == "pseudonym" else None
        return cls(config, db, secret, cache_key, key, clock=clock)

    def _cache_id(self, username: str, password: str) -> str:
        msg = b"hotspot-desa/radius-cache/v1\0" + username.encode() + b"\0" + password.encode()
        return hmac.new(self.cache_key, msg, hashlib.sha256).hexdigest()

    def calling_station(self, mac: str) -> str:
        if self.pseudonym_key is not None:
            return pseudonym(self.pseudonym_key, mac)
        return calling_station_id(mac)

    def login(self, username: str, password: str, *, ip: str, mac: str) -> Login:
        """Ask the server. Raises Refused(RADIUS_REJECT) or HotspotError(RADIUS_UNAVAILABLE)."""
        from hotspot.radius.packets import ACCESS_ACCEPT, access_request, reply_attributes
        from hotspot.radius.transport import NoAnswer, exchange

        username, password = username[:MAX_NAME], password[:MAX_PASSWORD]
        request = access_request(
            self.secret,
            self.nas,
            username=username,
            password=password,
            calling_station=self.calling_station(mac),
            framed_ip=ip,
        )
        now = self.clock()
        try:
            reply, server = exchange(
                request,
                self.servers,
                timeout=self.radius.timeout_seconds,
                attempts=self.radius.attempts,
                require_message_authenticator=self.radius.require_message_authenticator,
            )
        except NoAnswer as exc:
            log.warning("radius: no server answered (%s)", exc)
            return self._offline(username, password, now)
        attrs = reply_attributes(reply)
        if reply.code != ACCESS_ACCEPT:
            # Access-Reject, or a Challenge (no second factor on a captive portal): refused.
            log.info("radius: %s refused %r (code %d)", server.host, username, reply.code)
            raise Refused(f"the RADIUS server refused {username!r}", code=ErrorCode.RADIUS_REJECT)
        grant = grant_from_attributes(attrs, self.data_limit)
        if grant.problems:
            log.warning("radius: unusable attributes in the accept: %s", ", ".join(grant.problems))
        expires_at = (
            now + dt.timedelta(seconds=grant.session_seconds) if grant.session_seconds else None
        )
        if self.radius.offline == "cached":
            self._remember(username, password, grant, now, expires_at)
        return Login(username, grant, expires_at)

    # -- the offline cache --------------------------------------------------------------------

    def _remember(
        self,
        username: str,
        password: str,
        grant: Grant,
        now: dt.datetime,
        expires_at: dt.datetime | None,
    ) -> None:
        until = now + dt.timedelta(hours=self.radius.cache_hours)
        if expires_at is not None:
            until = min(until, expires_at)
        body = asdict(grant)
        body["classes"] = [c.hex() for c in grant.classes]
        body.pop("problems", None)
        key = self._cache_id(username, password)
        with Session(self.db) as db, db.begin():
            db.execute(delete(RadiusLoginCache).where(RadiusLoginCache.expires_at <= now))
            row = db.get(RadiusLoginCache, key) or RadiusLoginCache(key=key)
            row.username, row.grant = username, json.dumps(body)
            row.cached_at, row.expires_at = now, until
            db.add(row)

    def _offline(self, username: str, password: str, now: dt.datetime) -> Login:
        if self.radius.offline == "cached":
            with Session(self.db) as db:
                row = db.scalar(
                    select(RadiusLoginCache).where(
                        RadiusLoginCache.key == self._cache_id(username, password),
                        RadiusLoginCache.expires_at > now,
                    )
                )
                if row is not None:
                    body = json.loads(row.grant)
                    body["classes"] = tuple(bytes.fromhex(c) for c in body.get("classes", ()))
                    body["session_seconds"] = None
                    log.info("radius: no server; %r let in from the cache", username)
                    return Login(username, Grant(**body), row.expires_at, offline=True)
        raise HotspotError("no RADIUS server answered", code=ErrorCode.RADIUS_UNAVAILABLE)
