"""What can go wrong talking to Twitch, named for what the caller should do next."""

from __future__ import annotations

from schema.errors import StreamfoldError


class TwitchError(StreamfoldError):
    status_code = 502
    code = "twitch_error"


class TwitchUnavailable(TwitchError):
    """5xx, network failure or rate limit still hit after the bounded retries: transient,
    try again later."""

    status_code = 503
    code = "twitch_unavailable"


class TwitchRejected(TwitchError):
    """Twitch refused the request (4xx): retrying the same request will not help."""

    code = "twitch_rejected"

    def __init__(self, status: int, message: str, *, endpoint: str) -> None:
        super().__init__(f"{endpoint}: Twitch answered {status}: {message}")
        self.twitch_status = status
        self.twitch_message = message


class InvalidRefreshToken(TwitchError):
    """The user's refresh token is dead (password change, app disconnected): the product
    rule is to disconnect, never to retry."""

    code = "invalid_refresh_token"


class InvalidAccessToken(TwitchError):
    """``/validate`` answered 401: the access token no longer works (refresh it)."""

    code = "invalid_access_token"
