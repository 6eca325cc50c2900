"""Column types shared by the product's databases (the device's and the collector's)."""

from __future__ import annotations

import enum

from sqlalchemy import Enum


def str_enum(values: type[enum.StrEnum], *, length: int) -> Enum:
    """A column holding one of ``values``: Python sees the enum member, the database keeps the
    member's *value* in a ``VARCHAR(length)`` — the same strings as when these columns were
    plain strings, so an existing database needs no change. No native enum type and no CHECK
    constraint: a new member needs no migration. Writing a string that is not a member's value
    raises ``LookupError`` before it reaches the database."""
    return Enum(
        values,
        native_enum=False,
        create_constraint=False,
        validate_strings=True,
        length=length,
        values_callable=lambda cls: [m.value for m in cls],
    )
