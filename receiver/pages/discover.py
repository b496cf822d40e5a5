"""The public pages: live now, search, a channel's public page, categories.

They read what the public JSON routes read (``receiver/reads/discovery.py``, and the
sessions read for a tracked channel), parse their query strings with the API's own
parsers, are rate-limited per client like those routes, and show chat figures only to a
caller who may read the channel (``Identity.may_read_channel``), as
``/api/channels/{id}/history`` does: for anyone else the columns are not there at all.

Thumbnails and profile pictures are shown only when Twitch's image host serves them
(the one image origin these pages' Content-Security-Policy allows, lazily loaded and
without a referrer); any other address, such as the local Twitch's placeholders, is left
out rather than loaded from somewhere the policy would have to trust.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import groupby
from typing import Any
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup
from starlette.responses import Response

from receiver.api import access, params
from receiver.pages.chart import snapshots_svg
from receiver.pages.render import TWITCH_IMAGES
from receiver.pages.views import PICKS, Visit, window_of
from receiver.reads import discovery, queries
from schema.errors import InvalidParameter, NotFound

LIVE_PAGE = 24
SEARCH_LIMIT = 50
HISTORY_PAGE = 50
CATEGORY_LIMIT = 100
IMAGES = (TWITCH_IMAGES,)


def twitch_image(url: str | None, width: int, height: int) -> str | None:
    """``url`` with Twitch's ``{width}x{height}`` template filled in, or None when it is
    not on Twitch's image host (the page would not be allowed to load it)."""
    if not url:
        return None
    parts = urlsplit(url)
    if f"{parts.scheme}://{parts.netloc}" != TWITCH_IMAGES:
        return None
    return url.replace("{width}", str(width)).replace("{height}", str(height))


def _inputs(visit: Visit) -> params.Inputs:
    """The query string as the API's parsers read it, without the fields a form sent
    empty (a filter left blank means no filter, not an invalid one)."""
    query = {k: v for k, v in visit.request.query_params.items() if v.strip()}
    return params.Inputs(query, "", visit.now)


