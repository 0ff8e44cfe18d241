"""Per-shopper exploration state, what each impression tells the learner, and retrain runs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("impressions") as batch:
        batch.add_column(sa.Column("z", sa.Float(), nullable=True))
        batch.add_column(sa.Column("weight", sa.Float(), nullable=True))
        # Impressions logged before the learner existed count as seen: nothing to apply.
        batch.add_column(sa.Column("feedback_applied", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("impressions") as batch:
        batch.alter_column("feedback_applied", server_default=sa.false())
    op.create_index("ix_impressions_open", "impressions", ["shopper", "feedback_applied"])

    op.create_table(
        "shopper_states",
        sa.Column("shopper", sa.String(64), primary_key=True),
        sa.Column("space", sa.String(16), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("n_feedback", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )

    op.create_table(
        "retrains",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("n_events", sa.Integer(), nullable=False),
        sa.Column("metric_before", sa.Float(), nullable=True),
        sa.Column("metric_after", sa.Float(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_retrains_started", "retrains", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_retrains_started", "retrains")
    op.drop_table("retrains")
    op.drop_table("shopper_states")
    op.drop_index("ix_impressions_open", "impressions")
    with op.batch_alter_table("impressions") as batch:
        batch.drop_column("feedback_applied")
        batch.drop_column("weight")
        batch.drop_column("z")
