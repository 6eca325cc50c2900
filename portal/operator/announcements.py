"""Announcements (*Pengumuman*, issue #15 item 3): short notices from the BUMDes on the
villagers' splash and status pages — a vaccination day at the puskesmas, a school enrolment
date. The list, a new one, changing and deleting one; start and end are typed in village time.
Admin only (a kasir gets the 403 page); every change is audited (``hotspot/announcements.py``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import request
from flask_babel import gettext

from hotspot import announcements
from hotspot.announcements import AnnouncementError, Notice
from hotspot.errors import NotFound
from hotspot.model_announcement import MAX_TEXT
from hotspot.timeutil import local_time, naive_utc
from portal.operator.blueprint import actor, admin_only, bp, cfg, flash_to, render_error
from portal.operator.forms import form_data
from portal.operator.pages import DONE, page
from portal.state import state

log = logging.getLogger(__name__)

# What the browser's date-and-time field sends (``datetime-local``), and what a person types
# where there is none: ``2026-12-01 08:00``, ``01/12/2026 08.00``; a date alone is midnight.
_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H.%M")
_DAY_FORMATS = ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y")
_DAY_TIME_FORMATS = ("%d/%m/%Y %H:%M", "%d/%m/%Y %H.%M", "%d-%m-%Y %H:%M", "%d-%m-%Y %H.%M")


def parse_local(value: str | None) -> dt.datetime | None:
    """A date and time typed in village time → naive UTC; None when it does not read."""
    raw = " ".join((value or "").split())[:32]
    for fmt in _FORMATS + _DAY_TIME_FORMATS + _DAY_FORMATS:
        try:
            local = dt.datetime.strptime(raw, fmt)
        except ValueError:
            continue
        if not 2000 <= local.year <= 2200:
            return None
        return naive_utc(local.replace(tzinfo=cfg().village.tz))
    return None


def field_value(ts: dt.datetime) -> str:
    """Naive UTC → what the date-and-time field shows, in village time."""
    return local_time(ts, cfg().village.tz).strftime("%Y-%m-%dT%H:%M")


def _read(form: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    text_id = announcements.clean_text(form.get("text_id"))
    text_en = announcements.clean_text(form.get("text_en"))
    if not text_id:
        errors["text_id"] = gettext("Please fill this in.")
    elif len(text_id) > MAX_TEXT:
        errors["text_id"] = gettext("At most %(num)d characters.", num=MAX_TEXT)
    if len(text_en) > MAX_TEXT:
        errors["text_en"] = gettext("At most %(num)d characters.", num=MAX_TEXT)
    starts, ends = parse_local(form.get("starts")), parse_local(form.get("ends"))
    example = gettext("Example: %(example)s.", example="2026-12-01 08:00")
    if starts is None:
        errors["starts"] = gettext("Not a date and time.") + " " + example
    if ends is None:
        errors["ends"] = gettext("Not a date and time.") + " " + example
    elif starts is not None and ends <= starts:
        errors["ends"] = gettext("The end must be after the start.")
    elif starts is not None and ends - starts > announcements.MAX_SPAN:
        errors["ends"] = gettext("An announcement shows for at most one year.")
    values = {"text_id": text_id, "text_en": text_en or None, "starts_at": starts, "ends_at": ends}
    return values, errors


def _page(status: int = 200, **ctx: Any) -> Any:
    now = state().clock()
    rows = announcements.village_notices(state().db)
    return page(
        "announcements.html",
        status,
        rows=rows,
        now=now,
        max_text=MAX_TEXT,
        **ctx,
    )


def _new_form() -> dict[str, str]:
    """Today from the next whole hour, for a week: a start that is already right most times."""
    now = state().clock().replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    return {"starts": field_value(now), "ends": field_value(now + dt.timedelta(days=7))}


@bp.get("/announcements")
@admin_only
def announcements_page() -> Any:
    return _page(form=_new_form())


@bp.post("/announcements")
@admin_only
def announcement_add() -> Any:
    form = form_data()
    values, errors = _read(form)
    if not errors:
        try:
            announcements.add(state().db, **values, actor=actor(), at=state().clock())
        except AnnouncementError as exc:
            log.info("announcement refused: %s", exc.message)
            errors[exc.field] = _refusal(exc)
    if errors:
        return _page(422, form=form, errors=errors)
    return flash_to("operator.announcements_page", "announcement")


def _refusal(exc: AnnouncementError) -> str:
    if isinstance(exc, announcements.TooMany):
        return gettext("There are too many announcements. Delete old ones first.")
    return gettext("This cannot be saved: %(why)s", why=exc.message)


def _form_of(notice: Notice) -> dict[str, str]:
    return {
        "text_id": notice.text_id,
        "text_en": notice.text_en or "",
        "starts": field_value(notice.starts_at),
        "ends": field_value(notice.ends_at),
    }


@bp.route("/announcements/<int:aid>", methods=["GET", "POST"])
@admin_only
def announcement_edit(aid: int) -> Any:
    try:
        notice = announcements.get(state().db, aid)
    except NotFound:
        return render_error("not-found", 404)
    if request.method == "GET":
        return page(
            "announcement_form.html", notice=notice, form=_form_of(notice), max_text=MAX_TEXT
        )
    form = form_data()
    values, errors = _read(form)
    if not errors:
        try:
            announcements.update(state().db, aid, **values, actor=actor(), at=state().clock())
        except NotFound:
            return render_error("not-found", 404)
        except AnnouncementError as exc:
            errors[exc.field] = _refusal(exc)
    if errors:
        return page(
            "announcement_form.html",
            422,
            notice=notice,
            form=form,
            errors=errors,
            max_text=MAX_TEXT,
        )
    return flash_to("operator.announcements_page", "announcement")


@bp.post("/announcements/<int:aid>/delete")
@admin_only
def announcement_delete(aid: int) -> Any:
    try:
        announcements.remove(state().db, aid, actor=actor(), at=state().clock())
    except NotFound:
        # Deleted already (the button pressed twice, two admins): the list says so.
        return flash_to("operator.announcements_page", "announcement-gone")
    return flash_to("operator.announcements_page", "announcement-deleted")


DONE["announcement"] = lambda a: gettext("The announcement was saved.")
DONE["announcement-deleted"] = lambda a: gettext("The announcement was deleted.")
DONE["announcement-gone"] = lambda a: gettext(
    "That announcement was deleted already; nothing was changed."
)
