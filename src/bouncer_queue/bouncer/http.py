"""Builders for the Bouncer HTTP stack: the configured `httpx.AsyncClient` and the `BouncerClient` over it.

Called from the composition root (bootstrap, CLI, tests) only; timeouts, pool limits and keep-alive are set
explicitly here rather than inherited from httpx defaults, so a slow Bouncer cannot pile up connections.
"""

from __future__ import annotations

import httpx

from bouncer_queue.bouncer.client import ApiKeyProvider, BouncerClient, ResponseHook
from bouncer_queue.config import Settings

#: Idle keep-alive connections are closed after this long, before a load balancer silently drops them.
_KEEPALIVE_EXPIRY_SECONDS = 30.0


def make_http_client(
    base_url: str,
    *,
    timeout: float,
    connect_timeout: float,
    max_connections: int,
    transport: httpx.AsyncBaseTransport | None = None,
    keep_alive: bool = True,
) -> httpx.AsyncClient:
    """An AsyncClient for the Bouncer API root (e.g. https://api.usebouncer.com/v1.1); the caller closes it.

    Without `keep_alive`, every request opens a connection of its own and closes it after the answer."""
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=httpx.Timeout(timeout, connect=connect_timeout, pool=connect_timeout),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections if keep_alive else 0,
            keepalive_expiry=_KEEPALIVE_EXPIRY_SECONDS,
        ),
        transport=transport,
        follow_redirects=False,
        headers={"accept": "application/json"},
    )


def make_bouncer_client(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    on_response: ResponseHook | None = None,
    api_key: ApiKeyProvider | None = None,
) -> BouncerClient:
    """A BouncerClient from Settings; close it with `await client.aclose()` (it owns its AsyncClient).

    `api_key` defaults to `settings.api_key`; pass an `ops.keys.ApiKeySource` to rotate keys while running.
    """

    def client(keep_alive: bool) -> httpx.AsyncClient:
        return make_http_client(
            settings.bouncer_api_base_url,
            timeout=settings.bouncer_timeout_seconds,
            connect_timeout=settings.bouncer_connect_timeout_seconds,
            max_connections=settings.bouncer_max_connections,
            transport=transport,
            keep_alive=keep_alive,
        )

    # Creates (paid, at most 60 a minute) each get a fresh connection: a stale pooled one could fail them in a
    # way that leaves their outcome unknown. The one-off handshake is nothing beside a 10,000-address body.
    create_http = client(keep_alive=False) if transport is None else None
    http = client(keep_alive=True)
    return BouncerClient(
        http,
        api_key or settings.api_key,
        on_response=on_response,
        create_timeout=settings.bouncer_create_timeout_seconds,
        create_http=create_http,
    )
