"""Every error leaves as ``{"error": code, "detail": text}`` JSON with its status."""

from __future__ import annotations

from collections.abc import Mapping

from redis.exceptions import RedisError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from receiver.pages.errors import error_page, wants_page
from schema.db import is_transient
from schema.errors import StreamfoldError
from schema.logs import get_logger

log = get_logger("receiver.errors")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}
# Seconds a client is asked to wait when the database or Redis cannot take it now.
RETRY_AFTER_SECONDS = "2"


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def refusal(exc: StreamfoldError) -> JSONResponse:
    return error_response(exc.status_code, exc.code, exc.detail, getattr(exc, "headers", None))


async def streamfold_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamfoldError)
    if wants_page(request):
        return error_page(request, exc.status_code, exc.detail, getattr(exc, "headers", None))
    return refusal(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if wants_page(request) and exc.status_code in (404, 405):
        return error_page(request, exc.status_code, "There is no page at this address.")
    return _http_refusal(exc)


def _http_refusal(exc: HTTPException) -> JSONResponse:
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    # Keep Starlette's headers: a 405 must say which methods are allowed (Allow).
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def pool_exhausted(request: Request, exc: Exception) -> Response:
    return _pool_busy(request.url.path)


def _pool_busy(path: str) -> JSONResponse:
    """Every pooled connection stayed busy for the pool's whole timeout: the service is
    overloaded, not broken, so a 503 the client may retry rather than a logged 500."""
    log.warning("request.database_pool_exhausted", path=path)
    return error_response(
        503,
        "database_busy",
        "the database is busy; retry shortly",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    return _failure(exc, request.url.path)


def json_answer(exc: Exception, path: str) -> JSONResponse:
    """What ``EXCEPTION_HANDLERS`` answer, always as JSON, for a route served in front
    of Starlette's exception middleware (the webhook, ``receiver/webhook.py``)."""
    if isinstance(exc, StreamfoldError):
        return refusal(exc)
    if isinstance(exc, HTTPException):
        return _http_refusal(exc)
    if isinstance(exc, PoolTimeout):
        return _pool_busy(path)
    return _failure(exc, path)


def _failure(exc: Exception, path: str) -> JSONResponse:
    """The answer to an exception nobody expected: a 503 when a backing service is
    down, else a logged 500."""
    if is_transient(exc) or isinstance(exc, RedisError):
        log.warning("request.backend_unavailable", path=path, error=type(exc).__name__)
        return error_response(
            503,
            "unavailable",
            "a backing service is unavailable; retry",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.exception("request.failed", path=path)
    return error_response(500, "internal_error", "unexpected error; it has been logged")


EXCEPTION_HANDLERS = {
    StreamfoldError: streamfold_error,
    HTTPException: http_error,
    # Handled here rather than by the catch-all, which Starlette re-raises to the server's
    # error log after answering.
    PoolTimeout: pool_exhausted,
    Exception: unexpected_error,
}
