"""Logging in and out of the console."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, g, make_response, request
from flask_babel import gettext, ngettext

from hotspot import operators
from hotspot.errors import ErrorCode
from portal.operator.blueprint import COOKIE, bp, cfg, see_other
from portal.operator.pages import page, safe_next
from portal.state import state


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
