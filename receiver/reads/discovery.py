"""Read models of the public (discovery) routes: live now, search, history, categories.

Every query is bound to an index: live now reads the partial index of live profiles,
search the trigram indexes of its narrow table, history the samples' primary key (broadcaster_id,
sampled_at), categories the precomputed table of a preset window (``category_windows``,
refreshed with the rollup) by its rank index, other windows the daily rollup's primary
key (day first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads.audience import FIGURES, LATEST, VIEWER_ROWS, viewer_window


@dataclass(frozen=True, slots=True)
class LiveRow:
    broadcaster_id: str
    login: str
    display_name: str
    profile_image_url: str | None
    stream_id: str
    title: str | None
    game_id: str | None
    game_name: str | None
    language: str | None
    viewers: int
    started_at: datetime | None
    thumbnail_url: str | None
    sampled_at: datetime


# Live now reads only ``channel_profiles``: the collector copies each live channel's
# newest snapshot onto its profile row (``live_*``), so a page walks the partial index of
# live profiles in viewer order (or the one of its language) and never probes the
# snapshots. ``game`` matches the id, or the name shown (the category's newest name,
# else the snapshot's), case-insensitively: the rows of the category ids that the value
# names (an index scan per id), and apart those whose id has no category row, by the
# snapshot's name (an index on it, nearly always empty). One statement per combination
# of filters and cursor, so that no branch is a run-time ``IS NULL`` test on a parameter
# (a cached generic plan could not drop it and would lose the index).
_LIVE_SELECT = """
    SELECT p.broadcaster_id, p.login, p.display_name, p.profile_image_url,
           p.live_stream_id AS stream_id, p.live_title AS title, p.live_game_id AS game_id,
           coalesce(c.name, p.live_game_name) AS game_name, p.live_language AS language,
           p.live_viewers AS viewers, p.live_started_at AS started_at,
           p.live_thumbnail_url AS thumbnail_url, p.live_at AS sampled_at
    FROM channel_profiles p
    LEFT JOIN categories c ON c.game_id = p.live_game_id
    WHERE p.live_at IS NOT NULL"""
_LIVE_GAME_IDS = """
      AND p.live_game_id = ANY(ARRAY(
          SELECT CAST(:game AS text)
          UNION SELECT k.game_id FROM categories k WHERE lower(k.name) = lower(:game)))"""
_LIVE_GAME_UNNAMED = """
      AND lower(p.live_game_name) = lower(:game) AND c.game_id IS NULL
      AND p.live_game_id IS DISTINCT FROM :game"""
_LIVE_LANGUAGE = """
      AND lower(p.live_language) = :language"""
_LIVE_AFTER = """
      AND (p.live_viewers, p.broadcaster_id) < (:after_rank, CAST(:after_id AS text))"""


def live_query(*, game: bool, language: bool, after: bool) -> TextClause:
    """The live-now statement for this combination of filters (built once each)."""
    return _LIVE_QUERIES[(game, language, after)]


def _live_text(game: bool, language: bool, after: bool) -> str:
    rest = (_LIVE_LANGUAGE if language else "") + (_LIVE_AFTER if after else "")
    if not game:
        return _LIVE_SELECT + rest + "\n    ORDER BY p.live_viewers DESC, p.broadcaster_id DESC"
    branches = "\n    UNION ALL".join(
        _LIVE_SELECT + branch + rest for branch in (_LIVE_GAME_IDS, _LIVE_GAME_UNNAMED)
    )
    order = "\n    ) live\n    ORDER BY viewers DESC, broadcaster_id DESC"
    return "SELECT * FROM (" + branches + order  # noqa: S608 - fixed fragments


_LIVE_QUERIES = {
    (g, lang, a): text(_live_text(g, lang, a) + "\n    LIMIT :limit\n")
    for g in (False, True)
    for lang in (False, True)
    for a in (False, True)
}


async def live_now(
    session: AsyncSession,
    *,
    game: str | None,
    language: str | None,
    limit: int,
    after: tuple[int, str] | None,
) -> list[LiveRow]:
    query = live_query(game=game is not None, language=language is not None, after=bool(after))
    bound: dict[str, object] = {"limit": limit}
    if game is not None:
        bound["game"] = game
    if language is not None:
        bound["language"] = language
    if after:
        bound |= {"after_rank": after[0], "after_id": after[1]}
    rows = await session.execute(query, bound)
    return [LiveRow(**r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class ChannelMatch:
    broadcaster_id: str
    login: str
    display_name: str
    profile_image_url: str | None
    broadcaster_type: str | None
    live: bool
    viewers: int | None
    hours_watched_30d: float


# Search reads ``channel_search``, the narrow copy of what it matches and orders by
# (written only when one of those changes, so its heap stays small and dense; migration
# 0012). Candidates come from its trigram indexes (similarity for typos, ILIKE for
# prefixes); the best 200 by likeness are ordered live first, then by recent hours
# watched, and only the page's rows are joined to their profiles for what they show.
_SEARCH = text(r"""
    WITH candidates AS (
        SELECT s.broadcaster_id, s.login, s.live, s.recent_viewer_seconds,
               greatest(similarity(s.login, :q), similarity(s.display_name, :q)) AS score
        FROM channel_search s
        WHERE s.login % :q OR s.display_name % :q
           OR s.login ILIKE :prefix ESCAPE '\' OR s.display_name ILIKE :prefix ESCAPE '\'
        ORDER BY score DESC, s.broadcaster_id
        LIMIT 200
    ), page AS (
        SELECT * FROM candidates c
        ORDER BY c.live DESC, c.recent_viewer_seconds DESC, c.score DESC, c.login,
                 c.broadcaster_id
        LIMIT :limit
    )
    SELECT p.broadcaster_id, p.login, p.display_name, p.profile_image_url,
           p.broadcaster_type, p.live_at IS NOT NULL AS live, p.live_viewers AS viewers,
           p.recent_viewer_seconds / 3600.0 AS hours_watched_30d
    FROM page c JOIN channel_profiles p USING (broadcaster_id)
    ORDER BY c.live DESC, c.recent_viewer_seconds DESC, c.score DESC, c.login,
             c.broadcaster_id
