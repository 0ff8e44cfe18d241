"""Shoppers' privacy choices and erasure tombstones.

`privacy_choices` holds a shopper's choice (personalised when absent, "private", or "none");
`erasures` holds keyed digests of erased pseudonyms, so that nothing is logged under an erased
shopper afterwards.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "privacy_choices",
        sa.Column("shopper", sa.String(64), primary_key=True),
        sa.Column("choice", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "erasures",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("erased_at", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_table("privacy_choices")