def _uptime(started_at: datetime | None, now: datetime) -> str:
    if started_at is None:
        return ""
    minutes = max(0, int((now - started_at).total_seconds()) // 60)
    return f"{minutes // 60}h {minutes % 60:02d}m"


@dataclass(frozen=True, slots=True)
class LiveCard:
    broadcaster_id: str
    name: str
    viewers: int
    title: str | None
    game_id: str | None
    game_name: str | None
    language: str | None
    uptime: str
    thumbnail: str | None


def live_cards(rows: Sequence[discovery.LiveRow], now: datetime) -> list[LiveCard]:
    return [
        LiveCard(
            broadcaster_id=r.broadcaster_id,
            name=r.display_name or r.login,
            viewers=max(0, r.viewers),
            title=r.title,
            game_id=r.game_id,
            game_name=r.game_name,
            language=r.language,
            uptime=_uptime(r.started_at, now),
            thumbnail=twitch_image(r.thumbnail_url, 320, 180),
        )
        for r in rows
    ]


async def live(visit: Visit) -> Response:
    inputs = _inputs(visit)
    game, language = params.parse_game(inputs), params.parse_language(inputs)
    rows = await discovery.live_now(
        visit.session,
        game=game,
        language=language,
        limit=LIVE_PAGE + 1,
        after=params.parse_rank_cursor(inputs),
    )
    shown = rows[:LIVE_PAGE]
    filters = {k: v for k, v in (("game", game), ("language", language)) if v}
    following = None
    if len(rows) > LIVE_PAGE:
        last = shown[-1]
        cursor = params.encode_rank_cursor(last.viewers, last.broadcaster_id)
        following = "?" + urlencode({**filters, "cursor": cursor})
    return visit.render(
        "live.html",
        image_hosts=IMAGES,
        streams=live_cards(shown, visit.now),
        game=game or "",
        language=language or "",
        first_page=("?" + urlencode(filters)) if "cursor" in visit.request.query_params else None,
        following=following,
    )


async def search(visit: Visit) -> Response:
    raw = visit.request.query_params.get("q")
    if raw is None or not raw.strip():
        return visit.render("search.html", image_hosts=IMAGES, q="", found=None, problem=None)
    try:
        q = params.parse_query_text(_inputs(visit))
    except InvalidParameter as exc:
        return visit.render(
            "search.html", 422, image_hosts=IMAGES, q=raw, found=None, problem=exc.detail
        )
    rows = await discovery.search(visit.session, q, limit=SEARCH_LIMIT)
    found = [
        {
            "broadcaster_id": r.broadcaster_id,
            "name": r.display_name or r.login,
            "login": r.login,
            "live": r.live,
            "viewers": r.viewers,
            "hours_watched_30d": round(r.hours_watched_30d, 1),
            "image": twitch_image(r.profile_image_url, 70, 70),
        }
        for r in rows
    ]
    return visit.render("search.html", image_hosts=IMAGES, q=q, found=found, problem=None)


@dataclass(frozen=True, slots=True)
class StreamLine:
    """A row of the channel page: a tracked channel's session (chat figures only when
    the caller may read the channel) or a collected channel's stream as snapshots saw it."""

    id: str
    started_at: datetime
    ended_at: datetime | None
    last_seen_at: datetime | None
    peak_viewers: int | None
    avg_viewers: float | None
    hours_watched: float | None
    title: str | None
    game_name: str | None
    chat: tuple[int, int, bool] | None  # messages, unique chatters, complete


async def _streams(
    visit: Visit, profile: discovery.Profile, window: params.Window, private: bool
) -> list[StreamLine]:
    before = params.parse_cursor(_inputs(visit))
    b = profile.broadcaster_id
    if profile.tracked:
        rows = await queries.sessions(
            visit.session, b, window.since, window.until,
            now=visit.now, limit=HISTORY_PAGE + 1, before=before,
        )  # fmt: skip
        return [_line(r, r.ended_at, None, _chat(r) if private else None) for r in rows]
    seen = await discovery.seen_streams(
        visit.session, b, window.since, window.until, limit=HISTORY_PAGE + 1, before=before
    )
    return [_line(s, None, s.last_seen_at, None) for s in seen]


def _chat(row: queries.Session) -> tuple[int, int, bool]:
    return row.chat_messages, row.unique_chatters, row.chat_complete


def _line(
    row: queries.Session | discovery.SeenStream,
    ended_at: datetime | None,
    last_seen_at: datetime | None,
    chat: tuple[int, int, bool] | None,
) -> StreamLine:
    avg, watched = row.avg_viewers, row.hours_watched
    return StreamLine(
        id=row.id,
        started_at=row.started_at,
        ended_at=ended_at,
        last_seen_at=last_seen_at,
        peak_viewers=row.peak_viewers,
        avg_viewers=None if avg is None else round(avg, 2),
        hours_watched=None if watched is None else round(watched, 3),
        title=row.title,
        game_name=row.game_name,
        chat=chat,
    )


def _series(snaps: Sequence[discovery.Snapshot]) -> list[list[tuple[datetime, int]]]:
    """The snapshots (oldest first) cut into one run per stream."""
    return [
        [(s.sampled_at, s.viewer_count) for s in run]
        for _, run in groupby(snaps, key=lambda s: s.stream_id)
    ]


async def channel(visit: Visit) -> Response:
    broadcaster_id = params.broadcaster_id(visit.request.path_params["broadcaster_id"])
    profile = await discovery.profile(visit.session, broadcaster_id)
    if profile is None:
        raise NotFound(f"streamfold has no data on channel {broadcaster_id}")
    window, chosen, wanted = window_of(visit)
    private = profile.tracked and (visit.who or access.ANONYMOUS).may_read_channel(broadcaster_id)
    lines = await _streams(visit, profile, window, private)
    shown, more = lines[:HISTORY_PAGE], len(lines) > HISTORY_PAGE
    older = None
    if more:
        cursor = params.encode_cursor(shown[-1].started_at, shown[-1].id)
        older = "?" + urlencode({**wanted, "cursor": cursor})
    snaps = await discovery.snapshots(visit.session, broadcaster_id, window.since, window.until)
    return visit.render(
        "public_channel.html",
        image_hosts=IMAGES,
        profile=profile,
        name=profile.display_name or profile.login or broadcaster_id,
        image=twitch_image(profile.profile_image_url, 70, 70),
        streams=shown,
        private=private,
        older=older,
        chart=Markup(snapshots_svg(_series(snaps))),  # noqa: S704 - numbers, text escaped
        snapshot_count=len(snaps),
        wanted_query=urlencode(wanted),
        **_picker(visit, window, chosen),
    )


def _picker(visit: Visit, window: params.Window, chosen: str) -> dict[str, Any]:
    """What ``window.html`` (the window picker) reads."""
    query = visit.request.query_params
    return {
        "window": window,
        "chosen": chosen,
        "picks": PICKS,
        "custom_from": query.get("from", ""),
        "custom_to": query.get("to", ""),
    }


async def categories(visit: Visit) -> Response:
    window, chosen, _ = window_of(visit)
    rows = await discovery.categories(
        visit.session, window.since, window.until, limit=CATEGORY_LIMIT
    )
    return visit.render("categories.html", categories=rows, **_picker(visit, window, chosen))
