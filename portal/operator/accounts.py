"""Accounts (*Akun*, admins) and one's own password."""

from __future__ import annotations

from typing import Any

from flask import g, make_response, request
from flask_babel import gettext

from hotspot import operators
from hotspot.errors import NotFound, UsageError
from hotspot.model_operator import ROLES
from portal.operator.blueprint import COOKIE, actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import form_data, text_field
from portal.operator.pages import page
from portal.state import state


@bp.route("/operators", methods=["GET", "POST"])
@admin_only
def operators_page() -> Any:
    db = state().db
    if request.method == "GET":
        return page("operators.html", operators=operators.listing(db), form={"role": "kasir"})
    form = {k: v for k, v in form_data().items() if "password" not in k}
    errors = _account_errors(request.form, new=True)
    if not errors:
        try:
            operators.add(
                db,
                request.form.get("name", ""),
                request.form.get("role", ""),
                request.form.get("password", ""),
                actor=actor(),
                full_name=text_field(request.form, "full_name", 64),
                clock=state().clock,
            )
        except UsageError as exc:
            errors["name"] = (
                gettext("An account with this name exists already.")
                if "exists" in exc.message
                else gettext("This name cannot be used.")
            )
    if errors:
        return page(
            "operators.html", 422, operators=operators.listing(db), form=form, errors=errors
        )
    return flash_to("operator.operators_page", "operator")


def _account_errors(form: Any, new: bool) -> dict[str, str]:
    errors: dict[str, str] = {}
    if new:
        try:
            operators.check_name(form.get("name", ""))
        except UsageError:
            errors["name"] = gettext(
                "2 to 32 small letters or digits, starting with a letter (for example: siti)."
            )
        if form.get("role") not in ROLES:
            errors["role"] = gettext("Choose a role.")
    password = form.get("password", "")
    if new or password:
        try:
            operators.check_password(password, form.get("name", ""))
        except operators.PasswordError as exc:
            errors["password"] = (
                gettext("At least 8 characters, not easy to guess.")
                if "easy" not in exc.message
                else gettext("This password is too easy to guess.")
            )
        if "password" not in errors and form.get("password2", "") != password:
            errors["password2"] = gettext("The two passwords differ.")
    return errors


@bp.route("/operators/<int:oid>", methods=["GET", "POST"])
@admin_only
def operator_edit(oid: int) -> Any:
    db = state().db
    try:
        row = operators.get(db, operator_id=oid)
    except NotFound:
        return render_error("not-found", 404)
    if request.method == "GET":
        return page(
            "operator_form.html",
            o=row,
            form={
                "role": row.role,
                "active": "1" if row.active else "",
                "full_name": row.full_name or "",
            },
        )
    form = {k: v for k, v in form_data().items() if "password" not in k}
    errors = _account_errors(dict(request.form, name=row.name), new=False)
    if request.form.get("role") not in ROLES:
        errors["role"] = gettext("Choose a role.")
    if not errors:
        try:
            operators.change(
                db,
                oid,
                actor=actor(),
                role=request.form.get("role"),
                active=request.form.get("active") == "1",
                full_name=text_field(request.form, "full_name", 64),
                password=request.form.get("password") or None,
                clock=state().clock,
            )
        except UsageError as exc:
            errors["role"] = (
                gettext("This is the last admin: make another admin first.")
                if "last" in exc.message
                else exc.message
            )
    if errors:
        return page("operator_form.html", 422, o=row, form=form, errors=errors)
    return flash_to("operator.operators_page", "operator")


@bp.route("/account", methods=["GET", "POST"])
def account() -> Any:
    if request.method == "GET":
        return page("account.html")
    db = state().db
    errors = _account_errors(dict(request.form, name=g.op.name), new=False)
    if not request.form.get("password"):
        errors["password"] = gettext("Please fill this in.")
    try:
        operators.authenticate(
            db,
            g.op.name,
            request.form.get("current", ""),
            request.remote_addr or "",
            brake=operators.Brake.from_config(cfg()),
            trusted=True,  # logged in already: only this account's own wrong guesses count
            clock=state().clock,
        )
    except operators.LoginRefused:
        errors["current"] = gettext("This is not your current password.")
    if errors:
        return page("account.html", 422, errors=errors)
    operators.change(
        db, g.op.id, actor=actor(), password=request.form["password"], clock=state().clock
    )
    # The change ended every login of this account, this one too: open a fresh one.
    op = operators.get(db, operator_id=g.op.id)
    token = operators.open_session(
        db, op, request.remote_addr or "", cfg().operator.session_hours, clock=state().clock
    )
    resp = make_response(flash_to("operator.dashboard", "password"))
    resp.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", secure=request.is_secure, path="/operator"
    )
    return resp
