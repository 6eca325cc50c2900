"""The Flask application factory.

``create_app()`` with no arguments reads the configuration ($HOTSPOT_CONFIG or the
defaults), connects to the gateway's control socket and the database, and is what gunicorn
runs (``gunicorn 'portal:create_app()'`` or ``hotspot portal run``). Tests pass a config, a
gateway stand-in and a database engine.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from flask import Flask, g, request
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from hotspot import config as config_mod
from hotspot.config import Config
from hotspot.errors import HotspotError
from hotspot.model import utcnow
from hotspot.vouchers.keys import load_key
from hotspot.vouchers.packages import PackageInfo, list_packages, sync_packages
from hotspot.vouchers.redemption import VoucherService
from portal import fmt
from portal.gateway import GatewayLink
from portal.intercept import CaptiveIntercept
from portal.urls import PortalUrls, Signer

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LANGUAGES = ("id", "en")
LANGUAGE_NAMES = {"id": "Bahasa Indonesia", "en": "English"}
PACKAGES_TTL = 30.0

CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


class PortalState:
    """What the views need, kept on ``app.extensions["hotspot"]``."""

    def __init__(self, config: Config, urls: PortalUrls, signer: Signer, gateway: Any,
                 db: Engine | None, vouchers: VoucherService | None,
                 clock: Callable[[], dt.datetime]):
        self.config = config
        self.urls = urls
        self.signer = signer
        self.gateway = gateway
        self.db = db
        self.vouchers = vouchers
        self.clock = clock
        self._packages: tuple[float, list[PackageInfo]] = (0.0, [])
        self.fragments: dict[tuple, Any] = {}
        self._lock = threading.Lock()

    def invalidate_packages(self) -> None:
        """The console changed a package: the next price list is read afresh (in this
        worker; the others within PACKAGES_TTL)."""
        with self._lock:
            self._packages = (0.0, [])
            self.fragments.clear()

    def packages(self) -> list[PackageInfo]:
        """The price list (cached briefly: every splash shows it)."""
        stamp, cached = self._packages
        if self.db is None or time.monotonic() - stamp < PACKAGES_TTL:
            return cached
        with self._lock:
            try:
                fresh = list_packages(self.db)
            except SQLAlchemyError as exc:
                log.warning("price list unavailable: %s", str(exc).splitlines()[0])
                fresh = cached
            self._packages = (time.monotonic(), fresh)
            return fresh


def _select_locale() -> str:
    lang = request.args.get("lang")
    if lang is None and request.method == "POST":
        try:
            lang = request.form.get("lang")
        except Exception:  # noqa: BLE001 - an oversized or broken body: answered elsewhere
            lang = None
    if lang in LANGUAGES:
        if request.cookies.get("lang") != lang:
            g.set_lang = lang
        return lang
    cookie = request.cookies.get("lang")
    if cookie in LANGUAGES:
        return cookie
    return request.accept_languages.best_match(LANGUAGES, default="id") or "id"


def _static_version() -> str:
    digest = hashlib.sha256()
    for path in sorted((HERE / "static").glob("*")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def _database(url: str) -> Engine:
    """Vouchers are money: the portal's connections fsync every commit. The portal never
    migrates — the gateway (or ``hotspot db upgrade``) does."""
    from hotspot.db import make_engine

    return make_engine(url, synchronous="FULL")


def create_app(config: Config | None = None, *, gateway: Any = None, db: Engine | None = None,
               voucher_key: bytes | None = None, secret_key: bytes | None = None,
               clock: Callable[[], dt.datetime] = utcnow) -> Flask:
    if config is None:
        config = config_mod.load()
    portal_cfg = config.portal
    assert portal_cfg is not None
    if secret_key is None:
        secret_key = load_key(portal_cfg.secret_key_file, create=True, what="portal secret")
    if gateway is None:
        gateway = GatewayLink(config.control.socket)
    if db is None:
        db = _database(config.database.url)
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
            log.error("could not write the configured packages (is the database migrated? "
                      "`hotspot db upgrade`): %s", str(exc).splitlines()[0])

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=secret_key,
        MAX_CONTENT_LENGTH=portal_cfg.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=portal_cfg.max_body_bytes,
        SESSION_COOKIE_NAME="hs",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
        DEBUG=False,
        # A villager may read the terms for a long while; the token lives as long as the
        # (browser-session) cookie.
        WTF_CSRF_TIME_LIMIT=None,
        # Referer checks on HTTPS would fail: every page sends Referrer-Policy: no-referrer.
        WTF_CSRF_SSL_STRICT=False,
        SEND_FILE_MAX_AGE_DEFAULT=86400,
    )
    app.jinja_env.autoescape = True  # every template, whatever its name
    urls = PortalUrls.from_config(config)
    state = PortalState(config, urls, Signer(secret_key), gateway, db, vouchers, clock)
    app.extensions["hotspot"] = state
    Babel(app, locale_selector=_select_locale, default_locale="id",
          default_timezone=config.village.timezone,
          default_translation_directories=str(HERE / "translations"))
    CSRFProtect(app)

    from portal.captive import bp as captive_bp, render_message

    app.register_blueprint(captive_bp)
    # The BUMDes operator console (/operator/, portal/operator) and the gateway's own usage
    # API (/api/v1/usage, off unless [sync] api_token is set).
    from portal.operator import is_console_path, register as register_console
    from portal.operator import render_error as console_error
    from portal.usage_api import usage_blueprint

    register_console(app)
    app.register_blueprint(usage_blueprint(config, db))
    version = _static_version()

    @app.context_processor
    def _globals() -> dict[str, Any]:
        from flask_babel import get_locale

        lang = str(get_locale() or "id")
        other = "en" if lang == "id" else "id"
        return {"village": config.village.name, "contact": portal_cfg.contact,
                "lang": lang, "other_lang": other, "other_lang_name": LANGUAGE_NAMES[other],
                "fmt": fmt, "static_version": version}

    @app.after_request
    def _headers(response):  # noqa: ANN001 - Flask's hook signature
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        lang = g.get("set_lang")
        if lang:
            response.set_cookie("lang", lang, max_age=365 * 86400, httponly=True,
                                samesite="Lax", secure=request.is_secure)
        return response

    @app.errorhandler(CSRFError)
    def _csrf(_exc):  # noqa: ANN001
        if is_console_path():
            return console_error("expired", 400)
        return render_message("expired", 400)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        kind = {404: "not-found", 405: "not-found", 413: "too-large"}.get(exc.code or 500)
        if kind is None:
            kind = "bad-request" if (exc.code or 500) < 500 else "error"
        if is_console_path():
            return console_error(kind, exc.code or 500)
        return render_message(kind, exc.code or 500)

    @app.errorhandler(HotspotError)
    def _hotspot(exc: HotspotError):
        from portal.captive import render_gateway_error

        if is_console_path():
            log.warning("console: %s: %s", exc.code, exc.message)
            kind = {"no-key": "no-key", "bad-voucher-key": "no-key"}.get(exc.code, "gateway")
            return console_error(kind, 503)
        return render_gateway_error(exc)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError):
        log.error("database: %s", str(exc).splitlines()[0])
        if is_console_path():
            return console_error("busy", 503)
        return render_message("busy", 503)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        if is_console_path():
            return console_error("error", 500)
        return render_message("error", 500)

    app.wsgi_app = CaptiveIntercept(app.wsgi_app, urls, state.signer)  # type: ignore[method-assign]
    return app
