"""Storage: the database ledger of requests, batches, results, rate-limit calls, dead letters and health checks.

db.py builds engines from a URL (SQLite, PostgreSQL, MariaDB); tables.py declares the six Bouncer_* tables;
migrate.py runs the packaged alembic migrations. repository.py is the entry point for queries: it delegates to
one query group per concept (ingest, batches, claims, results, dead_letters, health), which share the
transactions of transactions.py (which also re-run a deadlocked one); boundary.py turns driver errors into
StorageError, or DatabaseUnavailable when the database does not answer. The pipeline sees
`Repository` and storage/records.py only.
"""
