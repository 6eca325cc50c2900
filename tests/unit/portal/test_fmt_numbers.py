"""The portal's numbers and dates, written without Babel's locale data (issue #12, item 3:
5.5 MB of every worker), are Babel's to the character in both languages."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from babel.dates import format_date
from babel.numbers import format_decimal

from portal.fmt import format_day, format_number

EDGES = [0, 0.05, 0.15, 0.25, 1.25, 2.5, 3.5, -3.5, 999.95, 1234.5, 1234567.85, 5, 10**12]


@pytest.mark.parametrize("lang", ["id", "en"])
@pytest.mark.parametrize("pattern", ["#,##0.#", "#,##0"])
def test_numbers_are_babels(lang, pattern):
    rnd = random.Random(12)
    values = EDGES + [rnd.random() * 10 ** rnd.randint(0, 10) for _ in range(500)]
    for value in values:
        assert format_number(value, pattern, lang) == format_decimal(
            value, format=pattern, locale=lang
        ), value


@pytest.mark.parametrize("lang", ["id", "en"])
def test_days_are_babels(lang):
    for n in range(0, 400, 3):
        day = dt.date(2026, 1, 1) + dt.timedelta(days=n)
        assert format_day(day, lang) == format_date(day, "d MMM yyyy", locale=lang)
