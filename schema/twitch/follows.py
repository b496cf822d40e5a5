"""Follows: who wants to know when a channel goes live, and keeping the channel tracked.

A channel is tracked while its streamer connected it or anyone follows it. Followers are
signed-in users (``/api/follows``) and outside groups over Redis (``stream.follow``, a
guild id). The first follower of a channel nobody connected makes its stream.online and
stream.offline subscriptions exist (an app token suffices); the last one leaving deletes
them. Each change runs in the caller's transaction under the subscription sync's shared
lock and the channel's row lock (``subscriptions.lock_sync``), so concurrent follows and
unfollows from any number of processes serialise per channel and the one that changes the
follower count from or to zero sees the settled count. A Twitch call that fails leaves
the follow rows as they are; the next sync (reconciliation) completes the subscriptions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.errors import NotFound, StreamfoldError
from schema.logs import get_logger
from schema.settings import Settings
from schema.twitch.client import TwitchClient, budget_key
from schema.twitch.errors import TwitchError
from schema.twitch.subscriptions import lock_sync_shared, sync_subscriptions

log = get_logger("schema.twitch.follows")

FollowerKind = Literal["user", "guild"]


class FollowLimitReached(StreamfoldError):
    status_code = 422
    code = "follow_limit_reached"


class SubscriptionBudgetSpent(StreamfoldError):
    """Twitch's max_total_cost is reached: a new channel cannot get subscriptions."""

    status_code = 503
    code = "subscription_budget_spent"


@dataclass(frozen=True, slots=True)
class Follower:
    kind: FollowerKind
    id: str

    def describe(self) -> str:
        return f"{self.kind}:{self.id}"


@dataclass(frozen=True, slots=True)
class ChannelName:
    broadcaster_id: str
    login: str
    display_name: str


@dataclass(frozen=True, slots=True)
class FollowResult:
    broadcaster_id: str
    login: str | None
    display_name: str | None
    following: bool
    changed: bool  # False: it already was so (idempotent)
    tracked: bool
    # True when Twitch could not be reached: the next sync creates or deletes them.
    subscriptions_pending: bool = False


_ENSURE_CHANNEL = text("""
    INSERT INTO channels (broadcaster_id, login, display_name) VALUES (:b, :login, :name)
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = excluded.login, display_name = excluded.display_name
        WHERE channels.login IS DISTINCT FROM excluded.login
           OR channels.display_name IS DISTINCT FROM excluded.display_name
""")
_CHANNEL = text("""SELECT connected, login, display_name FROM channels
                   WHERE broadcaster_id = :b FOR UPDATE""")
_FOLLOWERS = text("SELECT count(*) FROM follows WHERE broadcaster_id = :b")
_FOLLOWING = text("""SELECT count(*) FROM follows
                     WHERE follower_kind = :kind AND follower_id = :id""")
_ADD = text("""
    INSERT INTO follows (broadcaster_id, follower_kind, follower_id) VALUES (:b, :kind, :id)
    ON CONFLICT DO NOTHING RETURNING 1
""")
_REMOVE = text("""DELETE FROM follows
                  WHERE broadcaster_id = :b AND follower_kind = :kind AND follower_id = :id
                  RETURNING 1""")


async def resolve_channel(
    twitch: TwitchClient, *, broadcaster_id: str | None = None, login: str | None = None
) -> ChannelName:
    """The channel named by id or login, from Get Users; unknown → ``NotFound``."""
    users = await twitch.get_users(
        ids=[broadcaster_id] if broadcaster_id else [], logins=[login.lower()] if login else []
    )
    if not users:
        raise NotFound(f"no Twitch channel {broadcaster_id or login}")
    user = users[0]
    return ChannelName(user.id, user.login, user.display_name)


async def budget_left(twitch: TwitchClient) -> int | None:
    """What Twitch last said is left of the subscription budget (None: not known yet)."""
    if twitch.redis is None:
        return None
    try:
        figures = await twitch.redis.hgetall(budget_key(twitch.settings))  # type: ignore[misc]
    except Exception:
        return None
    try:
        return int(figures[b"max_total_cost"]) - int(figures[b"total_cost"])
    except (KeyError, ValueError):
        return None


