"""Client event ids are unique per source (the API key that sent the event), not globally.

Two integrations that both number their events from 1 no longer swallow each other's events.
Events stored before this revision keep the empty source.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("source", sa.String(32), nullable=False, server_default=""))
        batch.drop_constraint("uq_events_event_id", type_="unique")
        batch.create_unique_constraint("uq_events_source_event_id", ["source", "event_id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("uq_events_source_event_id", type_="unique")
        batch.create_unique_constraint("uq_events_event_id", ["event_id"])
        batch.drop_column("source")
