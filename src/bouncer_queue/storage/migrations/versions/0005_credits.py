"""Credits: each result's source, billable counts, the cache's index, and whole addresses in Bouncer_Queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30

Bouncer_Results.source tells who answered (`bouncer`, or `cache` for an answer copied from an earlier request);
every stored result came from Bouncer, hence the default. Bouncer_Batches.billable and Bouncer_Requests.billable
hold what each costs in credits (0 for rows stored before: they are submitted or finished). The index on
Bouncer_Results.email lets the result cache find an address's earlier answers. Bouncer_Queue.email becomes TEXT
so that a cell of any length is stored (VARCHAR(254) made PostgreSQL refuse a whole list for one long cell).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("Bouncer_Results", sa.Column("source", sa.String(16), nullable=False, server_default="bouncer"))
    op.create_index("ix_Bouncer_Results_email", "Bouncer_Results", ["email"])
    op.add_column("Bouncer_Batches", sa.Column("billable", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("Bouncer_Requests", sa.Column("billable", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("Bouncer_Queue") as batch:
        batch.alter_column("email", type_=sa.Text(), existing_type=sa.String(254), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("Bouncer_Queue") as batch:
        batch.alter_column("email", type_=sa.String(254), existing_type=sa.Text(), existing_nullable=False)
    op.drop_column("Bouncer_Requests", "billable")
    op.drop_column("Bouncer_Batches", "billable")
    op.drop_index("ix_Bouncer_Results_email", "Bouncer_Results")
    op.drop_column("Bouncer_Results", "source")
