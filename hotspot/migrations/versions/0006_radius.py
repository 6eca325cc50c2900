"""RADIUS: sessions' accounting state, the accounting queue, the offline login cache

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "radius_session",
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("acct_session_id", sa.String(length=32), nullable=False),
        sa.Column("username", sa.String(length=253), nullable=False),
        sa.Column("calling_station", sa.String(length=64), nullable=False),
        sa.Column("classes", sa.Text(), nullable=False),
        sa.Column("interim_seconds", sa.Integer(), nullable=False),
        sa.Column("next_interim_at", sa.DateTime(), nullable=True),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["client_session.id"]),
        sa.PrimaryKeyConstraint("session_id"),
        sa.UniqueConstraint("acct_session_id"),
    )
    op.create_table(
        "radius_accounting",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("acct_session_id", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_radius_accounting_acct_session_id",
        "radius_accounting",
        ["acct_session_id"],
        unique=False,
    )
    op.create_table(
        "radius_login_cache",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("username", sa.String(length=253), nullable=False),
        sa.Column("grant", sa.Text(), nullable=False),
        sa.Column("cached_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_index(
        "ix_radius_login_cache_expires", "radius_login_cache", ["expires_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_radius_login_cache_expires", table_name="radius_login_cache")
    op.drop_table("radius_login_cache")
    op.drop_index("ix_radius_accounting_acct_session_id", table_name="radius_accounting")
    op.drop_table("radius_accounting")
    op.drop_table("radius_session")
