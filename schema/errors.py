"""One error family: every refusal the service makes has a status and a snake_case code."""

from __future__ import annotations


class StreamfoldError(Exception):
    status_code = 500
    code = "internal_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ConfigurationError(StreamfoldError):
    code = "configuration_error"


class BadRequest(StreamfoldError):
    status_code = 400
    code = "bad_request"


class InvalidParameter(StreamfoldError):
    status_code = 422
    code = "invalid_parameter"

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(f"{parameter}: {detail}")
        self.parameter = parameter


class NotAuthenticated(StreamfoldError):
    status_code = 401
    code = "not_authenticated"


class Forbidden(StreamfoldError):
    status_code = 403
    code = "forbidden"


class NotFound(StreamfoldError):
    status_code = 404
    code = "not_found"


class PayloadTooLarge(StreamfoldError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(StreamfoldError):
    status_code = 408
    code = "request_timeout"


class InvalidSignature(StreamfoldError):
    status_code = 403
    code = "invalid_signature"


class StaleMessage(StreamfoldError):
    status_code = 400
    code = "stale_message"


class MalformedHeaders(StreamfoldError):
    status_code = 400
    code = "malformed_headers"


class QueueUnavailable(StreamfoldError):
    status_code = 503
    code = "queue_unavailable"


class DatabaseUnavailable(StreamfoldError):
    status_code = 503
    code = "database_unavailable"
