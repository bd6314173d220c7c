"""One router per resource of the JSON API: requests, queues, dead letters, health (and tokens, read-only)."""
