"""Announcements on the splash and status pages (issue #15, item 3).

Two sources, one list:

* the **village's** own notices, entered by the BUMDes admin in the console and kept in the
  ``announcement`` table (:mod:`hotspot.model_announcement`);
* the **province's**, which arrive with its signed policy as a list of
  ``{id, text_id, text_en, starts, ends}`` (times ISO 8601, with a zone or ``Z``). This
  module does not fetch or verify the policy; the caller passes its list in.

:func:`active` answers "what shows now": both sources merged, each notice marked by its
:class:`Source`. *Now* is the wall clock at the moment a page is rendered — the best the
gateway has. A clock that jumps backwards (a Pi without a real-time clock after a power cut,
before NTP answers) can show a notice that has ended, but only while the clock is wrong:
nothing is cached, so the next page after the clock is right again no longer shows it. A clock
that jumps forward hides a notice early, for as long. Nothing is remembered from one render to
the next, so no jump can make a notice show "forever".

Start and end are moments (naive UTC in the table); the console takes and shows them in the
village's time zone (``[village] timezone``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Engine, Select, bindparam, delete, select
from sqlalchemy.orm import Session

from hotspot import audit
from hotspot.errors import NotFound, UsageError
from hotspot.model_announcement import MAX_TEXT, Announcement
from hotspot.timeutil import parse_utc

log = logging.getLogger(__name__)

# An announcement shows at most this long: a notice, not a permanent banner (that is the
# portal's terms or contact line).
MAX_SPAN = dt.timedelta(days=366)
# The console keeps at most this many village notices (ended ones included): the table stays
# small and the splash page, which every phone's captive probe fetches, stays cheap.
MAX_ROWS = 200
# At most this many show at once on a page, the province's first: a page of notices would
# bury the login button.
MAX_SHOWN = 5
# A province id is a short token of the policy's (never shown; used to tell notices apart).
MAX_PROVINCE_ID = 64


class Source(enum.StrEnum):
    VILLAGE = "village"  # the BUMDes, in the console
    PROVINCE = "province"  # the province, in its signed policy


@dataclasses.dataclass(frozen=True)
class Notice:
    """One announcement, from either source. ``ref`` is the table's id for the village's, the
    policy's id for the province's."""

    source: Source
    ref: str
    text_id: str
    text_en: str | None
    starts_at: dt.datetime  # naive UTC
    ends_at: dt.datetime  # naive UTC

    def text(self, lang: str) -> str:
        """The text in ``lang`` (``id`` or ``en``): Indonesian when there is no English."""
        return self.text_en if lang == "en" and self.text_en else self.text_id

    def shows_at(self, now: dt.datetime) -> bool:
        return self.starts_at <= now < self.ends_at


class AnnouncementError(UsageError):
    """A notice that cannot be saved; ``field`` names the form field at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class TooMany(AnnouncementError):
    """The table holds :data:`MAX_ROWS` notices already."""


