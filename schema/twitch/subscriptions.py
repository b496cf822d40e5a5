"""Which EventSub subscriptions we want, and making Twitch's list match.

What we want is derived from the database (tracked channels: connected or followed; the
bot account); what Twitch has is its list. ``sync_subscriptions`` makes the two agree;
the OAuth callback, follows, ``streamfold subscriptions sync`` and reconciliation call
it. The records themselves are written by ``schema/twitch/subscription_records.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.events import LIVE_STATUSES, Subscription
from schema.settings import Settings
from schema.twitch.client import TwitchClient
from schema.twitch.errors import TwitchRejected
from schema.twitch.subscription_records import (
    expect,
    forget,
    record_listed,
    record_many,
)
from schema.twitch.tokens import connected_bot_id

ONLINE, OFFLINE, CHAT, REVOKE = (
    "stream.online",
    "stream.offline",
    "channel.chat.message",
    "user.authorization.revoke",
)


@dataclass(frozen=True, slots=True)
class Wanted:
    type: str
    condition: tuple[tuple[str, str], ...]  # sorted, so equal conditions compare equal

    @classmethod
    def of(cls, sub_type: str, condition: dict[str, str]) -> Wanted:
        return cls(sub_type, tuple(sorted(condition.items())))

    @property
    def condition_dict(self) -> dict[str, str]:
        return dict(self.condition)

    @property
    def broadcaster_id(self) -> str | None:
        return self.condition_dict.get("broadcaster_user_id")

    def describe(self) -> str:
        return f"{self.type} {' '.join(f'{k}={v}' for k, v in self.condition)}"


def channel_subscriptions(broadcaster_id: str, bot_id: str | None) -> list[Wanted]:
    """A connected channel's set (PROTOCOL.md 3.7); chat only once a bot is connected."""
    wanted = [
        Wanted.of(ONLINE, {"broadcaster_user_id": broadcaster_id}),
        Wanted.of(OFFLINE, {"broadcaster_user_id": broadcaster_id}),
    ]
    if bot_id is not None:
        wanted.append(Wanted.of(CHAT, {"broadcaster_user_id": broadcaster_id, "user_id": bot_id}))
    return wanted


def app_subscriptions(client_id: str) -> list[Wanted]:
    return [Wanted.of(REVOKE, {"client_id": client_id})]


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Chat subscriptions not asked for: "<broadcaster id> (<reason>)", see CHAT_BLOCKED_REASONS.
    blocked: list[str] = field(default_factory=list)
    kept: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.adopted or self.deleted)

    def counts(self) -> dict[str, int]:
        return {
            "created": len(self.created),
            "adopted": len(self.adopted),
            "deleted": len(self.deleted),
            "failed": len(self.failed),
            "blocked": len(self.blocked),
            "kept": self.kept,
        }

    def lines(self) -> list[str]:
        out = [f"created  {d}" for d in self.created]
        out += [f"adopted  {d}" for d in self.adopted]
        out += [f"deleted  {d}" for d in self.deleted]
        out += [f"FAILED   {d}" for d in self.failed]
        out += [f"blocked  {CHAT} broadcaster_user_id={b}" for b in self.blocked]
        out += [f"note     {n}" for n in self.notes]
        out.append(
            f"{len(self.created)} created, {len(self.adopted)} adopted, "
            f"{len(self.deleted)} deleted, {self.kept} unchanged, {len(self.failed)} failed"
        )
        return out


# Tracked channels: connected by their streamer, or followed by someone.
_TRACKED = """
    SELECT broadcaster_id, connected, chat_blocked, chat_revocation FROM channels
    WHERE (connected OR EXISTS (SELECT 1 FROM follows f
                                WHERE f.broadcaster_id = channels.broadcaster_id))
"""
_SYNC_LOCK = "SELECT {}(hashtext('streamfold'), hashtext('subscription-sync'))"


