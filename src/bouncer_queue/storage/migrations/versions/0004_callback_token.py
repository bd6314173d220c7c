"""Add Bouncer_Batches.callback_token: the digest of the secret in the batch's Bouncer callback URL.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30

With BOUNCER_CALLBACK_URL set, every create call carries a callback URL holding a fresh random token; the column
keeps only its SHA-256 digest (a database reader cannot forge a callback), set when the create is claimed and
cleared by the first callback that presents it. A unique index finds the batch of a callback.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("Bouncer_Batches", sa.Column("callback_token", sa.String(64), nullable=True))
    op.create_index("ix_Bouncer_Batches_callback_token", "Bouncer_Batches", ["callback_token"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_Bouncer_Batches_callback_token", table_name="Bouncer_Batches")
    with op.batch_alter_table("Bouncer_Batches") as batch:
        batch.drop_column("callback_token")
