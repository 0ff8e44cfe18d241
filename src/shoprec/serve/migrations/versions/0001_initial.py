"""Initial schema: items, events, impressions, api_keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("item_id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("category", sa.String(100), nullable=False),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_items_category", "items", ["category"])

    op.create_table(
        "events",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("shopper", sa.String(64), nullable=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("impression_id", sa.String(32), nullable=True),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
    )
    op.create_index("ix_events_shopper_ts", "events", ["shopper", "ts", "id"])
    op.create_index("ix_events_impression", "events", ["impression_id"])
    op.create_index("ix_events_received", "events", ["received_at"])

    op.create_table(
        "impressions",
        sa.Column("id", _big_id, primary_key=True, autoincrement=True),
        sa.Column("impression_id", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("shopper", sa.String(64), nullable=True),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("propensity", sa.Float(), nullable=False),
        sa.Column("explored", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("impression_id", "position", name="uq_impressions_slot"),
    )
    op.create_index("ix_impressions_shopper", "impressions", ["shopper"])
    op.create_index("ix_impressions_created", "impressions", ["created_at"])

    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("roles", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.UniqueConstraint("name", name="uq_api_keys_name"),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_index("ix_impressions_created", "impressions")
    op.drop_index("ix_impressions_shopper", "impressions")
    op.drop_table("impressions")
    op.drop_index("ix_events_received", "events")
    op.drop_index("ix_events_impression", "events")
    op.drop_index("ix_events_shopper_ts", "events")
    op.drop_table("events")
    op.drop_index("ix_items_category", "items")
    op.drop_table("items")
