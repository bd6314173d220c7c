"""Add Bouncer_Api_Tokens (hashed HTTP API tokens) and Bouncer_Webhook_Deliveries (the webhook delivery log).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

The HTTP API authenticates with tokens of which only the SHA-256 is stored, and tells callers that a request
finished through signed webhooks, each message and its attempts recorded.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "Bouncer_Api_Tokens",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("last_used_at", TIME, nullable=True),
        sa.Column("revoked_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_Bouncer_Api_Tokens"),
        sa.UniqueConstraint("token_hash", name="uq_Bouncer_Api_Tokens_token_hash"),
    )
    op.create_table(
        "Bouncer_Webhook_Deliveries",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(96), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("next_attempt_at", TIME, nullable=False),
        sa.Column("delivered_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_Bouncer_Webhook_Deliveries"),
        sa.UniqueConstraint("message_id", name="uq_Bouncer_Webhook_Deliveries_message_id"),
    )
    op.create_index(
        "ix_Bouncer_Webhook_Deliveries_status_next_attempt_at",
        "Bouncer_Webhook_Deliveries",
        ["status", "next_attempt_at"],
    )


def downgrade() -> None:
    op.drop_table("Bouncer_Webhook_Deliveries")
    op.drop_table("Bouncer_Api_Tokens")
