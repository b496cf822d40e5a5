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


class TooManyRequests(StreamfoldError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.headers = {"Retry-After": str(retry_after)}


class PayloadTooLarge(StreamfoldError):
    status_code = 413
    code = "payload_too_large"


class RequestTimeout(StreamfoldError):
    status_code = 408
    code = "request_timeout"


class TooManyTokens(StreamfoldError):
    status_code = 409
    code = "too_many_tokens"


class TwitchClientMissing(StreamfoldError):
    """A call that needs Twitch while this process has no Twitch client configured."""

    status_code = 503
    code = "unavailable"


class LoginFailed(StreamfoldError):
    """A sign-in that cannot complete. A browser is on the other end, so it is answered
    as a page titled ``title`` rather than as JSON; the status varies by cause."""

    code = "login_failed"

    def __init__(self, status_code: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.title = title


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
