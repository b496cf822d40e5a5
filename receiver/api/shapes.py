"""Wire shapes of the JSON API. Field names are PRODUCT.md's: the frontend depends on them.

The shapes of the figures themselves (a session, an hour, a summary, a viewer's channel)
are what ``receiver/reads`` returns; these wrap them in pages and windows, and answer
the rest of the API. msgspec encodes these and generates their JSON Schemas for
``/openapi.json``, so the document and the bytes cannot drift apart. Instants are aware
UTC and leave as RFC 3339 with a ``Z``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from receiver.reads.fields import Count, Id, Instant
from receiver.reads.queries import HourRow, Session
from receiver.reads.viewer_stats import ViewerChannel


class SessionPage(msgspec.Struct, frozen=True):
    """Newest first; pass `next` back as `cursor` for the following page (null: done)."""

    broadcaster_id: Id
    since: Instant
    until: Instant
    sessions: list[Session]
    next: str | None


class Hourly(msgspec.Struct, frozen=True):
    broadcaster_id: Id
    since: Instant
    until: Instant
    hours: list[HourRow]


class ChannelRef(msgspec.Struct, frozen=True):
    """`chat_blocked_reason`: while chat is not collected until a person acts, Twitch's
    revocation reason (`chat_user_banned`: the bot is banned in this chat,
    `moderator_removed`); connecting the channel again retries. Null otherwise."""

    broadcaster_id: Id
    login: str | None
    display_name: str | None
    connected: bool
    chat_blocked_reason: str | None = None


class Me(msgspec.Struct, frozen=True):
    """Who is asking. `roles`: viewer always, streamer with a channel, operator if
    configured; `channels` are those this identity may read."""

    user_id: Id
    login: str
    display_name: str | None
    roles: list[Literal["viewer", "streamer", "operator"]]
    channels: list[ChannelRef]
    reads_all_channels: bool
    authenticated_by: Literal["session", "api_token"]


class Disconnected(msgspec.Struct, frozen=True):
    broadcaster_id: Id
    connected: bool
    purged: bool


class ViewerStats(msgspec.Struct, frozen=True):
    """The caller's own chat per channel and UTC hour or day; the window is widened to
    whole hours, the grain of the aggregates."""

    user_id: Id
    since: Instant
    until: Instant
    granularity: Literal["hour", "day"]
    chat_messages: Count
    channels: list[ViewerChannel]


class TokenRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


class Token(msgspec.Struct, frozen=True):
    id: Annotated[int, msgspec.Meta(ge=1)]
    name: str
    created_at: Instant
    last_used_at: Instant | None
    revoked_at: Instant | None


class CreatedToken(msgspec.Struct, frozen=True):
    """`token` is shown this once; only its SHA-256 is kept."""

    id: Annotated[int, msgspec.Meta(ge=1)]
    name: str
    created_at: Instant
    token: Annotated[str, msgspec.Meta(pattern="^sfk_")]


class TokenList(msgspec.Struct, frozen=True):
    tokens: list[Token]


class Error(msgspec.Struct, frozen=True):
    error: str
    detail: str


class FollowRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Name the channel by `broadcaster_id` or by `login` (one of the two)."""

    broadcaster_id: Annotated[str, msgspec.Meta(pattern="^[0-9]{1,64}$")] | None = None
    login: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_]{1,25}$")] | None = None


class Followed(msgspec.Struct, frozen=True):
    """A channel I follow. `subscriptions_pending`: Twitch could not be reached just now;
    the next reconciliation creates (or deletes) its subscriptions."""

    broadcaster_id: Id
    login: str | None
    display_name: str | None
    following: bool
    subscriptions_pending: bool = False


class FollowList(msgspec.Struct, frozen=True):
    follows: list[Followed]
    limit: Count
