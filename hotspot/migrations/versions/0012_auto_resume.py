"""Auto-resume: a package may let its vouchers' devices back in without the portal
(issue #13, item 2)

Revision ID: 0012
Revises: 0011 (online time)
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("package") as batch:
        batch.add_column(
            sa.Column("auto_resume", sa.Boolean(), nullable=False, server_default=sa.text("1"))
        )


def downgrade() -> None:
    with op.batch_alter_table("package") as batch:
        batch.drop_column("auto_resume")
