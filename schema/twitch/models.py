"""Typed results of the Helix and OAuth calls streamfold makes (PROTOCOL.md 3, 5, 6).

msgspec decodes Twitch's bodies straight into these frozen structs; unknown fields are
ignored and optional ones default, so a field Twitch adds never breaks a decode.
"""

from __future__ import annotations

from typing import Any

import msgspec

from schema.events import Subscription


class User(msgspec.Struct, frozen=True):
    id: str
    login: str
    display_name: str
    type: str = ""
    broadcaster_type: str = ""
    created_at: str | None = None
    profile_image_url: str = ""


class Stream(msgspec.Struct, frozen=True):
    id: str
    user_id: str
    user_login: str
    user_name: str
    started_at: str
    viewer_count: int = 0
    type: str = "live"
    title: str = ""
    game_id: str = ""
    game_name: str = ""
    language: str = ""
    thumbnail_url: str = ""


class ChannelInfo(msgspec.Struct, frozen=True):
    """Get Channel Information: the title and category as the streamer set them now
    (Get Streams lags a minute behind a stream's start)."""

    broadcaster_id: str
    broadcaster_login: str = ""
    broadcaster_name: str = ""
    title: str = ""
    game_name: str = ""


class SubscriptionCreated(msgspec.Struct, frozen=True):
    subscription: Subscription
    # True when Twitch answered 409 and the existing subscription was adopted instead.
    adopted: bool = False


class UserTokens(msgspec.Struct, frozen=True):
    access_token: str
    refresh_token: str
    # One example in Twitch's refresh docs omits expires_in; None means "unknown".
    expires_in: int | None = None
    # Twitch documents a list; one refresh example shows a plain string.
    scope: list[str] | str = msgspec.field(default_factory=list)
    token_type: str = "bearer"  # noqa: S105 - a token kind, not a secret

    @property
    def scopes(self) -> tuple[str, ...]:
        if isinstance(self.scope, str):
            return tuple(self.scope.split())
        return tuple(self.scope)


class AppToken(msgspec.Struct, frozen=True):
    access_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - a token kind, not a secret


class Validation(msgspec.Struct, frozen=True):
    client_id: str
    expires_in: int = 0
    scopes: list[str] | None = None
    # Absent for app tokens.
    login: str | None = None
    user_id: str | None = None


class Page(msgspec.Struct, frozen=True):
    """One page of a Helix list: ``data`` decoded later into the item type. EventSub's
    create and list answers also carry the subscription budget (PROTOCOL.md 3.6)."""

    data: list[Any]
    pagination: dict[str, Any] = msgspec.field(default_factory=dict)
    total_cost: int | None = None
    max_total_cost: int | None = None

    @property
    def cursor(self) -> str | None:
        cursor = self.pagination.get("cursor")
        return cursor if isinstance(cursor, str) and cursor else None


class ErrorBody(msgspec.Struct, frozen=True):
    """Helix and OAuth error bodies; OAuth's sometimes lack ``error`` (PROTOCOL.md 5.1)."""

    status: int = 0
    message: str = ""
    error: str = ""
