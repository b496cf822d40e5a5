"""The public routes: live now, search, a channel's history, category statistics.

Public on Twitch is public here (who is live, viewer counts, titles), so these need no
sign-in; chat figures stay the channel's: a history lists them only to a caller who may
read the channel (``Identity.may_read_channel``), and otherwise leaves them out rather
than showing zeros. Lists have a CSV variant (``?format=csv``), formula-safe.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import msgspec
from starlette.responses import Response

from receiver.api import params, render
from receiver.api.endpoint import Call
from receiver.reads import discovery, queries
from receiver.reads.fields import Count, Id, Instant
from schema.errors import NotFound

CSV_PAGE = 500


class ChannelRef(msgspec.Struct, frozen=True):
    id: Id
    login: str | None
    display_name: str | None
    profile_image_url: str | None


class CategoryRef(msgspec.Struct, frozen=True):
    id: str
    name: str | None


class LiveStream(msgspec.Struct, frozen=True):
    """A live stream as the newest poll saw it; `thumbnail_url` keeps Twitch's
    `{width}x{height}` template."""

    channel: ChannelRef
    stream_id: Id
    title: str | None
    category: CategoryRef | None
    language: str | None
    viewers: Count
    started_at: Instant | None
    uptime_seconds: Count | None
    thumbnail_url: str | None
    sampled_at: Instant


class LivePage(msgspec.Struct, frozen=True):
    """Most viewers first; pass `next` back as `cursor` for the following page."""

    streams: list[LiveStream]
    next: str | None


class LiveRow(msgspec.Struct, frozen=True):
    """A live stream as one CSV row."""

    channel_id: str
    login: str
    display_name: str
    profile_image_url: str | None
    stream_id: str
    title: str | None
    category_id: str | None
    category_name: str | None
    language: str | None
    viewers: int
    started_at: Instant | None
    uptime_seconds: int | None
    thumbnail_url: str | None


class ChannelFound(msgspec.Struct, frozen=True):
    id: Id
    login: str
    display_name: str
    profile_image_url: str | None
    broadcaster_type: str | None
    live: bool
    viewers: Count | None
    hours_watched_30d: float


class SearchResults(msgspec.Struct, frozen=True):
    """Live channels first, then by hours watched over the last 30 days."""

    q: str
    channels: list[ChannelFound]


class HistoryStream(msgspec.Struct, frozen=True, omit_defaults=True):
    """A stream of the channel. For a tracked channel, its session (`ended_at` null while
    live); for a collected one, what its snapshots saw: `last_seen_at` is the last
    snapshot that saw it live, and `ended_at` is null (leaving Twitch's top list says
    nothing about going offline). Chat figures only for callers who may read the
    channel."""

    id: Id
    started_at: Instant
    ended_at: Instant | None
    last_seen_at: Instant | None
    peak_viewers: Count | None
    avg_viewers: float | None
    hours_watched: float | None
    title: str | None
    game_name: str | None
    chat_messages: Count | msgspec.UnsetType = msgspec.UNSET
    unique_chatters: Count | msgspec.UnsetType = msgspec.UNSET
    chat_complete: bool | msgspec.UnsetType = msgspec.UNSET


class HistoryRow(msgspec.Struct, frozen=True):
    """A stream of the channel as one CSV row (public figures only)."""

    id: str
    started_at: Instant
    ended_at: Instant | None
    last_seen_at: Instant | None
    peak_viewers: int | None
    avg_viewers: float | None
    hours_watched: float | None
    title: str | None
    game_name: str | None


class Snapshot(msgspec.Struct, frozen=True):
    sampled_at: Instant
    stream_id: Id
    viewer_count: Count
    title: str | None
    game_id: str | None
    game_name: str | None


class History(msgspec.Struct, frozen=True, omit_defaults=True):
    """Newest first, cursor-paginated; `snapshots` (oldest first) with detail=snapshots."""

    channel: ChannelRef
    tracked: bool
    since: Instant
    until: Instant
    streams: list[HistoryStream]
    next: str | None
    snapshots: list[Snapshot] | msgspec.UnsetType = msgspec.UNSET


class CategoryStats(msgspec.Struct, frozen=True):
    """Per-channel figures summed over the category: `avg_viewers` is hours watched over
    hours streamed, `peak_viewers` the largest one channel had."""

    id: str
    name: str | None
    hours_streamed: float
    hours_watched: float
    avg_viewers: float
    peak_viewers: Count
    channels: Count


class CategoryTable(msgspec.Struct, frozen=True):
    """Whole UTC days that overlap the window, by hours watched."""

    since: Instant
    until: Instant
    categories: list[CategoryStats]


# -- live now -----------------------------------------------------------------------------


def _live(row: discovery.LiveRow, now: datetime) -> LiveStream:
    uptime = max(0, int((now - row.started_at).total_seconds())) if row.started_at else None
    category = CategoryRef(row.game_id, row.game_name) if row.game_id else None
    return LiveStream(
        channel=ChannelRef(row.broadcaster_id, row.login, row.display_name, row.profile_image_url),
        stream_id=row.stream_id,
        title=row.title,
        category=category,
        language=row.language,
        viewers=max(0, row.viewers),
        started_at=row.started_at,
        uptime_seconds=uptime,
        thumbnail_url=row.thumbnail_url,
        sampled_at=row.sampled_at,
    )


def _live_row(stream: LiveStream) -> LiveRow:
    return LiveRow(
        channel_id=stream.channel.id,
        login=stream.channel.login or "",
        display_name=stream.channel.display_name or "",
        profile_image_url=stream.channel.profile_image_url,
        stream_id=stream.stream_id,
        title=stream.title,
        category_id=stream.category.id if stream.category else None,
        category_name=stream.category.name if stream.category else None,
        language=stream.language,
        viewers=stream.viewers,
        started_at=stream.started_at,
        uptime_seconds=stream.uptime_seconds,
        thumbnail_url=stream.thumbnail_url,
    )


async def live_now(call: Call) -> Response:
    game, language = call.arg(params.GAME), call.arg(params.LANGUAGE)
    if call.arg(params.FORMAT) == "csv":

        async def chunks() -> AsyncIterator[Sequence[Any]]:
            after: tuple[int, str] | None = None
            async with call.ctx.sessions() as session:
                while True:
                    rows = await discovery.live_now(
                        session, game=game, language=language, limit=CSV_PAGE, after=after
                    )
                    yield [_live_row(_live(r, call.now)) for r in rows]
                    if len(rows) < CSV_PAGE:
                        return
                    after = (rows[-1].viewers, rows[-1].broadcaster_id)

        return render.csv_response(LiveRow.__struct_fields__, chunks(), "live.csv")
    limit = call.arg(params.LIMIT)
    rows = await discovery.live_now(
        call.session,
        game=game,
        language=language,
        limit=limit + 1,
        after=call.arg(params.RANK_CURSOR),
    )
    page, more = rows[:limit], len(rows) > limit
    last = page[-1] if page else None
    cursor = params.encode_rank_cursor(last.viewers, last.broadcaster_id) if more and last else None
    return render.json_response(LivePage([_live(r, call.now) for r in page], cursor))


# -- search -------------------------------------------------------------------------------


async def search_channels(call: Call) -> Response:
    query = call.arg(params.QUERY_TEXT)
    rows = await discovery.search(call.session, query, limit=call.arg(params.LIMIT))
    found = [
        ChannelFound(
            id=r.broadcaster_id,
            login=r.login,
            display_name=r.display_name,
            profile_image_url=r.profile_image_url,
            broadcaster_type=r.broadcaster_type,
            live=r.live,
            viewers=r.viewers,
            hours_watched_30d=round(r.hours_watched_30d, 3),
        )
        for r in rows
    ]
    if call.arg(params.FORMAT) == "csv":
        return render.csv_response(ChannelFound.__struct_fields__, _once(found), "search.csv")
    return render.json_response(SearchResults(query, found))


async def _once(rows: Sequence[Any]) -> AsyncIterator[Sequence[Any]]:
    yield rows


# -- history ------------------------------------------------------------------------------


def _from_session(row: queries.Session, private: bool) -> HistoryStream:
    chat: dict[str, Any] = {}
    if private:
        chat = {
            "chat_messages": row.chat_messages,
            "unique_chatters": row.unique_chatters,
            "chat_complete": row.chat_complete,
        }
    return HistoryStream(
        id=row.id,
        started_at=row.started_at,
        ended_at=row.ended_at,
        last_seen_at=None,
        peak_viewers=row.peak_viewers,
        avg_viewers=row.avg_viewers,
        hours_watched=row.hours_watched,
        title=row.title,
        game_name=row.game_name,
        **chat,
    )


def _from_seen(row: discovery.SeenStream) -> HistoryStream:
    return HistoryStream(
        id=row.id,
        started_at=row.started_at,
        ended_at=None,
        last_seen_at=row.last_seen_at,
        peak_viewers=row.peak_viewers,
        avg_viewers=round(row.avg_viewers, 2),
        hours_watched=round(row.hours_watched, 3),
        title=row.title,
        game_name=row.game_name,
    )


async def _history_page(
    call: Call,
    session: Any,
    profile: discovery.Profile,
    window: params.Window,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[HistoryStream]:
    if profile.tracked:
        private = call.who.may_read_channel(profile.broadcaster_id)
        rows = await queries.sessions(
            session, profile.broadcaster_id, window.since, window.until,
            now=call.now, limit=limit, before=before,
        )  # fmt: skip
        return [_from_session(r, private) for r in rows]
    seen = await discovery.seen_streams(
        session, profile.broadcaster_id, window.since, window.until, limit=limit, before=before
    )
    return [_from_seen(r) for r in seen]


async def channel_history(call: Call) -> Response:
    broadcaster_id = call.broadcaster_id or ""
    profile = await discovery.profile(call.session, broadcaster_id)
    if profile is None:
        raise NotFound(f"no channel {broadcaster_id}")
    window = call.arg(params.WINDOW)
    if call.arg(params.FORMAT) == "csv":

        async def chunks() -> AsyncIterator[Sequence[Any]]:
            before: tuple[datetime, str] | None = None
            async with call.ctx.sessions() as session:
                while True:
                    page = await _history_page(call, session, profile, window, CSV_PAGE, before)
                    yield [_history_row(s) for s in page]
                    if len(page) < CSV_PAGE:
                        return
                    before = (page[-1].started_at, page[-1].id)

        name = f"history-{broadcaster_id}.csv"
        return render.csv_response(HistoryRow.__struct_fields__, chunks(), name)
    limit = call.arg(params.LIMIT)
    streams = await _history_page(
        call, call.session, profile, window, limit + 1, call.arg(params.CURSOR)
    )
    page, more = streams[:limit], len(streams) > limit
    last = page[-1] if page else None
    extra: dict[str, Any] = {}
    if call.arg(params.DETAIL) == "snapshots":
        series = await discovery.snapshots(call.session, broadcaster_id, window.since, window.until)
        extra["snapshots"] = [Snapshot(**vars_of(s)) for s in series]
    return render.json_response(
        History(
            channel=ChannelRef(
                broadcaster_id, profile.login, profile.display_name, profile.profile_image_url
            ),
            tracked=profile.tracked,
            since=window.since,
            until=window.until,
            streams=page,
            next=params.encode_cursor(last.started_at, last.id) if more and last else None,
            **extra,
        )
    )


def _history_row(stream: HistoryStream) -> HistoryRow:
    return HistoryRow(**{name: getattr(stream, name) for name in HistoryRow.__struct_fields__})


def vars_of(row: Any) -> dict[str, Any]:
    return {name: getattr(row, name) for name in row.__slots__}


# -- categories ---------------------------------------------------------------------------


async def category_stats(call: Call) -> Response:
    window = call.arg(params.WINDOW)
    rows = await discovery.categories(
        call.session, window.since, window.until, limit=call.arg(params.LIMIT)
    )
    stats = [
        CategoryStats(
            id=r.game_id,
            name=r.game_name,
            hours_streamed=round(r.hours_streamed, 3),
            hours_watched=round(r.hours_watched, 3),
            avg_viewers=round(r.avg_viewers, 2),
            peak_viewers=r.peak_viewers,
            channels=r.channels,
        )
        for r in rows
    ]
    if call.arg(params.FORMAT) == "csv":
        return render.csv_response(CategoryStats.__struct_fields__, _once(stats), "categories.csv")
    return render.json_response(CategoryTable(window.since, window.until, stats))
