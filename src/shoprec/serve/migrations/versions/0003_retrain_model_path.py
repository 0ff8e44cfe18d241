"""The model file a retrain run wrote, so that every worker process can follow it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("retrains") as batch:
        batch.add_column(sa.Column("model_path", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retrains") as batch:
        batch.drop_column("model_path")
