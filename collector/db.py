"""The collector's database: engine, URL normalisation and its own Alembic migrations."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

from hotspot import db as hotspot_db

MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    url = normalize_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return hotspot_db.make_engine(url)
    # No JIT: the collector's queries are short lookups and pages; a nested loop into a year
    # of monthly partitions is costed above jit_above_cost, and compiling it took longer
    # than running it (the overview's newest health samples: 84 ms, 37 ms of it JIT, on a
    # full year; docs/sync-and-collector.md, "The full year, loaded").
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        connect_args={"options": "-c jit=off"},
    )


def migrate(engine: Engine) -> None:
    """The collector's schema, by its own migrations."""
    hotspot_db.migrate(engine, MIGRATIONS)


def open_database(url: str) -> Engine:
    engine = make_engine(url)
    migrate(engine)
    return engine