""")


def like_prefix(query: str) -> str:
    """``query`` as a LIKE prefix pattern, its own wildcards taken literally."""
    return query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# pg_trgm's default likeness (0.3) misses a swapped pair of letters in a short login
# ("shruod" is 0.27 like "shroud"); 0.2 still keeps unrelated names out. For this
# transaction only; ``show_limit()`` first loads pg_trgm in this connection, or the
# setting would be a placeholder that the library's own default replaces when it loads.
# Both in one round trip: the functions are looked up (the library loaded) before either
# runs, so the setting is set after the library defined it. Sequential scans are off for
# the same transaction (the request's, which runs nothing after search): the search rows
# are narrow and few pages, so the planner prices a scan of them below the trigram
# index, not counting that ``%`` computes a likeness for every row (about 50 ms over
# 10,000 rows, against 2-5 ms through the index).
_THRESHOLD = text(
    "SELECT show_limit(), set_config('pg_trgm.similarity_threshold', '0.2', true),"
    " set_config('enable_seqscan', 'off', true)"
)


_SEQSCAN_BACK = text("RESET enable_seqscan")


async def search(session: AsyncSession, query: str, *, limit: int) -> list[ChannelMatch]:
    await session.execute(_THRESHOLD)
    rows = (
        await session.execute(_SEARCH, {"q": query, "prefix": like_prefix(query), "limit": limit})
    ).all()
    await session.execute(_SEQSCAN_BACK)  # the rest of the transaction plans as usual
    return [
        ChannelMatch(**{**r._mapping, "hours_watched_30d": float(r.hours_watched_30d)})
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Profile:
    broadcaster_id: str
    login: str | None
    display_name: str | None
    profile_image_url: str | None
    broadcaster_type: str | None
    tracked: bool  # streamfold folds its events (it has sessions); else only collected


_PROFILE = text("""
    SELECT b.id AS broadcaster_id, coalesce(p.login, c.login) AS login,
           coalesce(p.display_name, c.display_name) AS display_name,
           p.profile_image_url, p.broadcaster_type, c.broadcaster_id IS NOT NULL AS tracked
    FROM (SELECT CAST(:b AS text) AS id) b
    LEFT JOIN channel_profiles p ON p.broadcaster_id = b.id
    LEFT JOIN channels c ON c.broadcaster_id = b.id
    WHERE p.broadcaster_id IS NOT NULL OR c.broadcaster_id IS NOT NULL
""")


async def profile(session: AsyncSession, broadcaster_id: str) -> Profile | None:
    row = (await session.execute(_PROFILE, {"b": broadcaster_id})).first()
    return None if row is None else Profile(**row._mapping)


@dataclass(frozen=True, slots=True)
class SeenStream:
    """A stream of a collected channel as its snapshots saw it: no end is known, only
    the last snapshot that saw it live."""

    id: str
    started_at: datetime
    last_seen_at: datetime
    peak_viewers: int
    avg_viewers: float
    hours_watched: float
    title: str | None
    game_name: str | None


_SEEN = text(f"""
    SELECT r.stream_id AS id, coalesce(min(r.started_at), min(r.first_sampled_at)) AS started_at,
           max(r.last_sampled_at) AS last_seen_at, {FIGURES}, {LATEST}
    FROM ({VIEWER_ROWS}) AS r
    GROUP BY r.stream_id
    HAVING CAST(:before_at AS timestamptz) IS NULL
        OR (coalesce(min(r.started_at), min(r.first_sampled_at)), r.stream_id)
           < (CAST(:before_at AS timestamptz), CAST(:before_id AS text))
    ORDER BY started_at DESC, id DESC
    LIMIT :limit
