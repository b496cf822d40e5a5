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
    Subscription,
    SubscriptionCreated,
    User,
    UserTokens,
    Validation,
)

__all__ = [
    "InvalidAccessToken",
    "InvalidRefreshToken",
    "Stream",
    "Subscription",
    "SubscriptionCreated",
    "TwitchClient",
    "TwitchError",
    "TwitchRejected",
    "TwitchUnavailable",
    "User",
    "UserTokens",
    "Validation",
]
