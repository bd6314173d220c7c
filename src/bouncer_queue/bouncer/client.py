"""BouncerClient: one async method per Bouncer v1.1 endpoint, over an `httpx.AsyncClient` it is given.

This is the adapter between the pipeline and Bouncer. It translates every httpx exception and every error
status exactly once into the tree of `bouncer/errors.py`, asks its key provider for the API key on every
request (so a rotated key is used without a restart) and reports each call to an optional `on_response`
hook as (endpoint group, HTTP status or 0) for metrics. It never logs, raises or shows the key.

Whether a failed request may have reached Bouncer (`BouncerUnavailable.request_sent`) is read from httpcore's
trace of the request: a request whose body was never completely written (a refused connection, a reset while
sending, a stale pooled keep-alive connection the server had closed) cannot have been acted on, so even a paid
create may be sent again. A transport that does not trace (test mocks) is judged by the exception class alone.
The create call has a timeout of its own (`create_timeout`), sized for a 100,000-address body, and may be
given an AsyncClient of its own (`create_http`): `make_bouncer_client` passes one that keeps no idle
connection, so a paid create never rides a pooled keep-alive connection the server may just have closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr, ValidationError

from bouncer_queue.bouncer.errors import AuthError, BouncerUnavailable, from_response
from bouncer_queue.bouncer.schemas import BatchBody, BatchInfo, VerificationResult, iter_result_rows
from bouncer_queue.storage.records import BatchEmail, ResultRow

ApiKeyProvider = Callable[[], SecretStr | None]
ResponseHook = Callable[[str, int], None]

#: Failures where the request certainly never left this process, so repeating it cannot double-charge.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Extra read time on top of a real-time verify's own `timeout`, so Bouncer answers before we give up.
_VERIFY_GRACE_SECONDS = 5.0
#: A download hands the event loop back this often while it flattens its rows.
_ROWS_BETWEEN_YIELDS = 1_000
_JSON = {"content-type": "application/json"}
_T = TypeVar("_T")


class BouncerClient:
    """The Bouncer API. `http.base_url` is the versioned API root, e.g. https://api.usebouncer.com/v1.1."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        api_key: ApiKeyProvider,
        *,
        on_response: ResponseHook | None = None,
        create_timeout: float | None = None,
        create_http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http
        self._create_http = create_http or http
        self._api_key = api_key
        self._on_response = on_response
        self._create_timeout = create_timeout

    def __repr__(self) -> str:
        return f"BouncerClient(base_url={str(self._http.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying AsyncClients (the client owns them once built by `make_bouncer_client`)."""
        await self._http.aclose()
        if self._create_http is not self._http:
            await self._create_http.aclose()

    def key_fingerprint(self) -> str | None:
        """A short hash naming the key in force, never the key itself: tells a refused key from its successor."""
        key = self._api_key()
        if key is None or not key.get_secret_value():
            return None
        return hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:16]

    async def create_batch(
        self, emails: Sequence[BatchEmail] | BatchBody, *, callback_url: str | None = None
    ) -> BatchInfo:
        """Submit addresses (or their body, encoded already) as a new async batch (this reserves credits at
        Bouncer)."""
        body = emails if isinstance(emails, BatchBody) else BatchBody.of(emails)
        params = {"callback": callback_url} if callback_url else None
        timeout = self._timeout_at_least(self._create_timeout) if self._create_timeout else None
        response = await self._request(
            "batch_create",
            "POST",
            "email/verify/batch",
            params=params,
            content=body.content,
            headers=_JSON,
            timeout=timeout,
            http=self._create_http,
        )
        return _parse(response, BatchInfo.model_validate)

    async def get_batch(self, batch_id: str, *, with_stats: bool = False) -> BatchInfo:
        """The batch's status; with `with_stats`, also its progress and per-status counts."""
        params = {"with-stats": "true"} if with_stats else None
        response = await self._request("batch_status", "GET", _batch_path(batch_id), params=params)
        return _parse(response, BatchInfo.model_validate)

    async def download(
        self, batch_id: str, *, filter: str = "all", pause: Callable[[], Awaitable[None]] | None = None
    ) -> list[ResultRow]:
        """The results of a completed batch, optionally only one status (`filter`): decoded once into rows that
        keep each result's text as Bouncer sent it (schemas.iter_result_rows). `pause` is awaited between
        chunks of rows (default: one turn of the event loop), so the caller can hold the decoding back."""
        path = f"{_batch_path(batch_id)}/download"
        response = await self._request("batch_download", "GET", path, params={"download": filter})
        status = response.status_code
        try:
            text = response.content.decode("utf-8")
        except ValueError as exc:
            raise _unreadable(status, exc) from None
        # The body's bytes go before its rows are built: held beside its text and rows, a 10,000-result body
        # (a few MB) raised the peak of `verify`, whose one download at a time sets that peak.
        del response
        rows: list[ResultRow] = []
        try:
            for row in iter_result_rows(text):
                rows.append(row)
                if len(rows) % _ROWS_BETWEEN_YIELDS == 0:
                    # Up to 100,000 rows take a while: let the process's creates and polls run meanwhile, so a
                    # download never holds up refilling a batch slot.
                    await (pause() if pause is not None else asyncio.sleep(0))
        except ValueError as exc:
            raise _unreadable(status, exc) from None
        return rows

    async def download_csv(self, batch_id: str, *, filter: str = "all") -> str:
        """The results of a completed batch as Bouncer's CSV text."""
        path = f"{_batch_path(batch_id)}/download"
        headers = {"accept": "text/csv"}
        response = await self._request("batch_download", "GET", path, params={"download": filter}, headers=headers)
        return response.text

    async def finish_batch(self, batch_id: str) -> None:
        """Stop a queued or running batch early; Bouncer refunds the addresses it has not verified."""
        await self._request("batch_finish", "POST", f"{_batch_path(batch_id)}/finish")

    async def delete_batch(self, batch_id: str) -> None:
        """Delete a finished batch and its results at Bouncer."""
        await self._request("batch_delete", "DELETE", _batch_path(batch_id))

    async def credits(self) -> int:
        """The account's credit balance (free of charge, but limited to 10 calls a minute)."""
        response = await self._request("credits", "GET", "credits")
        return _parse(response, _credits_of)

    async def verify(self, email: str, *, timeout: int | None = None) -> VerificationResult:
        """Verify one address in real time (1 credit); `timeout` is Bouncer's own limit in seconds (1-30)."""
        params: dict[str, str] = {"email": email}
        request_timeout: httpx.Timeout | None = None
        if timeout is not None:
            params["timeout"] = str(timeout)
            request_timeout = self._timeout_at_least(timeout + _VERIFY_GRACE_SECONDS)
        response = await self._request("verify", "GET", "email/verify", params=params, timeout=request_timeout)
        return _parse(response, VerificationResult.model_validate)

    def _timeout_at_least(self, read_seconds: float) -> httpx.Timeout:
        current = self._http.timeout
        read = max(current.read or 0.0, read_seconds)
        write = max(current.write or 0.0, read_seconds)
        return httpx.Timeout(connect=current.connect, read=read, write=write, pool=current.pool)

    async def _request(
        self,
        group: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> httpx.Response:
        key = self._api_key()
        if key is None or not key.get_secret_value():
            raise AuthError(401, "no Bouncer API key is configured")
        all_headers = {"x-api-key": key.get_secret_value(), **(headers or {})}
        url = _with_query(path, params)
        trace = _WriteTrace()
        try:
            response = await (http or self._http).request(
                method,
                url,
                json=json,
                content=content,
                headers=all_headers,
                timeout=timeout or httpx.USE_CLIENT_DEFAULT,
                extensions={"trace": trace},
            )
        except httpx.TransportError as exc:
            self._report(group, 0)
            raise _unavailable(group, exc, trace) from None
        self._report(group, response.status_code)
        if response.is_error:
            raise from_response(response)
        return response

    def _report(self, group: str, status: int) -> None:
        if self._on_response is not None:
            self._on_response(group, status)


def _batch_path(batch_id: str) -> str:
    return f"email/verify/batch/{quote(batch_id, safe='')}"


def _with_query(path: str, params: Mapping[str, str] | None) -> str:
    """Encode the query ourselves: every reserved character escaped, so `+` arrives as `+`, not a space."""
    if not params:
        return path
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return f"{path}?{query}"


class _WriteTrace:
    """httpcore's trace callback for one request: did sending begin, and was the whole request written?"""

    def __init__(self) -> None:
        self.started = False
        self.written = False

    async def __call__(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.started = True
        elif event.endswith("send_request_body.complete"):
            self.written = True

    def request_sent(self, exc: httpx.TransportError) -> bool:
        """False when the request provably never reached the server in full."""
        if isinstance(exc, _NOT_SENT):
            return False
        # httpcore hides a failed write and reports the read after it; only the trace tells them apart.
        return self.written if self.started else True


def _unavailable(group: str, exc: httpx.TransportError, trace: _WriteTrace) -> BouncerUnavailable:
    # The message names the exception class only: httpx texts can echo request details.
    sent = trace.request_sent(exc)
    detail = "request may have reached Bouncer" if sent else "request never reached Bouncer"
    return BouncerUnavailable(f"Bouncer {group} failed: {type(exc).__name__} ({detail})", request_sent=sent)


def _credits_of(body: Any) -> int:
    value = body["credits"] if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("no integer `credits` in the answer")
    return int(value)


def _parse(response: httpx.Response, build: Callable[[Any], _T]) -> _T:
    """Decode a success body; a broken one means Bouncer acted but its answer is lost (request_sent=True)."""
    try:
        return build(json.loads(response.content))
    except (ValueError, KeyError, ValidationError) as exc:
        raise _unreadable(response.status_code, exc) from None


def _unreadable(status: int, exc: Exception) -> BouncerUnavailable:
    return BouncerUnavailable(
        f"Bouncer sent an unreadable answer (HTTP {status}): {type(exc).__name__}", request_sent=True
    )
