"""Add Bouncer_Requests: one row per request, filled in for the requests already stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

A request used to exist only as the request_id shared by its batches. Its own row lets a re-run of the same list
find it (fingerprint), a caller's retry find it (idempotency key), and the interfaces list requests. Requests
stored before this migration get a row built from their batches.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIME = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "Bouncer_Requests",
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("delay_ms", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source", sa.String(255), nullable=True),
        sa.Column("fingerprint", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=True),
        sa.Column("total_emails", sa.Integer(), nullable=False),
        sa.Column("batch_count", sa.Integer(), nullable=False),
        sa.Column("created_at", TIME, nullable=False),
        sa.Column("updated_at", TIME, nullable=False),
        sa.Column("finished_at", TIME, nullable=True),
        sa.PrimaryKeyConstraint("request_id", name="pk_Bouncer_Requests"),
        sa.UniqueConstraint("idempotency_key", name="uq_Bouncer_Requests_idempotency_key"),
    )
    op.create_index("ix_Bouncer_Requests_fingerprint", "Bouncer_Requests", ["fingerprint"])
    op.create_index("ix_Bouncer_Requests_created_at", "Bouncer_Requests", ["created_at"])
    op.execute(
        """
        INSERT INTO "Bouncer_Requests" (request_id, user_id, priority, delay_ms, status, total_emails, batch_count,
                                        created_at, updated_at)
        SELECT request_id, MIN(user_id), MIN(priority), MIN(delay_ms),
               CASE WHEN SUM(CASE WHEN status IN ('downloaded', 'dead') THEN 0 ELSE 1 END) = 0
                    THEN 'finished' ELSE 'active' END,
               SUM(quantity), COUNT(*), MIN(created_at), MAX(updated_at)
        FROM "Bouncer_Batches" GROUP BY request_id
        """.replace('"', "`" if op.get_context().dialect.name == "mysql" else '"')
    )


def downgrade() -> None:
    op.drop_table("Bouncer_Requests")
