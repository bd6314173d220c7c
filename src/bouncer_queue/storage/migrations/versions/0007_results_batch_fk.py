"""Drop the foreign key from Bouncer_Results.batch_id to Bouncer_Batches.id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

As 0006 did for Bouncer_Queue: on PostgreSQL the key is a trigger per stored result, which measured 40-50 % of
inserting a batch's results. Storing the last wave's downloads is what remains after Bouncer's last batch ends, so
that time is added to every list. Nothing needed its ON DELETE SET NULL: a batch row is deleted only when no
Bouncer_Queue row names it (storage/credits.py `recount_batch`, before anything of it was sent, so before any
result), and a request's results go with the request (`discard_unsent`).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_NAME = "fk_Bouncer_Results_batch_id"


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a constraint in place (it copies the table); the others just ALTER.
    with op.batch_alter_table("Bouncer_Results") as batch:
        batch.drop_constraint(_NAME, type_="foreignkey")
    if op.get_bind().dialect.name in ("mysql", "mariadb"):
        # MariaDB made an index of the same name for the key (no other index starts with batch_id): it served
        # only the key's checks. Creating the key again (downgrade) makes it again.
        op.drop_index(_NAME, table_name="Bouncer_Results")


def downgrade() -> None:
    with op.batch_alter_table("Bouncer_Results") as batch:
        batch.create_foreign_key(_NAME, "Bouncer_Batches", ["batch_id"], ["id"], ondelete="SET NULL")
