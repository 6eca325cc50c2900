"""The Alembic migrations build exactly the schema the models describe: after ``upgrade
head`` on an empty database, autogenerate (``compare_metadata``: tables, columns, types,
nullability, server defaults, indexes, unique constraints, foreign keys) finds nothing to do.

A difference means a model was changed without a migration (or the other way round); the fix
is a new migration, never an edit of an old one. The device's database is SQLite only; the
collector's runs on SQLite for a trial and on PostgreSQL in the province, so it is checked on
both (PostgreSQL from the ``postgres`` fixture; skipped, saying why, without its binaries).
"""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData

from collector import db as collector_db
from collector.maintenance import include_name
from collector.models import Base as CollectorBase
from hotspot import db as hotspot_db
from hotspot.model import Base as DeviceBase

COLLECTOR_VERSION_TABLE = "collector_alembic_version"  # collector/migrations/env.py


def differences(engine: Engine, metadata: MetaData, version_table: str = "alembic_version") -> list:
    opts = {"compare_type": True, "compare_server_default": True, "version_table": version_table}
    if version_table == COLLECTOR_VERSION_TABLE:
        opts["include_name"] = include_name  # the monthly partitions are not models
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts=opts), metadata)


def test_device_migrations_match_the_models_on_sqlite(tmp_path):
    engine = hotspot_db.open_database(f"sqlite:///{tmp_path / 'hotspot.db'}")
    try:
        assert differences(engine, DeviceBase.metadata) == []
    finally:
        engine.dispose()


def test_collector_migrations_match_the_models_on_sqlite(tmp_path):
    engine = collector_db.open_database(f"sqlite:///{tmp_path / 'collector.db'}")
    try:
        assert differences(engine, CollectorBase.metadata, COLLECTOR_VERSION_TABLE) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_collector_migrations_match_the_models_on_postgresql(pg_url):
    engine = collector_db.open_database(pg_url)
    try:
        assert engine.dialect.name == "postgresql"
        assert differences(engine, CollectorBase.metadata, COLLECTOR_VERSION_TABLE) == []
    finally:
        engine.dispose()


def test_a_model_change_without_a_migration_is_seen(tmp_path):
    """The check above can fail: a column the migrations do not have is reported."""
    from sqlalchemy import Column, Integer

    engine = collector_db.open_database(f"sqlite:///{tmp_path / 'collector.db'}")
    metadata = MetaData()
    for table in CollectorBase.metadata.sorted_tables:
        table.to_metadata(metadata)
    metadata.tables["gateway"].append_column(Column("not_migrated", Integer))
    try:
        diff = differences(engine, metadata, COLLECTOR_VERSION_TABLE)
    finally:
        engine.dispose()
    assert [(d[0], d[2], d[3].name) for d in diff] == [("add_column", "gateway", "not_migrated")]
