"""Logging in and out of the console."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from flask import Response, g, make_response, request
from flask_babel import gettext, ngettext

from hotspot import devicecookie, operators
from hotspot.errors import ErrorCode
from portal.operator.blueprint import COOKIE, bp, cfg, on_management_network, see_other
from portal.operator.pages import page, safe_next
from portal.state import state

DEVICE_COOKIE = "hs_opdev"
DEVICE_PURPOSE = "operator-login"
DEVICE_DAYS = 180
DEVICE_NAMES = 5  # accounts one device remembers (a kiosk shared by the admin and kasirs)


def known_names() -> list[str]:
    """The accounts this browser logged in to before (its signed device cookie)."""
    subject = devicecookie.check(
        state().secret_key,
        DEVICE_PURPOSE,
        request.cookies.get(DEVICE_COOKIE),
        dt.timedelta(days=DEVICE_DAYS),
        state().clock(),
    )
    return subject.split(",") if subject else []


def trusted_login(name: str) -> bool:
    """The brake holds a known device and the management network back only by their own
    wrong passwords (#10.13): a flood of guesses elsewhere does not keep them out."""
    return on_management_network(cfg(), request.remote_addr) or name in known_names()


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    if g.op is not None and request.method == "GET":
        return see_other("operator.dashboard")
    nxt = safe_next(request.values.get("next"))
    if request.method == "GET":
        return page("login.html", nxt=nxt)
    name = (request.form.get("name") or "").strip().lower()[:64]
    password = request.form.get("password") or ""
    config = cfg()
    try:
        op = operators.authenticate(
            state().db,
            name,
            password,
            request.remote_addr or "",
            brake=operators.Brake.from_config(config),
            trusted=trusted_login(name),
            clock=state().clock,
        )
    except operators.LoginRefused as exc:
        if exc.code is ErrorCode.LOCKED:
            minutes = max(1, (exc.retry_after + 59) // 60)
            msg = ngettext(
                "Too many wrong attempts. Please wait %(num)d minute.",
                "Too many wrong attempts. Please wait %(num)d minutes.",
                minutes,
            )
            body, _ = page("login.html", nxt=nxt, error=msg, name=name)
            return body, 429, {"Retry-After": str(exc.retry_after)}
        return page("login.html", 401, nxt=nxt, name=name, error=gettext("Wrong name or password."))
    token = operators.open_session(
        state().db,
        op,
        request.remote_addr or "",
        config.operator.session_hours,
        clock=state().clock,
    )
    resp = make_response(see_other_url(nxt))
    resp.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/operator"
    )
    names = [op.name] + [n for n in known_names() if n != op.name]
    resp.set_cookie(
        DEVICE_COOKIE,
        devicecookie.issue(
            state().secret_key, DEVICE_PURPOSE, ",".join(names[:DEVICE_NAMES]), state().clock()
        ),
        max_age=DEVICE_DAYS * 86400,
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
        path="/operator",
    )
    return resp


def see_other_url(url: str) -> Response:
    from flask import redirect

    return cast(Response, redirect(url, code=303))  # typed werkzeug's; flask's in a request


@bp.post("/logout")
def logout() -> Any:
    operators.close_session(state().db, request.cookies.get(COOKIE))
    resp = make_response(see_other("operator.login"))
    resp.delete_cookie(
        COOKIE, path="/operator", httponly=True, samesite="Strict", secure=request.is_secure
    )
    return resp
