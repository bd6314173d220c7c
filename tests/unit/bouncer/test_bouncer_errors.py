"""from_response: the status code decides the class; bodies may use string statuses or not be JSON at all."""

from __future__ import annotations

import httpx
import pytest

from bouncer_queue.bouncer import (
    AuthError,
    BadRequest,
    BatchNotFound,
    BatchStateError,
    BouncerAPIError,
    BouncerError,
    Forbidden,
    InsufficientCredits,
    RateLimited,
    ServerError,
    from_response,
)
from bouncer_queue.errors import VerifierError


def _response(status: int, message: str, *, string_status: bool = False) -> httpx.Response:
    body = {"status": str(status) if string_status else status, "error": "x", "message": message}
    return httpx.Response(status, json=body)


@pytest.mark.parametrize(
    ("status", "message", "cls", "retryable"),
    [
        (400, "too many emails", BadRequest, False),
        (400, "batch has to be running to finish", BatchStateError, False),
        (400, "batch is not completed yet", BatchStateError, False),
        (405, "batch cannot be deleted in current state", BatchStateError, False),
        (401, "user not found", AuthError, False),
        (402, "12 credits left", InsufficientCredits, False),
        (403, "forbidden", Forbidden, False),
        (404, "request abc does not exist", BatchNotFound, False),
        (429, "too many requests", RateLimited, True),
        (500, "boom", ServerError, True),
        (503, "unavailable", ServerError, True),
        (504, "gateway", ServerError, True),
        (418, "teapot", BouncerAPIError, False),
    ],
)
@pytest.mark.parametrize("string_status", [False, True])
def test_status_to_class(status: int, message: str, cls: type, retryable: bool, string_status: bool) -> None:
    error = from_response(_response(status, message, string_status=string_status))
    assert type(error) is cls
    assert (error.status_code, error.message, error.retryable) == (status, message, retryable)
    assert isinstance(error, BouncerError) and isinstance(error, VerifierError)


@pytest.mark.parametrize(
    ("message", "left"), [("12 credits left", 12), ("0 credits left", 0), ("not enough credits, 2 required", None)]
)
def test_credits_left_best_effort(message: str, left: int | None) -> None:
    error = from_response(_response(402, message))
    assert isinstance(error, InsufficientCredits) and error.credits_left == left


def test_non_json_and_empty_bodies() -> None:
    assert from_response(httpx.Response(503, text="upstream down")).message == "upstream down"
    assert from_response(httpx.Response(503)).message == "Service Unavailable"
    assert from_response(httpx.Response(400, json=["odd"])).message == '["odd"]'
