"""Operations building blocks: structured, redacted logs (`logs`, `redact`), Prometheus metrics (`metrics`)
and health evaluation with alert thresholds (`health`). The entry points and workers wire them in."""

from __future__ import annotations