async def lock_sync(session: AsyncSession, *, broadcaster_id: str | None) -> None:
    """Until the transaction ends: a sync of every channel excludes every other sync; a
    sync of one channel (a follow, a connect) excludes only the whole-list sync and, by
    the channel's row lock, other syncs of that channel. Without it the whole-list sync
    could read the follows, then list a subscription a follow just created, and delete
    it as an orphan. Followers take the same locks in the same order (``follows.py``)."""
    if broadcaster_id is None:
        await session.execute(text(_SYNC_LOCK.format("pg_advisory_xact_lock")))
        return
    await lock_sync_shared(session)
    await session.execute(
        text("SELECT 1 FROM channels WHERE broadcaster_id = :b FOR UPDATE"), {"b": broadcaster_id}
    )


async def lock_sync_shared(session: AsyncSession) -> None:
    """The shared side of ``lock_sync``, taken before any channel row lock."""
    await session.execute(text(_SYNC_LOCK.format("pg_advisory_xact_lock_shared")))


@dataclass(frozen=True, slots=True)
class Desired:
    """What Twitch should have, and what is left out on purpose (with why)."""

    wanted: list[Wanted]
    notes: list[str]
    blocked: list[str]


async def desired_subscriptions(
    session: AsyncSession, settings: Settings, *, broadcaster_id: str | None = None
) -> Desired:
    """What Twitch should have, from the database; plus notes on what is missing why.
    A channel whose chat is blocked (``channels.chat_blocked``) gets no chat subscription:
    Twitch would refuse it on every sync until a person acts."""
    bot_id = await connected_bot_id(session, settings.bot_user_id)
    query = _TRACKED
    params: dict[str, str] = {}
    if broadcaster_id is not None:
        query += " AND broadcaster_id = :b"
        params["b"] = broadcaster_id
    tracked = (await session.execute(text(query + " ORDER BY 1"), params)).all()
    # A followed channel nobody connected gets online/offline only: chat needs consent.
    channels = [c for c in tracked if c.connected]
    followed_only = [c.broadcaster_id for c in tracked if not c.connected]
    wanted = (
        [] if broadcaster_id is not None else app_subscriptions(settings.twitch_client_id or "")
    )
    blocked = []
    for channel in channels:
        if channel.chat_blocked and bot_id is not None:
            blocked.append(f"{channel.broadcaster_id} ({channel.chat_revocation})")
        wanted += channel_subscriptions(
            channel.broadcaster_id, None if channel.chat_blocked else bot_id
        )
    for followed in followed_only:
        wanted += channel_subscriptions(followed, None)
    notes = []
    if bot_id is None and channels:
        notes.append(
            f"no bot account connected: chat is not subscribed for {len(channels)} channel(s);"
            " sign in once at /auth/twitch/login?role=bot with the bot account"
        )
    if blocked:
        notes.append(
            f"chat is not re-created for {len(blocked)} channel(s) until a person acts (the"
            " bot was banned or lost moderator status there); once resolved, the streamer"
            " connects again or run `streamfold subscriptions sync --retry-blocked`"
        )
    return Desired(wanted, notes, blocked)


async def unblock_chat(session: AsyncSession, *, broadcaster_id: str | None = None) -> int:
    """Let the sync try blocked chat subscriptions again; how many channels were blocked."""
    query = "UPDATE channels SET chat_blocked = false WHERE chat_blocked"
    params: dict[str, str] = {}
    if broadcaster_id is not None:
        query += " AND broadcaster_id = :b"
        params["b"] = broadcaster_id
    return len((await session.execute(text(query + " RETURNING 1"), params)).all())


