"""Alembic environment of the collector's own schema (version table
``collector_alembic_version``, so it can share a database with nothing getting confused)."""

from alembic import context
from sqlalchemy import create_engine, text

from collector.maintenance import include_name
from collector.models import Base

config = context.config
target_metadata = Base.metadata
VERSION_TABLE = "collector_alembic_version"


def _configure_and_run(conn) -> None:
    if conn.dialect.name == "postgresql":
        # Two processes starting at once (gunicorn, the CLI) migrate one after the other.
        conn.execute(text("SELECT pg_advisory_xact_lock(726217001)"))
    context.configure(
        connection=conn,
        target_metadata=target_metadata,
        render_as_batch=True,
        version_table=VERSION_TABLE,
        include_name=include_name,  # autogenerate: the monthly partitions are not models
    )
    with context.begin_transaction():
        context.run_migrations()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None, "hotspot.db.alembic_config() sets sqlalchemy.url"
    engine = create_engine(url)
    with engine.begin() as conn:
        _configure_and_run(conn)


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run()
