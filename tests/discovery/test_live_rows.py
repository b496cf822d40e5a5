"""The state the collector keeps for the public routes besides the snapshots: each live
profile's copy of its newest snapshot (what live now reads), and each profile's hours
watched over the last 30 days (what search orders by)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from aggregator import collector
from receiver.reads import discovery
from tests.aggregator.reconcile_rig import Rig, base_time
from tests.discovery.rig import collect, top_stream

MIN = timedelta(minutes=1)
LIVE_ROW = (
    "SELECT broadcaster_id, live_stream_id, live_title, live_game_id, live_game_name, "
    "live_language, live_viewers, live_started_at, live_thumbnail_url FROM channel_profiles "
    "ORDER BY broadcaster_id"
)


async def live_ids(rig: Rig, **filters: str) -> list[str]:
    async with rig.sessions() as session:
        rows = await discovery.live_now(
            session,
            game=filters.get("game"),
            language=filters.get("language"),
            limit=50,
            after=None,
        )
    return [r.broadcaster_id for r in rows]


async def test_the_live_row_follows_the_newest_snapshot_and_clears_when_offline(
    rig: Rig,
) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s100", t - 10 * MIN, viewers=500)
    top_stream(rig, "201", "leaves", 900, t - 20 * MIN, game=("33", "Old name"))
    top_stream(rig, "202", "stays", 800, t - 20 * MIN, game=("33", "Old name"), language="de")
    await rig.run(t)
    await collect(rig, t)
    rows = {r.broadcaster_id: r for r in await rig.rows(LIVE_ROW)}
    assert tuple(rows["202"])[1:7] == ("st202", "stand-in stream", "33", "Old name", "de", 800)
    assert rows["202"].live_started_at == t - 20 * MIN
    assert rows["202"].live_thumbnail_url.endswith("{width}x{height}.jpg")
    assert rows["100"].live_stream_id == "s100"
    assert await live_ids(rig) == ["201", "202", "100"]
    assert await live_ids(rig, game="old NAME") == ["201", "202"]
    assert await live_ids(rig, language="de") == ["202"]

    # Between polls: 201 goes offline, the tracked channel ends its stream, 202 changes
    # title and the category is renamed.
    rig.go_offline("201")
    rig.go_offline("100")
    rig.standin.live["202"] |= {"title": "new title", "game_name": "New name", "viewer_count": 850}
    await rig.run(t + 5 * MIN)
    await collect(rig, t + 5 * MIN)

    rows = {r.broadcaster_id: r for r in await rig.rows(LIVE_ROW)}
    for gone in ("100", "201"):
        assert set(tuple(rows[gone])[1:]) == {None}, gone
    assert tuple(rows["202"])[1:7] == ("st202", "new title", "33", "New name", "de", 850)
    assert await live_ids(rig) == ["202"]
    assert await live_ids(rig, game="new name") == ["202"]
    assert await live_ids(rig, game="old name") == []
    assert await live_ids(rig, game="33", language="en") == []


async def test_a_category_renamed_while_a_tracked_snapshot_still_has_the_old_name(
    rig: Rig,
) -> None:
    """Live now names a category by its newest name, also for a live row whose own
    snapshot (a tracked channel's, sampled earlier) still says the old one."""
    t = base_time()
    await rig.connect(["100"])
    rig.standin.go_live(
        "100", stream_id="s100", viewers=500, game=("33", "Old name"), started_at=t - 10 * MIN
    )
    top_stream(rig, "201", "collected", 900, t - 20 * MIN, game=("33", "New name"))
    await rig.run(t - MIN)
    await collect(rig, t)

    rows = {r.broadcaster_id: r for r in await rig.rows(LIVE_ROW)}
    assert rows["100"].live_game_name == "Old name"
    async with rig.sessions() as session:
        live = await discovery.live_now(
            session, game="new name", language=None, limit=9, after=None
        )
    assert [(r.broadcaster_id, r.game_name) for r in live] == [
        ("201", "New name"),
        ("100", "New name"),
    ]
    assert await live_ids(rig, game="old name") == []


async def test_recent_hours_follow_the_rollup_and_age_out_after_30_days(rig: Rig) -> None:
    t = base_time().replace(hour=12, minute=0, second=0)
    day = t.replace(hour=0)
    async with rig.sessions.begin() as session:
        await session.execute(
            text("""INSERT INTO channel_profiles (broadcaster_id, login, display_name)
                    VALUES ('7', 'seven', 'Seven'), ('8', 'eight', 'Eight')""")
        )
        await session.execute(
            text("""INSERT INTO category_days (day, game_id, broadcaster_id, samples, seconds,
                                               viewer_seconds, viewer_sum, peak_viewers)
                    VALUES (:old, '1', '7', 1, 300, 3600, 12, 12),
                           (:new, '1', '7', 1, 300, 7200, 24, 24),
                           (:new, '2', '7', 1, 300, 1800, 6, 6)"""),
            {"old": day - timedelta(days=29), "new": day},
        )
        assert await collector._refresh_recent(session, t) == 1  # only 7's figure changed
        assert await collector._refresh_recent(session, t) == 0
    async with rig.sessions() as session:
        found = await discovery.search(session, "seven", limit=5)
    assert [(m.broadcaster_id, m.hours_watched_30d) for m in found] == [("7", 3.5)]

    async with rig.sessions.begin() as session:  # a day later the oldest day is out
        assert await collector._refresh_recent(session, t + timedelta(days=1)) == 1
    figures = await rig.rows(
        "SELECT broadcaster_id, recent_viewer_seconds FROM channel_profiles ORDER BY 1"
    )
    assert [tuple(f) for f in figures] == [("7", 9000), ("8", 0)]


# The ``game`` test written plainly: the id, or the name shown, case-insensitively.
PLAIN_GAME_FILTER = text("""
    SELECT p.broadcaster_id FROM channel_profiles p
    LEFT JOIN categories c ON c.game_id = p.live_game_id
    WHERE p.live_at IS NOT NULL
      AND (p.live_game_id = :game OR lower(coalesce(c.name, p.live_game_name)) = lower(:game))
    ORDER BY p.live_viewers DESC, p.broadcaster_id DESC
""")


async def test_the_game_filter_matches_id_or_shown_name_once_each(rig: Rig) -> None:
    at = base_time()
    profiles = [  # id, viewers, category id, the snapshot's category name
        ("1", 90, "5", "Chess"),  # no category row: matched by id and by its own name
        ("2", 80, None, "Chess"),  # no category id at all
        ("3", 70, "6", "Chess"),  # category 6 is called "Go" now
        ("4", 60, "6", "Go"),
        ("5", 50, "Chess", "Checkers"),  # a category whose id looks like another's name
    ]
    async with rig.sessions.begin() as session:
        await session.execute(text("INSERT INTO categories (game_id, name) VALUES ('6', 'Go')"))
        for b, viewers, game_id, game_name in profiles:
            await session.execute(
                text("""INSERT INTO channel_profiles
                            (broadcaster_id, login, display_name, live_at, live_viewers,
                             live_stream_id, live_game_id, live_game_name)
                        VALUES (:b, :b, :b, :at, :v, :s, :g, :n)"""),
                {"b": b, "at": at, "v": viewers, "s": f"s{b}", "g": game_id, "n": game_name},
            )
    for game in ("5", "chess", "CHESS", "Chess", "6", "go", "checkers", "nothing"):
        async with rig.sessions() as session:
            plain = list((await session.execute(PLAIN_GAME_FILTER, {"game": game})).scalars())
        assert await live_ids(rig, game=game) == plain, game
    assert await live_ids(rig, game="chess") == ["1", "2"]
    assert await live_ids(rig, game="Chess") == ["1", "2", "5"]
    assert await live_ids(rig, game="go") == ["3", "4"]
