"""Operations building blocks: structured, redacted logs (`logs`, `redact`), Prometheus metrics (`metrics`),
health rules and probing (`health`), worker heartbeats (`heartbeat`), the workers' HTTP listener (`listener`)
and its operations routes (`probes`), and API key rotation (`keys`). The entry points and workers wire them in."""

from __future__ import annotations
