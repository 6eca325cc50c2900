"""What the portal's pages share — configuration, addresses, the gateway, the database, the
voucher service, the clock — made once per process at start-up (:mod:`portal.startup`) and
kept on the app. Views reach it with :func:`state`, typed."""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hotspot.config import Config
from hotspot.identity import DeviceIdentities
from hotspot.policy import announcements_from_file, effective_from_file
from hotspot.pseudonym import Pseudonymizer
from hotspot.uplink import open_outage
from hotspot.vouchers.packages import PackageInfo, list_packages
from hotspot.vouchers.redemption import VoucherService
from portal.gateway import GatewayPort
from portal.radius_login import RadiusLogins
from portal.urls import PortalUrls, Signer

log = logging.getLogger(__name__)

EXTENSION = "hotspot"  # the key in app.extensions
PACKAGES_TTL = 30.0
UPLINK_TTL = 5.0  # the outage banner follows the gateway's monitor within this
POLICY_TTL = 10.0  # the free tier's terms on the pages follow the province's policy within this


@dataclass(eq=False)
class PortalState:
    config: Config
    urls: PortalUrls
    signer: Signer
    secret_key: bytes  # the session cookie's
    gateway: GatewayPort  # the control-socket client (one connection per worker thread)
    db: Engine
    vouchers: VoucherService | None  # None: no voucher key on this gateway
    clock: Callable[[], dt.datetime]
    identities: DeviceIdentities  # device cookie ↔ MACs (the free allowance follows it)
    pseudonyms: Pseudonymizer | None = None  # the usage API's; None while it is off
    radius: RadiusLogins | None = None  # [radius] logins; None while it is off
    fragments: dict[tuple, Any] = field(default_factory=dict)  # rendered price list, rules
    _packages: tuple[float, list[PackageInfo]] = field(default_factory=lambda: (0.0, []))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _outage: tuple[float, dt.datetime | None] = (-UPLINK_TTL, None)
    # The province's policy (issue #15): the file's configuration, and the last good policy
    # file's modification time as last seen (hotspot/policy.py).
    local_config: Config | None = None
    _policy_seen: tuple[float, int | None] = (-POLICY_TTL, None)
    # The province's announcements of that policy (hotspot/announcements.py shows them).
    province_announcements: list[dict[str, Any]] = field(default_factory=list)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self

    def invalidate_packages(self) -> None:
        """The console changed a package: the next price list is read afresh (in this
        worker; the others within PACKAGES_TTL)."""
        with self._lock:
            self._packages = (0.0, [])
            self.fragments.clear()

    def packages(self) -> list[PackageInfo]:
        """The price list (cached briefly: every splash shows it)."""
        stamp, cached = self._packages
        if time.monotonic() - stamp < PACKAGES_TTL:
            return cached
        with self._lock:
            try:
                fresh = list_packages(self.db)
            except SQLAlchemyError as exc:
                log.warning("price list unavailable: %s", str(exc).splitlines()[0])
                fresh = cached
            self._packages = (time.monotonic(), fresh)
            return fresh

    def uplink_down_since(self) -> dt.datetime | None:
        """When the village's internet went down (None: it is up), as the gateway's uplink
        monitor recorded it; read at most every UPLINK_TTL seconds per worker."""
        stamp, since = self._outage
        if time.monotonic() - stamp < UPLINK_TTL:
            return since
        outage = open_outage(self.db)
        since = outage[0] if outage is not None else None
        self._outage = (time.monotonic(), since)
        return since

    def follow_policy(self) -> None:
        """The free tier's terms shown to villagers as the gateway runs them: when the last
        good policy file changed (looked at most every POLICY_TTL seconds per worker), the
        configuration is the file's with that policy laid over it again."""
        local = self.local_config or self.config
        if not local.policy.public_key:
            return
        stamp, seen = self._policy_seen
        now = time.monotonic()
        if now - stamp < POLICY_TTL:
            return
        try:
            mtime: int | None = os.stat(local.policy.state_file).st_mtime_ns
        except OSError:
            mtime = None
        self._policy_seen = (now, mtime)
        if mtime == seen:
            return
        # Checked by a child interpreter: a worker never loads cryptography (8 MB each).
        effective, version = effective_from_file(local, apart=True)
        notices = announcements_from_file(local, apart=True)
        with self._lock:
            self.local_config = local
            self.config = effective
            self.province_announcements = notices
            self.fragments.clear()
        log.info("policy version %d in force for the portal's pages", version)


def state(app: Flask | None = None) -> PortalState:
    """The portal's state: of the app handling this request, or of ``app``."""
    return (app if app is not None else current_app).extensions[EXTENSION]