async def sync_subscriptions(
    session: AsyncSession,
    twitch: TwitchClient,
    settings: Settings,
    *,
    broadcaster_id: str | None = None,
    retry_blocked: bool = False,
) -> SyncReport:
    """Make Twitch's subscriptions match ours (PROTOCOL.md 3.7): keep live ones, adopt on
    409, replace failed or revoked ones, create missing ones, delete orphans. With
    ``broadcaster_id``, only that channel's subscriptions are looked at. Blocked chat
    subscriptions are left out, unless ``retry_blocked`` (an operator's decision).

    Never deletes everything to start over: events would be lost meanwhile. Twitch being
    unavailable raises ``TwitchUnavailable``; a refused create is reported, not raised.
    """
    await lock_sync(session, broadcaster_id=broadcaster_id)
    if retry_blocked:
        await unblock_chat(session, broadcaster_id=broadcaster_id)
    desired = await desired_subscriptions(session, settings, broadcaster_id=broadcaster_id)
    wanted = desired.wanted
    report = SyncReport(notes=desired.notes, blocked=desired.blocked)
    listed = await twitch.list_subscriptions(user_id=broadcaster_id)
    current = [s.id for s in listed]
    kept: list[Subscription] = []
    callback = settings.callback_url
    # Subscriptions with another callback belong to another deployment of the same client
    # id (staging, a changed PUBLIC_BASE_URL): not ours to delete.
    ours: dict[Wanted, list[Subscription]] = {}
    for sub in listed:
        if sub.transport.method == "webhook" and sub.transport.callback == callback:
            ours.setdefault(Wanted.of(sub.type, sub.condition), []).append(sub)
    for item in wanted:
        existing = ours.pop(item, [])
        live = sorted(
            (s for s in existing if s.status in LIVE_STATUSES), key=lambda s: s.status != "enabled"
        )
        keep = live[0] if live else None
        await _delete(session, twitch, [s for s in existing if s is not keep], report)
        if keep is not None:
            report.kept += 1
            kept.append(keep)
            continue
        if (new_id := await _create(session, twitch, settings, item, report)) is not None:
            current.append(new_id)
    await _delete(session, twitch, [s for subs in ours.values() for s in subs], report)
    await record_many(session, kept)
    await _forget_unlisted(session, current, broadcaster_id)
    return report


async def _create(
    session: AsyncSession,
    twitch: TwitchClient,
    settings: Settings,
    item: Wanted,
    report: SyncReport,
) -> str | None:
    secret = settings.eventsub_secret.get_secret_value() if settings.eventsub_secret else ""
    await expect(twitch.redis, twitch.settings.queue_name, item.type, item.condition_dict)
    try:
        result = await twitch.create_subscription(
            item.type, item.condition_dict, callback=settings.callback_url, secret=secret
        )
    except TwitchRejected as exc:
        report.failed.append(f"{item.describe()}: Twitch {exc.twitch_status} {exc.twitch_message}")
        return None
    await record_listed(session, result.subscription)
    (report.adopted if result.adopted else report.created).append(item.describe())
    return result.subscription.id


async def _delete(
    session: AsyncSession, twitch: TwitchClient, subs: list[Subscription], report: SyncReport
) -> None:
    for sub in subs:
        await twitch.delete_subscription(sub.id)  # 404: already gone, fine
        report.deleted.append(f"{Wanted.of(sub.type, sub.condition).describe()} ({sub.status})")
    await forget(session, [s.id for s in subs])


async def _forget_unlisted(
    session: AsyncSession, listed_ids: list[str], broadcaster_id: str | None
) -> None:
    """Rows for subscriptions Twitch no longer lists (deleted elsewhere, or long gone)."""
    query = "DELETE FROM eventsub_subscriptions WHERE NOT (id = ANY(:ids))"
    params: dict[str, object] = {"ids": listed_ids}
    if broadcaster_id is not None:
        query += " AND broadcaster_id = :b"
        params["b"] = broadcaster_id
    await session.execute(text(query), params)


async def ensure_app_subscriptions(
    session: AsyncSession, twitch: TwitchClient, settings: Settings
) -> SyncReport:
    """The app-wide subscriptions (``user.authorization.revoke``), created if missing."""
    report = SyncReport()
    for item in app_subscriptions(settings.twitch_client_id or ""):
        listed = await twitch.list_subscriptions(type=item.type)
        live = [
            s
            for s in listed
            if Wanted.of(s.type, s.condition) == item
            and s.status in LIVE_STATUSES
            and s.transport.callback == settings.callback_url
        ]
        if live:
            report.kept += 1
            await record_listed(session, live[0])
        else:
            await _create(session, twitch, settings, item, report)
    return report
