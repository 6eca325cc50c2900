"""Numbers, durations and times the way a villager reads them (in the page's language)."""

from __future__ import annotations

import datetime as dt
import decimal
import zoneinfo
from collections.abc import Mapping
from typing import Any

from flask_babel import get_locale, gettext, ngettext

from hotspot.config import SpeedWindow
from hotspot.timeutil import local_day, local_time, naive_utc, zone_name


def _locale() -> str:
    return str(get_locale() or "id")


# The portal's two languages written out, as Babel's CLDR data has them: (thousands, decimal)
# separators and the months' short names. Babel's locale data costs each portal worker 5.5 MB
# (4 MB for "id", 1.5 for "en") for these few symbols (issue #12, item 3); a test compares
# these with Babel's.
SEPARATORS = {"id": (".", ","), "en": (",", ".")}
MONTHS = {
    "id": ("Jan", "Feb", "Mar", "Apr", "Mei", "Jun", "Jul", "Agu", "Sep", "Okt", "Nov", "Des"),
    "en": ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
}
_STEPS = {"#,##0.#": decimal.Decimal("0.1"), "#,##0": decimal.Decimal("1")}


def format_number(value: float, pattern: str, lang: str) -> str:
    """``value`` grouped in thousands, with one optional decimal (``#,##0.#``) or none
    (``#,##0``), rounded half to even as Babel does."""
    thousands, point = SEPARATORS.get(lang, SEPARATORS["id"])
    exact = decimal.Decimal(str(value)).quantize(_STEPS[pattern], decimal.ROUND_HALF_EVEN)
    whole, _, fraction = f"{abs(exact):f}".partition(".")
    text = f"{int(whole):,}".replace(",", thousands)
    if fraction.rstrip("0"):
        text += point + fraction.rstrip("0")
    return ("-" if exact < 0 else "") + text


def format_day(day: dt.date, lang: str) -> str:
    """``7 Des 2026`` (Babel's ``d MMM yyyy``)."""
    return f"{day.day} {MONTHS.get(lang, MONTHS['id'])[day.month - 1]} {day.year}"


def number(value: float, pattern: str = "#,##0.#") -> str:
    return format_number(value, pattern, _locale())


def rupiah(price: int) -> str:
    return "Rp " + format_number(price, "#,##0", _locale())


def data(n_bytes: int | None) -> str:
    """10⁶-byte megabytes, as the allowances are configured."""
    if n_bytes is None:
        return gettext("unlimited")
    if n_bytes >= 1_000_000_000:
        return number(n_bytes / 1e9) + " GB"
    return number(max(0, n_bytes) / 1e6, "#,##0") + " MB"


def megabytes(mb: int) -> str:
    return data(mb * 1_000_000)


def speed(kbps: int) -> str:
    """Tiers are often written in multiples of 1024 kbit/s ("5120" meaning 5 Mbit/s): those
    read as whole megabits; anything else in decimal units."""
    if kbps >= 1000:
        return number(kbps / 1024 if kbps % 1024 == 0 else kbps / 1000) + " Mbps"
    return number(kbps, "#,##0") + " kbps"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return gettext("no limit")
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = []
    if days:
        parts.append(ngettext("%(num)d day", "%(num)d days", days))
    if hours:
        parts.append(ngettext("%(num)d hour", "%(num)d hours", hours))
    if minutes and not days:
        parts.append(ngettext("%(num)d minute", "%(num)d minutes", minutes))
    if not parts:
        parts.append(gettext("less than a minute"))
    return " ".join(parts)


def hours(n: int) -> str:
    return duration(n * 3600)


def clock_time(value: str | dt.datetime | None, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> str:
    """``00.00 WIB (besok)`` — a moment as a wall-clock time in the village."""
    if not value:
        return ""
    local = local_time(naive_utc(value), tz)
    today = local_day(now, tz)
    sep = "." if _locale() == "id" else ":"
    text = f"{local.hour:02d}{sep}{local.minute:02d} {local.tzname()}"
    if local.date() == today + dt.timedelta(days=1):
        text += " " + gettext("(tomorrow)")
    elif local.date() != today:
        text += " " + format_day(local.date(), _locale())
    return text


def speed_window(session: Mapping[str, Any], tz: zoneinfo.ZoneInfo, now: dt.datetime) -> str:
    """``Kecepatan bonus sampai 05.00 WIB`` while a window of the tier's speed schedule is on
    (the session's rates are then the window's), else nothing."""
    until = session.get("speed_until")
    if not until:
        return ""
    at = clock_time(until, tz, now)
    if session.get("speed_window") == "slower":
        return gettext("Reduced speed until %(time)s", time=at)
    return gettext("Boosted speed until %(time)s", time=at)


def speed_window_hours(window: SpeedWindow, tz: zoneinfo.ZoneInfo, now: dt.datetime) -> str:
    """``22.00–05.00 WIB``: a window of a speed schedule on the village's wall clock."""
    sep = "." if _locale() == "id" else ":"
    start, end = (f"{m // 60:02d}{sep}{m % 60:02d}" for m in (window.start, window.end))
    return f"{start}–{end} {zone_name(tz, now)}"


def date_time(value: str | dt.datetime | None, tz: zoneinfo.ZoneInfo) -> str:
    """``7 Des 2026 14.05 WIB`` — a date and time on the village's clock, its zone by the
    short name people use (WIB, WITA, WIT), never ``Asia/Jakarta``."""
    if not value:
        return ""
    at = naive_utc(value)
    local = local_time(at, tz)
    sep = "." if _locale() == "id" else ":"
    day = format_day(local.date(), _locale())
    return f"{day} {local.hour:02d}{sep}{local.minute:02d} {zone_name(tz, at)}"


def online_terms(minutes: int | None, days: int | None) -> str:
    """An online-time package's terms: ``1 jam online, berlaku 7 hari``."""
    return gettext(
        "%(time)s online, valid %(days)s",
        time=duration((minutes or 0) * 60),
        days=ngettext("%(num)d day", "%(num)d days", days or 0),
    )


def package_time(terms: Any) -> str:
    """The time a package or batch (an object or a dict) gives: hours from first use, or
    online time within its validity window."""
    get = terms.get if isinstance(terms, dict) else lambda key: getattr(terms, key, None)
    if get("online_minutes"):
        return online_terms(get("online_minutes"), get("valid_days"))
    return hours(int(get("hours") or 0))


def tier_name(tier: str) -> str:
    names = {"free": gettext("Free"), "premium": gettext("Premium")}
    return names.get(tier, tier.replace("-", " ").replace("_", " ").title())