async def follow(
    session: AsyncSession,
    twitch: TwitchClient,
    settings: Settings,
    channel: ChannelName,
    follower: Follower,
) -> FollowResult:
    """``follower`` follows ``channel`` (idempotent)."""
    await lock_sync_shared(session)
    await session.execute(
        _ENSURE_CHANNEL,
        {"b": channel.broadcaster_id, "login": channel.login, "name": channel.display_name},
    )
    row = (await session.execute(_CHANNEL, {"b": channel.broadcaster_id})).one()
    followers = int(await session.scalar(_FOLLOWERS, {"b": channel.broadcaster_id}) or 0)
    params = {"b": channel.broadcaster_id, "kind": follower.kind, "id": follower.id}
    already = await session.scalar(
        text("""SELECT 1 FROM follows WHERE broadcaster_id = :b AND follower_kind = :kind
                AND follower_id = :id"""),
        params,
    )
    if already:
        return FollowResult(channel.broadcaster_id, row.login, row.display_name, True, False, True)
    if follower.kind == "user":
        count = int(await session.scalar(_FOLLOWING, params) or 0)
        if count >= settings.follow_limit:
            raise FollowLimitReached(
                f"you follow {count} channels, the most allowed; unfollow one first"
            )
    first = followers == 0 and not row.connected
    if first and (left := await budget_left(twitch)) is not None and left < 2:
        raise SubscriptionBudgetSpent(
            "Twitch's EventSub budget (max_total_cost) is spent: a channel nobody connected"
            " cannot be tracked now; it frees up as channels are unfollowed"
        )
    await session.execute(_ADD, params)
    pending = await _sync(session, twitch, settings, channel.broadcaster_id) if first else False
    log.info(
        "follow.added",
        broadcaster_id=channel.broadcaster_id,
        follower=follower.describe(),
        first=first,
        subscriptions_pending=pending,
    )
    return FollowResult(
        channel.broadcaster_id, row.login, row.display_name, True, True, True, pending
    )


async def unfollow(
    session: AsyncSession,
    twitch: TwitchClient,
    settings: Settings,
    broadcaster_id: str,
    follower: Follower,
) -> FollowResult:
    """``follower`` stops following (idempotent); the last one out deletes the
    subscriptions, unless the streamer connected the channel."""
    await lock_sync_shared(session)
    row = (await session.execute(_CHANNEL, {"b": broadcaster_id})).one_or_none()
    if row is None:
        return FollowResult(broadcaster_id, None, None, False, False, False)
    params = {"b": broadcaster_id, "kind": follower.kind, "id": follower.id}
    removed = (await session.execute(_REMOVE, params)).first() is not None
    left = int(await session.scalar(_FOLLOWERS, {"b": broadcaster_id}) or 0)
    tracked = bool(row.connected) or left > 0
    pending = False
    if removed and not tracked:
        pending = await _sync(session, twitch, settings, broadcaster_id)
    if removed:
        log.info(
            "follow.removed",
            broadcaster_id=broadcaster_id,
            follower=follower.describe(),
            last=not tracked,
            subscriptions_pending=pending,
        )
    return FollowResult(
        broadcaster_id, row.login, row.display_name, False, removed, tracked, pending
    )


async def _sync(
    session: AsyncSession, twitch: TwitchClient, settings: Settings, broadcaster_id: str
) -> bool:
    """Make the channel's subscriptions match its tracked state; True if Twitch could not
    be reached or refused (the follow stands; the next sync retries)."""
    try:
        report = await sync_subscriptions(session, twitch, settings, broadcaster_id=broadcaster_id)
    except TwitchError as exc:
        log.warning("follow.subscriptions_pending", broadcaster_id=broadcaster_id, error=exc.code)
        return True
    if report.failed:
        log.warning(
            "follow.subscriptions_refused", broadcaster_id=broadcaster_id, failed=report.failed
        )
        return True
    return False


async def followed_by(session: AsyncSession, follower: Follower) -> list[FollowResult]:
    rows = await session.execute(
        text("""SELECT f.broadcaster_id, c.login, c.display_name FROM follows f
                JOIN channels c USING (broadcaster_id)
                WHERE f.follower_kind = :kind AND f.follower_id = :id
                ORDER BY c.login, f.broadcaster_id"""),
        {"kind": follower.kind, "id": follower.id},
    )
    return [
        FollowResult(r.broadcaster_id, r.login, r.display_name, True, False, True) for r in rows
    ]
