"""The bullmq Queue objects of one prefix, opened on first use and closed together.

Each bullmq Queue holds its own Redis connection, so the enqueuer and the admin each keep one QueueSet rather
than opening a Queue per call.
"""

from __future__ import annotations

from bullmq import Queue

from bouncer_queue.queueing.connection import Connection, as_bullmq_connection
from bouncer_queue.queueing.names import check_queue_name


class QueueSet:
    """Lazily opened bullmq Queues by name; only our queue names are accepted."""

    def __init__(self, connection: Connection, prefix: str) -> None:
        self._connection = connection
        self._prefix = prefix
        self._queues: dict[str, Queue] = {}

    def get(self, name: str) -> Queue:
        queue = self._queues.get(check_queue_name(name))
        if queue is None:
            queue = Queue(name, {"connection": as_bullmq_connection(self._connection), "prefix": self._prefix})
            self._queues[name] = queue
        return queue

    async def close(self) -> None:
        """Close every queue opened so far. Safe to call twice."""
        queues, self._queues = self._queues, {}
        for queue in queues.values():
            await queue.close()
