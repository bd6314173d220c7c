"""Alembic migrations of the bouncer-queue tables; run them through bouncer_queue.storage.migrate."""
