"""Settings: every knob of bouncer-queue, read from the environment (or a `.env` file) in one place.

Settings are built in the entry points (CLI, tests, the Python API's caller) and passed down; nothing in the
package builds them at import time. Names follow the seed (REDIS_HOST, BOUNCER_API_KEY, BATCH_SIZE, ...), so an
environment written for the Node original keeps working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BOUNCER_URL = "https://api.usebouncer.com/v1.1"


class QueueTuning:
    """Concurrency and worker limiter of one queue (limiter_max 0 means no limiter)."""

    __slots__ = ("concurrency", "limiter_duration_ms", "limiter_max")

    def __init__(self, concurrency: int, limiter_max: int, limiter_duration_ms: int) -> None:
        self.concurrency = concurrency
        self.limiter_max = limiter_max
        self.limiter_duration_ms = limiter_duration_ms


class Settings(BaseSettings):
    """The whole configuration. Every field has an environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False, populate_by_name=True)

    environment: str = "development"
    state_dir: Path = Field(default=Path(".bouncer-queue"), alias="BOUNCER_QUEUE_STATE_DIR")

    # Bouncer API
    bouncer_api_key: SecretStr | None = None
    #: A file holding the key; read on every request (and on SIGHUP), so a rotated key needs no restart.
    bouncer_api_key_file: Path | None = None
    bouncer_api_base_url: str = DEFAULT_BOUNCER_URL
    bouncer_timeout_seconds: float = Field(default=30.0, gt=0)
    bouncer_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    bouncer_max_connections: int = Field(default=20, ge=1)
    #: Read and write timeout of the batch-create call alone: a 100,000-address body is about 4 MB to upload,
    #: and Bouncer answers only once it has stored and counted it. Every other call uses the one above.
    bouncer_create_timeout_seconds: float = Field(default=120.0, gt=0)
    #: The base URL at which Bouncer can reach this system's callback route (e.g. https://bq.example.com); with
    #: it, every create carries `?callback=<this>/bouncer/callback/<token>`, which resolves a lost create answer.
    bouncer_callback_url: str | None = None
    #: How long a batch whose create answer was lost waits for Bouncer's callback before it is dead-lettered.
    callback_wait_seconds: float = Field(default=86_400.0, gt=0)
    #: The workers' HTTP listener for Bouncer callbacks (it may be the same port as METRICS_PORT).
    callback_port: int | None = None
    callback_host: str = "127.0.0.1"

    # Redis (the seed's names, or one URL; rediss:// for TLS)
    redis_url: SecretStr | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_password: SecretStr | None = None
    #: REDIS_URL (or REDIS_HOST) names one node of a Redis Cluster; QUEUE_PREFIX's hash tag keeps us in one slot.
    redis_cluster: bool = False
    #: bullmq key prefix. The braces are a Redis Cluster hash tag: every key of every queue lands in one slot.
    queue_prefix: str = "{bouncer}"

    # Database
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1)
    #: Passed to the driver as-is for PostgreSQL/MySQL TLS: "require", "verify-full", ... (asyncpg's `ssl`).
    database_ssl: str | None = None

    # Batching (the seed's names)
    batch_size: int = Field(default=10_000, ge=1, le=100_000)
    max_concurrent_batches: int = Field(default=15, ge=1, le=25)
    #: Answers reused from earlier requests when verified within this many days (credits/cache.py); 0 = off.
    result_cache_days: float = Field(default=30.0, ge=0)

    # Shared Bouncer rate limits: a sliding window per budget, shared by every worker process.
    rate_limit_max: int = Field(default=180, ge=1)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    rate_limit_create_max: int = Field(default=60, ge=1)
    rate_limit_credits_max: int = Field(default=10, ge=1)

    # Queues (seed, "Queue Types"). The shared limiter above is the one authority on call rates, so the per-queue
    # bullmq limiters are off (0) by default; the seed's figures (10, 50, 20 per minute) can still be set.
    # Create jobs: one per batch slot (the seed had 5), so a wave of 15 creates reads its addresses at once
    # instead of in three rounds; the slots and the shared limiter, not this, bound how many reach Bouncer.
    email_verification_concurrency: int = Field(default=15, ge=1)
    email_verification_limit: int = Field(default=0, ge=0)
    batch_status_concurrency: int = Field(default=10, ge=1)
    batch_status_limit: int = Field(default=0, ge=0)
    batch_download_concurrency: int = Field(default=3, ge=1)
    batch_download_limit: int = Field(default=0, ge=0)
    cleanup_concurrency: int = Field(default=1, ge=1)
    #: The queues a `workers` process serves, comma-separated; empty: all four (`workers --queues`).
    worker_queues: str = ""
    #: The window of the per-queue worker limiters above, in ms (the seed: per minute).
    queue_limit_duration_ms: int = Field(default=60_000, ge=1)
    #: Rate-limited workers wake this often to look again (bullmq pitfall 2: default 5 s is too long).
    worker_drain_delay_seconds: int = Field(default=1, ge=1, le=5)

    # Retries
    job_attempts: int = Field(default=5, ge=1)
    job_backoff_ms: int = Field(default=2_000, ge=1)
    max_batch_retries: int = Field(default=3, ge=0)

    # Scheduling
    #: The longest wait between two status polls of a batch (the ceiling of the adaptive poll).
    poll_interval_seconds: float = Field(default=15.0, gt=0)
    #: The shortest: the first poll after a create, and the floor when a batch is about to finish.
    poll_min_interval_seconds: float = Field(default=2.0, gt=0)
    health_check_interval_seconds: float = Field(default=60.0, gt=0)
    #: How often a running workers process re-offers the ledger's unfinished work and the job schedulers to
    #: Redis, so a Redis that lost its data (a restart without persistence) heals without a restart of ours.
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    cleanup_interval_seconds: float = Field(default=300.0, gt=0)
    rate_limit_retention_seconds: float = Field(default=3_600.0, gt=0)
    metrics_retention_days: float = Field(default=7.0, gt=0)
    keep_completed_jobs: int = Field(default=1_000, ge=0)
    keep_failed_jobs: int = Field(default=5_000, ge=0)

    # Health and alerts (seed, "Alerting Thresholds")
    alert_backlog: int = Field(default=1_000, ge=0)
    alert_failed_jobs: int = Field(default=50, ge=0)
    alert_rate_limit_utilization: float = Field(default=0.9, ge=0, le=1)
    alert_memory_mb: float = Field(default=1_024.0, gt=0)

    # Operations
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    #: How often the workers process refreshes its queue, rate-limit and batch gauges.
    metrics_refresh_seconds: float = Field(default=5.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    # HTTP API and dashboard (`bouncer-queue serve`)
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: Largest upload POST /api/v1/requests accepts, in bytes (also the largest JSON body).
    api_max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    #: Comma-separated origins allowed to call the API from a browser; empty means CORS stays off.
    api_cors_origins: str = ""
    #: Mark the dashboard's login cookie Secure (set when the API is served over HTTPS).
    api_cookie_secure: bool = False

    # Webhooks (Standard Webhooks signatures)
    #: The signing secret, `whsec_` + base64 as Standard Webhooks libraries expect; webhooks need one.
    webhook_secret: SecretStr | None = None
    #: Allow webhook targets on loopback, private and link-local addresses (off: a guard against SSRF).
    webhook_allow_private: bool = False
    webhook_max_attempts: int = Field(default=8, ge=1)
    #: Wait before the first retry; each next retry waits twice as long.
    webhook_backoff_seconds: float = Field(default=5.0, gt=0)
    #: How often the workers look for finished requests and due webhook messages.
    webhook_interval_seconds: float = Field(default=5.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)

    # Production: liveness, read replicas
    #: A read replica of DATABASE_URL for the monitoring reads (stats, health, progress, export, history).
    database_read_url: SecretStr | None = None
    #: How often each workers process renews its heartbeat in Redis (`workers list`, `health`, /livez).
    heartbeat_interval_seconds: float = Field(default=10.0, gt=0)
    #: A heartbeat not renewed for this long has expired: that process counts as dead.
    heartbeat_ttl_seconds: float = Field(default=30.0, gt=0)

    @field_validator("bouncer_api_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("bouncer_callback_url")
    @classmethod
    def _callback_base(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("bouncer_api_key", "redis_password")
    @classmethod
    def _reject_placeholder(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip() in {"", "your_bouncer_api_key", "changeme"}:
            raise ValueError("is empty or a placeholder from the example configuration")
        return value

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: str) -> str:
        known = ("email-verification", "batch-status-check", "batch-download", "cleanup-tasks")
        unknown = [q.strip() for q in value.split(",") if q.strip() and q.strip() not in known]
        if unknown:
            raise ValueError(f"unknown queue {', '.join(unknown)}; the worker queues are {', '.join(known)}")
        return value

    @model_validator(mode="after")
    def _heartbeat_outlives_interval(self) -> Settings:
        if self.heartbeat_ttl_seconds <= self.heartbeat_interval_seconds:
            raise ValueError("HEARTBEAT_TTL_SECONDS must be longer than HEARTBEAT_INTERVAL_SECONDS")
        return self

    @model_validator(mode="after")
    def _absolute_state_dir(self) -> Settings:
        self.state_dir = self.state_dir.expanduser().resolve()
        return self

    # Derived values: computed here once so every consumer agrees.

    def effective_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file in the state directory (the embedded default)."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.state_dir / 'bouncer-queue.db'}"

    def read_database_url(self) -> str:
        """DATABASE_READ_URL (a replica for monitoring reads), or the database itself."""
        if self.database_read_url is not None:
            return self.database_read_url.get_secret_value()
        return self.effective_database_url()

    def external_redis_url(self) -> str | None:
        """REDIS_URL, or one built from REDIS_HOST/PORT/PASSWORD; None means: use the embedded Valkey."""
        if self.redis_url is not None:
            return self.redis_url.get_secret_value()
        if self.redis_host:
            auth = ""
            if self.redis_password is not None:
                auth = f":{quote(self.redis_password.get_secret_value(), safe='')}@"
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return None

    def api_key(self) -> SecretStr | None:
        """The API key: the key file wins over BOUNCER_API_KEY, so rotating the file rotates the key."""
        if self.bouncer_api_key_file is not None:
            text = self.bouncer_api_key_file.read_text(encoding="utf-8").strip()
            return SecretStr(text) if text else None
        return self.bouncer_api_key

    def cors_origins(self) -> list[str]:
        """API_CORS_ORIGINS as a list; empty when CORS is off."""
        return [origin.strip() for origin in self.api_cors_origins.split(",") if origin.strip()]

    def queue_tuning(self) -> dict[str, QueueTuning]:
        """Concurrency and limiter of each queue this process serves (WORKER_QUEUES; all four by default)."""
        served = {q.strip() for q in self.worker_queues.split(",") if q.strip()}
        return {q: t for q, t in self._all_queue_tuning().items() if not served or q in served}

    def _all_queue_tuning(self) -> dict[str, QueueTuning]:
        per_min = self.queue_limit_duration_ms
        return {
            "email-verification": QueueTuning(
                self.email_verification_concurrency, self.email_verification_limit, per_min
            ),
            "batch-status-check": QueueTuning(self.batch_status_concurrency, self.batch_status_limit, per_min),
            "batch-download": QueueTuning(self.batch_download_concurrency, self.batch_download_limit, per_min),
            "cleanup-tasks": QueueTuning(self.cleanup_concurrency, 0, per_min),
        }

    def secrets(self) -> list[str]:
        """Every secret value in force, for the log redactor."""
        values = [self.bouncer_api_key, self.redis_password, self.redis_url, self.database_url, self.webhook_secret]
        values.append(self.database_read_url)
        found = [v.get_secret_value() for v in values if v is not None]
        return [s for s in found if s]
