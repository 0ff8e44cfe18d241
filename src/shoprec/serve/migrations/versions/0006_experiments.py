"""Online A/B experiments: the experiments table, and each impression's experiment and variant.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("experiment_id", sa.String(64), primary_key=True),
        sa.Column("variants", sa.Text(), nullable=False),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("stopped_at", sa.BigInteger(), nullable=True),
    )
    with op.batch_alter_table("impressions") as batch:
        batch.add_column(sa.Column("experiment", sa.String(64), nullable=True))
        batch.add_column(sa.Column("variant", sa.String(32), nullable=True))
        batch.create_index("ix_impressions_experiment", ["experiment", "variant"])


def downgrade() -> None:
    with op.batch_alter_table("impressions") as batch:
        batch.drop_index("ix_impressions_experiment")
        batch.drop_column("variant")
        batch.drop_column("experiment")
    op.drop_table("experiments")
