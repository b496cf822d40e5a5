"""The one Helix + OAuth client, used by the receiver and the aggregator alike."""

from schema.twitch.client import TwitchClient
from schema.twitch.errors import (
    InvalidAccessToken,
    InvalidRefreshToken,
    TwitchError,
    TwitchRejected,
    TwitchUnavailable,
)
from schema.twitch.models import (
    Stream,
    SubscriptionCreated,
    User,
    UserTokens,
    Validation,
)

__all__ = [
    "InvalidAccessToken",
    "InvalidRefreshToken",
    "Stream",
    "SubscriptionCreated",
    "TwitchClient",
    "TwitchError",
    "TwitchRejected",
    "TwitchUnavailable",
    "User",
    "UserTokens",
    "Validation",
]
