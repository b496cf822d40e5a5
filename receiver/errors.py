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


async def streamfold_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StreamfoldError)
    if wants_page(request):
        return error_page(request, exc.status_code, exc.detail, getattr(exc, "headers", None))
    return error_response(exc.status_code, exc.code, exc.detail, getattr(exc, "headers", None))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if wants_page(request) and exc.status_code in (404, 405):
        return error_page(request, exc.status_code, "There is no page at this address.")
    # Keep Starlette's headers: a 405 must say which methods are allowed (Allow).
    return error_response(exc.status_code, code, str(exc.detail), exc.headers)


async def pool_exhausted(request: Request, exc: Exception) -> Response:
    """Every pooled connection stayed busy for the pool's whole timeout: the service is
    overloaded, not broken, so a 503 the client may retry rather than a logged 500."""
    log.warning("request.database_pool_exhausted", path=request.url.path)
    return error_response(
        503,
        "database_busy",
        "the database is busy; retry shortly",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    if is_transient(exc) or isinstance(exc, RedisError):
        log.warning("request.backend_unavailable", path=request.url.path, error=type(exc).__name__)
        return error_response(
            503,
            "unavailable",
            "a backing service is unavailable; retry",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
    log.exception("request.failed", path=request.url.path)
    return error_response(500, "internal_error", "unexpected error; it has been logged")


EXCEPTION_HANDLERS = {
    StreamfoldError: streamfold_error,
    HTTPException: http_error,
    # Handled here rather than by the catch-all, which Starlette re-raises to the server's
    # error log after answering.
    PoolTimeout: pool_exhausted,
    Exception: unexpected_error,
}
