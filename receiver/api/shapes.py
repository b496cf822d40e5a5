"""Wire shapes of the JSON API. Field names are PRODUCT.md's: the frontend depends on them.

msgspec encodes these and generates their JSON Schemas for ``/openapi.json``, so the
document and the bytes cannot drift apart. Instants are aware UTC and leave as RFC 3339
with a ``Z``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def project(shape: type[S], row: object, **given: Any) -> S:
    """``shape`` from a read-model row whose attributes carry the same names (the
    read models name their fields after the API's), plus fields ``given`` here."""
    names = [n for n in shape.__struct_fields__ if n not in given]
    return shape(**{n: getattr(row, n) for n in names}, **given)


Instant = Annotated[
    datetime,
    msgspec.Meta(
        tz=True, extra_json_schema={"pattern": "Z$", "examples": ["2024-05-04T12:00:00Z"]}
    ),
]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class Session(msgspec.Struct, frozen=True):
    """One stream; `ended_at` is null while live and `duration_seconds` runs to now."""

    id: Id
    broadcaster_id: Id
    started_at: Instant
    ended_at: Instant | None
    duration_seconds: Count
    chat_messages: Count
    unique_chatters: Count
    peak_viewers: Count | None
    avg_viewers: float | None
    hours_watched: float | None
    title: str | None
    game_name: str | None
    started_by: Literal["eventsub", "reconcile"]
    ended_by: Literal["eventsub", "reconcile"] | None
    chat_complete: bool


class SessionPage(msgspec.Struct, frozen=True):
    """Newest first; pass `next` back as `cursor` for the following page (null: done)."""

    broadcaster_id: Id
    since: Instant
    until: Instant
    sessions: list[Session]
    next: str | None


class HourRow(msgspec.Struct, frozen=True):
    """One UTC hour that saw live time, chat or a viewer sample."""

    hour: Instant
    live_seconds: Count
    chat_messages: Count
    unique_chatters: Count
    avg_viewers: float | None
    peak_viewers: Count | None
    hours_watched: float | None
    chat_complete: bool


class Hourly(msgspec.Struct, frozen=True):
    broadcaster_id: Id
    since: Instant
    until: Instant
    hours: list[HourRow]


class Summary(msgspec.Struct, frozen=True):
    """Totals over the window; `unique_chatters` is exact over the whole window."""

    broadcaster_id: Id
    since: Instant
    until: Instant
    hours_streamed: float
    sessions: Count
    chat_messages: Count
    unique_chatters: Count
    avg_viewers: float | None
    peak_viewers: Count | None
    hours_watched: float | None


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


class ViewerPeriod(msgspec.Struct, frozen=True):
    start: Instant
    chat_messages: Count
    active_hours: Count


class ViewerChannel(msgspec.Struct, frozen=True):
    broadcaster_id: Id
    login: str | None
    display_name: str | None
    chat_messages: Count
    active_hours: Count
    periods: list[ViewerPeriod]


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
