"""The declarative base of the device's database: every table of ``hotspot.model``,
``hotspot.model_sync`` and ``hotspot.model_operator`` hangs on it.

A module of its own so that those three import it and not each other (``hotspot.model``
imports the other two, so that importing it gives the whole schema).
"""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
