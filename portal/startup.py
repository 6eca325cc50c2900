"""The portal process's start-up: what is done once, before any request — by ``hotspot portal
run`` before gunicorn forks its workers, by ``gunicorn 'portal:create_app()'`` when it loads
the app, and by the tests' fixtures. Never per request, never per worker.

* the session cookie's secret (created if missing) and the voucher key (vouchers are off
  without it, the rest works);
* the gateway link and the database (the portal never migrates it: the gateway does);
* the configuration file's packages written into the database (those since removed from the
  file go off sale);
* the usage API's pseudonym key (created once), when the API is on — so that its ``GET``
  only reads.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from hotspot import pseudonym
from hotspot.config import Config
from hotspot.errors import HotspotError
from hotspot.identity import DeviceIdentities
from hotspot.timeutil import wall_clock
from hotspot.vouchers.keys import load_key
from hotspot.vouchers.packages import sync_packages
from hotspot.vouchers.redemption import VoucherService
from portal.gateway import GatewayLink, GatewayPort
from portal.radius_login import RadiusLogins
from portal.state import PortalState
from portal.urls import PortalUrls, Signer

log = logging.getLogger(__name__)


def prepare(
    config: Config,
    *,
    gateway: GatewayPort | None = None,
    db: Engine | None = None,
    voucher_key: bytes | None = None,
    secret_key: bytes | None = None,
    clock: Callable[[], dt.datetime] | None = None,
) -> PortalState:
    """The portal's state for ``config``. Tests pass a gateway stand-in, a database, the
    keys and a clock; what is not given is made from the configuration (a missing key is
    read from its file). Without a clock: the wall clock, shifted in a namespace test as the
    gateway's is (``hotspot.timeutil.wall_clock``)."""
    if clock is None:
        clock = wall_clock()
    portal_cfg = config.portal
    if secret_key is None:
        secret_key = load_key(portal_cfg.secret_key_file, create=True, what="portal secret")
    if gateway is None:
        gateway = GatewayLink(config.control.socket)
    identity_db = db
    if db is None:
        db = database(config.database.url)
        identity_db = database(config.database.url, synchronous="NORMAL")
    if voucher_key is None:
        try:
            voucher_key = load_key(portal_cfg.voucher_key_file)
        except HotspotError as exc:
            log.error("vouchers disabled: %s", exc.message)
    vouchers = None
    if voucher_key is not None:
        vouchers = VoucherService.from_config(config, db, voucher_key, gateway, clock=clock)
    if config.packages or config.operator.enabled:
        try:
            # The file's packages; those since removed from it go off sale (docs/operator-
            # console.md: the file and the console side by side).
            sync_packages(db, config.packages.values(), clock=clock, retire_missing=True)
        except SQLAlchemyError as exc:
            log.error(
                "could not write the configured packages (is the database migrated? "
                "`hotspot db upgrade`): %s",
                str(exc).splitlines()[0],
            )
    return PortalState(
        config=config,
        urls=PortalUrls.from_config(config),
        signer=Signer(secret_key),
        secret_key=secret_key,
        gateway=gateway,
        db=db,
        vouchers=vouchers,
        clock=clock,
        identities=DeviceIdentities(
            identity_db or db, new_per_address=portal_cfg.free_devices_per_address
        ),
        pseudonyms=_pseudonyms(config, db),
        radius=(
            RadiusLogins.from_config(config, db, secret_key, clock)
            if config.radius.enabled
            else None
        ),
    )


def database(url: str, synchronous: str = "FULL") -> Engine:
    """Vouchers are money: the portal's connections fsync every commit. The device
    identities' links (one write per login of a new MAC) get their own connections with
    ``NORMAL``, as the gateway's sessions have: on a busy SD card an fsync is tens of ms on
    every free login, and a link lost to a power cut is made again at the next form (the
    allowance it counts is the sessions', which are no more durable). The portal never
    migrates — the gateway (or ``hotspot db upgrade``) does."""
    from hotspot.db import make_engine

    return make_engine(url, synchronous=synchronous)


def _pseudonyms(config: Config, db: Engine) -> pseudonym.Pseudonymizer | None:
    """The usage API's pseudonyms (its key made now if this gateway has none yet)."""
    if not config.sync.api_token:
        return None
    try:
        return pseudonym.Pseudonymizer(pseudonym.load_key(config, db))
    except SQLAlchemyError as exc:
        log.error(
            "usage API: no pseudonym key yet (is the database migrated? `hotspot db upgrade`): %s",
            str(exc).splitlines()[0],
        )
        return None
