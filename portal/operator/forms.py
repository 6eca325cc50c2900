"""Reading the console's forms: whole numbers (with the messages a kasir understands), short
text, the posted fields without the CSRF token."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_babel import gettext


def int_or(value: Any, default: int = 0) -> int:
    """A whole number from a query or form value, or ``default``."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def whole(
    form: dict[str, str], name: str, lo: int, hi: int, errors: dict[str, str], required: bool = True
) -> int | None:
    raw = (form.get(name) or "").strip().replace(".", "").replace(",", "").replace(" ", "")
    if not raw:
        if required:
            errors[name] = gettext("Please fill this in.")
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[name] = gettext(
            "Enter a whole number, like %(example)s.", example=lo if lo > 0 else 5000
        )
        return None
    if value < lo:
        errors[name] = (
            gettext("It cannot be less than %(lo)s.", lo=lo)
            if lo > 0
            else gettext("It cannot be negative.")
        )
        return None
    if value > hi:
        limit = format(hi, ",").replace(",", ".")
        errors[name] = gettext("It cannot be more than %(hi)s.", hi=limit)
        return None
    return value


def text_field(form: dict[str, str], name: str, max_len: int) -> str:
    return " ".join((form.get(name) or "").split())[:max_len]


def form_data() -> dict[str, str]:
    return {k: v for k, v in request.form.items() if k != "csrf_token"}