""")  # noqa: S608 - the fragments are audience.py's constants


async def seen_streams(
    session: AsyncSession,
    broadcaster_id: str,
    since: datetime,
    until: datetime,
    *,
    limit: int,
    before: tuple[datetime, str] | None,
) -> list[SeenStream]:
    if until <= since:
        return []
    viewers = await viewer_window(session, since, until)
    rows = await session.execute(
        _SEEN,
        {
            **viewers.params,
            "b": broadcaster_id,
            "limit": limit,
            "before_at": before[0] if before else None,
            "before_id": before[1] if before else None,
        },
    )
    return [SeenStream(**r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class Snapshot:
    sampled_at: datetime
    stream_id: str
    viewer_count: int
    title: str | None
    game_id: str | None
    game_name: str | None


_SNAPSHOTS = text("""
    SELECT sampled_at, stream_id, viewer_count, title, game_id, game_name
    FROM viewer_samples
    WHERE broadcaster_id = :b AND sampled_at >= :since AND sampled_at < :until
    ORDER BY sampled_at
""")


async def snapshots(
    session: AsyncSession, broadcaster_id: str, since: datetime, until: datetime
) -> list[Snapshot]:
    rows = await session.execute(_SNAPSHOTS, {"b": broadcaster_id, "since": since, "until": until})
    return [Snapshot(**r._mapping) for r in rows]


@dataclass(frozen=True, slots=True)
class CategoryRow:
    game_id: str
    game_name: str | None
    hours_streamed: float
    hours_watched: float
    avg_viewers: float
    peak_viewers: int
    channels: int


# Whole UTC days of the rollup that overlap the window (index: the primary key, day first).
_CATEGORIES = text("""
    SELECT d.game_id, c.name AS game_name,
           (sum(d.seconds) / 3600.0)::float AS hours_streamed,
           (sum(d.viewer_seconds) / 3600.0)::float AS hours_watched,
           (sum(d.viewer_seconds)::float / greatest(sum(d.seconds), 1)) AS avg_viewers,
           max(d.peak_viewers) AS peak_viewers, count(DISTINCT d.broadcaster_id) AS channels
    FROM category_days d LEFT JOIN categories c ON c.game_id = d.game_id
    WHERE d.day >= date_trunc('day', CAST(:since AS timestamptz) AT TIME ZONE 'UTC')
                   AT TIME ZONE 'UTC'
      AND d.day < :until AND d.game_id <> ''
    GROUP BY d.game_id, c.name
    ORDER BY hours_watched DESC, d.game_id
    LIMIT :limit
""")


# A preset window's table as the collector precomputed it with the rollup: the same
# figures as ``_CATEGORIES`` when it covers the same days (same first day) and the window
# ends after the rollup's mark (so no rolled-up day is missing), read by its rank index.
_PRECOMPUTED = text("""
    SELECT w.game_id, c.name AS game_name,
           (w.seconds / 3600.0)::float AS hours_streamed,
           (w.viewer_seconds / 3600.0)::float AS hours_watched,
           (w.viewer_seconds::float / greatest(w.seconds, 1)) AS avg_viewers,
           w.peak_viewers, w.channels
    FROM category_windows w LEFT JOIN categories c ON c.game_id = w.game_id
    WHERE w.seconds_back = :seconds_back
      AND w.since_day = date_trunc('day', CAST(:since AS timestamptz) AT TIME ZONE 'UTC')
                        AT TIME ZONE 'UTC'
      AND w.upto < :until
    ORDER BY w.viewer_seconds DESC, w.game_id
    LIMIT :limit
""")


async def categories(
    session: AsyncSession, since: datetime, until: datetime, *, limit: int
) -> list[CategoryRow]:
    """The precomputed table of a preset window when it matches, else summed from the
    daily rollup (a month of it is ~150,000 rows at 10,000 channels: too slow per
    request, fine for other windows now and then)."""
    if until <= since:
        return []
    back = int((until - since).total_seconds())
    params = {"since": since, "until": until, "limit": limit}
    rows = (await session.execute(_PRECOMPUTED, {**params, "seconds_back": back})).all()
    if not rows:
        rows = (await session.execute(_CATEGORIES, params)).all()
    return [CategoryRow(**r._mapping) for r in rows]
