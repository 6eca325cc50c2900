"""collector: the HTTPS certificate a gateway reports installed (issue #15, item 4), beside
the one the collector issued (c0007).

Revision ID: c0008
Revises: c0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "c0008"
down_revision = "c0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("health_sample") as batch:
        batch.add_column(sa.Column("cert_name", sa.String(length=253), nullable=True))
        batch.add_column(sa.Column("cert_not_after", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("health_sample") as batch:
        batch.drop_column("cert_not_after")
        batch.drop_column("cert_name")
