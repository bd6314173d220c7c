"""The queue layer: the only package that imports bullmq.

names (queue/job names) · connection (which Redis: configured or the embedded Valkey) · embedded (the Valkey
launcher) · enqueue (BullmqEnqueuer, the pipeline's Enqueuer port) · worker (workers, outcome translation,
shutdown) · signals (SIGINT/SIGTERM to a stop callback) · admin (counts, pause/resume, retry/clean, schedulers).
camelCase bullmq options are built in these modules and never leave them.
"""

from __future__ import annotations
