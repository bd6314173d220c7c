"""Drop the foreign key from Bouncer_Queue.batch_id to Bouncer_Batches.id.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The key checked every stored address: on PostgreSQL a trigger per row, about 45 % of the COPY that stores a
list chunk, which paces the first wave of batches. Nothing needed its ON DELETE SET NULL: a batch row is deleted
only when no Bouncer_Queue row names it (storage/credits.py `recount_batch`, in the transaction that emptied it),
and a request's rows are removed with it (`discard_unsent`) only while it has no batch. Bouncer_Results keeps
its key: storing results is not on the ingest path.
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NAME = "fk_Bouncer_Queue_batch_id"


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a constraint in place (it copies the table); the others just ALTER.
    with op.batch_alter_table("Bouncer_Queue") as batch:
        batch.drop_constraint(_NAME, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("Bouncer_Queue") as batch:
        batch.create_foreign_key(_NAME, "Bouncer_Batches", ["batch_id"], ["id"], ondelete="SET NULL")