def clean_text(value: str | None) -> str:
    """Whitespace folded to single spaces (a pasted WhatsApp message keeps no line breaks or
    runs of spaces); control characters go with it."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in (value or "")).split())


def check(
    text_id: str, text_en: str | None, starts_at: dt.datetime, ends_at: dt.datetime
) -> tuple[str, str | None]:
    """The texts as saved; raises :class:`AnnouncementError` for what cannot be."""
    tid, ten = clean_text(text_id), clean_text(text_en) or None
    if not tid:
        raise AnnouncementError("the Indonesian text is empty", "text_id")
    if len(tid) > MAX_TEXT:
        raise AnnouncementError(f"the Indonesian text is over {MAX_TEXT} characters", "text_id")
    if ten is not None and len(ten) > MAX_TEXT:
        raise AnnouncementError(f"the English text is over {MAX_TEXT} characters", "text_en")
    if ends_at <= starts_at:
        raise AnnouncementError("the end is not after the start", "ends")
    if ends_at - starts_at > MAX_SPAN:
        raise AnnouncementError("an announcement shows at most 366 days", "ends")
    return tid, ten


def _notice(row: Announcement) -> Notice:
    return Notice(Source.VILLAGE, str(row.id), row.text_id, row.text_en, row.starts_at, row.ends_at)


def _audited(row: Announcement) -> dict[str, Any]:
    return {
        "text_id": row.text_id,
        "text_en": row.text_en,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
    }


def add(
    engine: Engine,
    text_id: str,
    text_en: str | None,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    *,
    actor: audit.Actor,
    at: dt.datetime,
) -> int:
    """A new village notice (audited); its id."""
    tid, ten = check(text_id, text_en, starts_at, ends_at)
    with audit.write(engine) as conn, Session(bind=conn) as s:
        full = s.scalar(select(Announcement.id).offset(MAX_ROWS - 1).limit(1))
        if full is not None:
            raise TooMany(
                f"there are {MAX_ROWS} announcements already: delete old ones first", "text_id"
            )
        row = Announcement(
            text_id=tid,
            text_en=ten,
            starts_at=starts_at,
            ends_at=ends_at,
            created_at=at,
            created_by=actor.name[:64],
            updated_at=at,
        )
        s.add(row)
        s.flush()
        audit.record(
            conn, actor, "announcement.add", f"announcement:{row.id}", after=_audited(row), at=at
        )
        s.commit()
        return int(row.id)


def update(
    engine: Engine,
    announcement_id: int,
    text_id: str,
    text_en: str | None,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    *,
    actor: audit.Actor,
    at: dt.datetime,
) -> None:
    tid, ten = check(text_id, text_en, starts_at, ends_at)
    with audit.write(engine) as conn, Session(bind=conn) as s:
        row = s.get(Announcement, announcement_id)
        if row is None:
            raise NotFound(f"no announcement {announcement_id}")
        before = _audited(row)
        row.text_id, row.text_en, row.starts_at, row.ends_at = tid, ten, starts_at, ends_at
        row.updated_at = at
        s.flush()
        audit.record(
            conn,
            actor,
            "announcement.edit",
            f"announcement:{announcement_id}",
            before=before,
            after=_audited(row),
            at=at,
        )
        s.commit()


def remove(engine: Engine, announcement_id: int, *, actor: audit.Actor, at: dt.datetime) -> None:
    with audit.write(engine) as conn, Session(bind=conn) as s:
        row = s.get(Announcement, announcement_id)
        if row is None:
            raise NotFound(f"no announcement {announcement_id}")
        before = _audited(row)
        s.execute(delete(Announcement).where(Announcement.id == announcement_id))
        audit.record(
            conn,
            actor,
            "announcement.delete",
            f"announcement:{announcement_id}",
            before=before,
            at=at,
        )
        s.commit()


def get(engine: Engine, announcement_id: int) -> Notice:
    with Session(engine) as s:
        row = s.get(Announcement, announcement_id)
        if row is None:
            raise NotFound(f"no announcement {announcement_id}")
        return _notice(row)


def village_notices(engine: Engine) -> list[Notice]:
    """Every village notice, the latest to end first (the console's list)."""
    with Session(engine) as s:
        rows = s.scalars(
            select(Announcement).order_by(Announcement.ends_at.desc(), Announcement.id.desc())
        ).all()
        return [_notice(r) for r in rows]


def province_notices(entries: Iterable[Mapping[str, Any]]) -> list[Notice]:
    """The policy's announcements as notices. One that does not read (a missing text, a time
    that is no time, an end before its start) is left out and logged, never shown half-read;
    the rest still show. Texts get the same limits as the console's."""
    out = []
    for entry in entries:
        try:
            ref = entry["id"]
            if not isinstance(ref, (str, int)) or isinstance(ref, bool):
                raise ValueError("id is not a string or number")
            ref = str(ref)[:MAX_PROVINCE_ID]
            starts, ends = parse_utc(entry["starts"]), parse_utc(entry["ends"])
            text_en = entry.get("text_en")
            if text_en is not None and not isinstance(text_en, str):
                raise ValueError("text_en is not a string")
            if not isinstance(entry["text_id"], str):
                raise ValueError("text_id is not a string")
            # The province may announce for longer than a village can (a whole year's
            # schedule); only the texts and the order of the times are checked.
            tid, ten = check(entry["text_id"], text_en, starts, min(ends, starts + MAX_SPAN))
        except (AnnouncementError, KeyError, TypeError, ValueError, OverflowError) as exc:
            log.warning("a province announcement was left out: %s", exc)
            continue
        out.append(Notice(Source.PROVINCE, ref, tid, ten, starts, ends))
    return out


def active(
    engine: Engine, now: dt.datetime, province: Iterable[Mapping[str, Any]] = ()
) -> list[Notice]:
    """What shows at ``now`` (naive UTC, the wall clock at render): the province's notices
    (``province``: the policy's list, passed in) then the village's, each by start, at most
    :data:`MAX_SHOWN`."""
    with engine.connect() as conn:
        village = [
            Notice(Source.VILLAGE, str(r.id), r.text_id, r.text_en, r.starts_at, r.ends_at)
            for r in conn.execute(_active_statement(), {"now": now})
        ]
    from_province = sorted(
        (n for n in province_notices(province) if n.shows_at(now)), key=lambda n: n.starts_at
    )
    return (from_province + village)[:MAX_SHOWN]


@functools.cache
def _active_statement() -> Select[int, str, str | None, dt.datetime, dt.datetime]:
    """The query of :func:`active`, built once: every splash and status page asks it (Core
    rows, no ORM session: building the statement and the objects cost a page more CPU than
    running it)."""
    a = Announcement
    return (
        select(a.id, a.text_id, a.text_en, a.starts_at, a.ends_at)
        .where(a.starts_at <= bindparam("now"), a.ends_at > bindparam("now"))
        .order_by(a.starts_at, a.id)
        .limit(MAX_SHOWN)
    )
