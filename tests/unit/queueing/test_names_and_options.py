"""Pure parts of the queue layer: names, connection options, job and worker options. No sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from bouncer_queue.config import QueueTuning, Settings
from bouncer_queue.domain import Priority
from bouncer_queue.errors import UnknownQueueError
from bouncer_queue.pipeline.ports import JobSpec
from bouncer_queue.queueing.connection import mask_url, options_from_url, target_from_url
from bouncer_queue.queueing.embedded import socket_path_for
from bouncer_queue.queueing.enqueue import BullmqEnqueuer
from bouncer_queue.queueing.names import ALL_QUEUES, QUEUE_OF_JOB, WORK_QUEUES, check_queue_name, queue_for_job
from bouncer_queue.queueing.worker import node_client_name, worker_options


def test_queue_names_match_the_settings_tuning() -> None:
    assert set(Settings(_env_file=None).queue_tuning()) == set(WORK_QUEUES)
    assert ALL_QUEUES[-1] == "dead-letter"
    assert set(QUEUE_OF_JOB.values()) == set(WORK_QUEUES)
    assert queue_for_job("health-check") == "cleanup-tasks"


def test_check_queue_name_lists_the_valid_names() -> None:
    assert check_queue_name("batch-download") == "batch-download"
    with pytest.raises(UnknownQueueError, match="email-verification, batch-status-check"):
        check_queue_name("batch_download")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h:6379/0", {"host": "h", "port": 6379, "db": 0, "socket_timeout": 30.0}),
        ("redis://h/0?socket_timeout=3", {"host": "h", "db": 0, "socket_timeout": 15.0}),
        ("rediss://:pw@h:6380/1", {"host": "h", "port": 6380, "db": 1, "password": "pw", "ssl": True}),
        ("unix:///run/r.sock?db=2", {"unix_socket_path": "/run/r.sock", "db": 2, "socket_timeout": 30.0}),
    ],
)
def test_options_from_url_always_carry_a_safe_socket_timeout(url: str, expected: dict[str, object]) -> None:
    options = options_from_url(url)
    assert expected.items() <= options.items()
    assert options["socket_timeout"] >= 15
    assert "decode_responses" not in options  # bullmq sets it itself; passing it too is a TypeError


def test_passwords_are_masked() -> None:
    assert mask_url("rediss://user:p%40ss@h:6380/0") == "rediss://user:***@h:6380/0"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    target = target_from_url("redis://:hunter2@h:6379/0")
    assert "hunter2" not in f"{target} {target!r}"
    assert target.open_client().connection_pool.connection_kwargs["decode_responses"] is True


def test_socket_path_stays_short(tmp_path: Path) -> None:
    assert socket_path_for(tmp_path) == tmp_path / "valkey.sock"
    long_dir = tmp_path / ("x" * 120)
    short = socket_path_for(long_dir)
    assert len(str(short)) <= 100 and short == socket_path_for(long_dir)


def test_every_job_gets_priority_retries_and_retention() -> None:
    enqueuer = BullmqEnqueuer({}, "{p}", attempts=5, backoff_ms=2000, keep_completed=10, keep_failed=20)
    options = enqueuer.job_options(JobSpec("batch-download", "download-batch-results", {}))
    assert options == {
        "priority": int(Priority.NORMAL),
        "attempts": 5,
        "backoff": {"type": "exponential", "delay": 2000},
        "removeOnComplete": 10,
        "removeOnFail": 20,
    }
    spec = JobSpec("batch-download", "x", {}, Priority.CRITICAL, delay_ms=500, job_id="j", extra={"attempts": 1})
    assert enqueuer.job_options(spec) | {} == options | {"priority": 1, "delay": 500, "jobId": "j", "attempts": 1}


def test_worker_options_limit_and_drain_delay() -> None:
    limited = worker_options({}, "{p}", QueueTuning(5, 10, 60_000), drain_delay_seconds=5)
    assert limited["limiter"] == {"max": 10, "duration": 60_000}
    assert limited["drainDelay"] == 2 and limited["autorun"] is False and limited["concurrency"] == 5
    unlimited = worker_options({}, "{p}", QueueTuning(1, 0, 60_000), drain_delay_seconds=1)
    assert "limiter" not in unlimited and unlimited["drainDelay"] == 1
    assert unlimited["metrics"] == {"maxDataPoints": 20_160} and "name" not in unlimited
    assert worker_options({}, "{p}", QueueTuning(1, 0, 1), drain_delay_seconds=1, name="h:1")["name"] == "h:1"


def test_connections_are_named_as_node_bullmq_names_them() -> None:
    # Node: `${prefix}:${Buffer.from(queueName).toString('base64')}` + `:w:${name}` (redis-queue-backend.ts).
    assert (
        node_client_name("{bouncer}", "email-verification", "host:42") == "{bouncer}:ZW1haWwtdmVyaWZpY2F0aW9u:w:host:42"
    )
    assert node_client_name("bull", "q", None) == "bull:cQ=="
