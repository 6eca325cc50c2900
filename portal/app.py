"""The Flask application factory.

``create_app(state=…)`` only assembles: configuration, extensions (``init_app``), the three
blueprints (captive, operator, usage API, each registered the same way), error handlers and
the captive intercept. What a process does once — keys, database, gateway link, packages —
is :func:`portal.startup.prepare`, run by ``hotspot portal run`` before gunicorn forks and by
the tests' fixtures. ``create_app()`` without a state (``gunicorn 'portal:create_app()'``)
prepares one from ``config`` or $HOTSPOT_CONFIG first.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

from flask import Flask, g, request
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel
from flask_wtf.csrf import CSRFError, CSRFProtect
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from hotspot import config as config_mod
from hotspot.config import Config
from hotspot.db import is_storage_full
from hotspot.errors import ErrorCode, HotspotError
from portal import captive, fmt, operator, usage_api
from portal.captive import render_gateway_error, render_message, storage_full_page
from portal.csp import CSP
from portal.intercept import CaptiveIntercept
from portal.operator import is_console_path
from portal.operator import render_error as console_error
from portal.startup import prepare
from portal.state import PortalState

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
LANGUAGES = ("id", "en")
LANGUAGE_NAMES = {"id": "Bahasa Indonesia", "en": "English"}

SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


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


babel = Babel()
csrf = CSRFProtect()


def create_app(config: Config | None = None, *, state: PortalState | None = None) -> Flask:
    """The portal's app for ``state`` (from :func:`portal.startup.prepare`); ``config`` is
    read only when no state is given."""
    if state is None:
        state = prepare(config if config is not None else config_mod.load())
    config = state.config
    portal_cfg = config.portal

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=state.secret_key,
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
    app.session_interface = _SchemeSessions()
    state.init_app(app)
    # The province's policy may change the free tier's terms the pages show (issue #15).
    app.before_request(state.follow_policy)
    babel.init_app(
        app,
        locale_selector=_select_locale,
        default_locale="id",
        default_timezone=config.village.timezone,
        default_translation_directories=str(HERE / "translations"),
    )
    csrf.init_app(app)

    # The villagers' pages, the BUMDes operator console (/operator/) and the gateway's own
    # usage API (/api/v1/usage, off unless [sync] api_token is set).
    app.register_blueprint(captive.bp)
    app.register_blueprint(operator.bp)
    app.register_blueprint(usage_api.bp)
    version = _static_version()

    @app.context_processor
    def _globals() -> dict[str, Any]:
        from flask_babel import get_locale

        lang = str(get_locale() or "id")
        other = "en" if lang == "id" else "id"
        return {
            "village": config.village.name,
            "contact": portal_cfg.contact,
            "lang": lang,
            "other_lang": other,
            "other_lang_name": LANGUAGE_NAMES[other],
            "fmt": fmt,
            "static_version": version,
        }

    @app.after_request
    def _headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if request.endpoint != "static":
            response.headers.setdefault("Cache-Control", "no-store")
        lang = g.get("set_lang")
        if lang:
            response.set_cookie(
                "lang",
                lang,
                max_age=365 * 86400,
                httponly=True,
                samesite="Lax",
                secure=request.is_secure,
            )
        return response

    @app.errorhandler(CSRFError)
    def _csrf(_exc):
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
        if is_console_path():
            log.warning("console: %s: %s", exc.code, exc.message)
            no_key = exc.code in (ErrorCode.NO_KEY, ErrorCode.BAD_VOUCHER_KEY)
            kind = "no-key" if no_key else "gateway"
            if exc.code is ErrorCode.STORAGE_FULL:
                kind = "disk-full"
            return console_error(kind, 503)
        return render_gateway_error(exc)

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError):
        if is_storage_full(exc):  # the portal's own write: the same page as the gateway's
            if is_console_path():
                log.warning("console: storage full: %s", str(exc).splitlines()[0])
                return console_error("disk-full", 503)
            return storage_full_page()
        log.error("database: %s", str(exc).splitlines()[0])
        if is_console_path():
            return console_error("busy", 503)
        return render_message("busy", 503)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
        if is_console_path():
            return console_error("error", 500)
        return render_message("error", 500)

    app.wsgi_app = CaptiveIntercept(app.wsgi_app, state.urls, state.signer)  # type: ignore[method-assign]
    return app


class _SchemeSessions(SecureCookieSessionInterface):
    """The session cookie (it carries the CSRF token of the console's forms) is Secure on the
    HTTPS listener (#10.12); the plain-HTTP listener cannot send a Secure cookie."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request) and request.is_secure
