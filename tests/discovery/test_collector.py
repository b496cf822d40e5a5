"""The collector: Twitch's top list and tracked channels into snapshots, profiles,
live-now state, categories and the daily rollup."""

from __future__ import annotations

from datetime import timedelta

from tests.aggregator.reconcile_rig import Rig, base_time
from tests.discovery.rig import collect, top_stream

MIN = timedelta(minutes=1)


async def test_entries_moving_between_pages_are_snapshotted_once(rig: Rig) -> None:
    t = base_time()
    rig.settings = rig.settings.model_copy(update={"collect_top_streams": 200})
    for n in range(200):
        top_stream(rig, str(1000 + n), f"top{n}", 10_000 - n, t - 30 * MIN)

    def shift(offset: int) -> None:
        if offset == 0:  # while the client reads page 1, the leader drops to page 2
            rig.standin.live["1000"]["viewer_count"] = 9_850

    rig.standin.after_top_page = shift
    run = await collect(rig, t)

    assert run.outcome == "success", run.error
    assert rig.calls("/helix/streams") == 2
    # 1000 came twice (kept once); 1100 moved up into page 1 after it was read: missed.
    assert run.counts["top_streams"] == 199
    rows = await rig.rows(
        "SELECT broadcaster_id, count(*) AS n, max(viewer_count) AS v FROM viewer_samples "
        "GROUP BY broadcaster_id"
    )
    assert len(rows) == 199
    assert all(r.n == 1 for r in rows)
    assert {r.broadcaster_id: r.v for r in rows}["1000"] == 10_000  # the first sighting
    assert "1100" not in {r.broadcaster_id for r in rows}


async def test_tracked_channels_keep_one_row_per_poll_and_profiles_come_from_get_users(
    rig: Rig,
) -> None:
    t = base_time()
    await rig.connect(["100"])
    rig.go_live("100", "s100", t - 10 * MIN, viewers=500)
    rig.standin.users["100"].profile_image_url = "https://example.invalid/100.png"
    top_stream(rig, "200", "collected", 300, t - 20 * MIN, language="de")

    await rig.run(t)  # reconciliation samples the tracked channel
    run = await collect(rig, t + MIN)

    assert run.outcome == "success", run.error
    samples = await rig.rows(
        "SELECT broadcaster_id, stream_id, game_id, language, thumbnail_url, started_at "
        "FROM viewer_samples ORDER BY broadcaster_id"
    )
    assert [(s.broadcaster_id, s.stream_id, s.game_id, s.language) for s in samples] == [
        ("100", "s100", "509658", "en"),
        ("200", "st200", "509658", "de"),
    ]
    assert all(s.thumbnail_url and s.started_at for s in samples)
    profiles = await rig.rows(
        "SELECT broadcaster_id, login, profile_image_url, broadcaster_type, live_viewers "
        "FROM channel_profiles ORDER BY broadcaster_id"
    )
    assert [tuple(p) for p in profiles] == [
        ("100", "channel_100", "https://example.invalid/100.png", "", 500),
        ("200", "collected", "https://example.invalid/collected.png", "partner", 300),
    ]
    assert rig.calls("/helix/users") == 1

    await collect(rig, t + 5 * MIN)  # within a day: no Get Users again
    assert rig.calls("/helix/users") == 1
    await collect(rig, t + timedelta(days=1, minutes=2))
    assert rig.calls("/helix/users") == 2


async def test_offline_between_polls_leaves_live_now_and_a_renamed_category_follows(
    rig: Rig,
) -> None:
    t = base_time()
    top_stream(rig, "201", "leaves", 900, t - 20 * MIN, game=("33", "Old name"))
    top_stream(rig, "202", "stays", 800, t - 20 * MIN, game=("33", "Old name"))
    await collect(rig, t)
    assert [r.broadcaster_id for r in await rig.rows(
        "SELECT broadcaster_id FROM channel_profiles WHERE live_at IS NOT NULL ORDER BY 1"
    )] == ["201", "202"]  # fmt: skip

    rig.go_offline("201")
    rig.standin.live["202"] |= {"game_name": "New name", "viewer_count": 850}
    await collect(rig, t + 5 * MIN)

    live = await rig.rows(
        "SELECT broadcaster_id, live_at, last_seen_at FROM channel_profiles ORDER BY 1"
    )
    assert [(r.broadcaster_id, r.live_at, r.last_seen_at) for r in live] == [
        ("201", None, t),
        ("202", t + 5 * MIN, t + 5 * MIN),
    ]
    assert [tuple(r) for r in await rig.rows("SELECT game_id, name FROM categories")] == [
        ("33", "New name")
    ]

    # Samples older than the rollup's lag are in the daily rollup, each exactly once.
    await collect(rig, t + 15 * MIN)
    await collect(rig, t + 18 * MIN)
    days = await rig.rows(
        "SELECT broadcaster_id, samples, viewer_sum, peak_viewers FROM category_days "
        "ORDER BY broadcaster_id"
    )
    assert [tuple(d) for d in days if d.broadcaster_id == "201"] == [("201", 1, 900, 900)]
    stays = [d for d in days if d.broadcaster_id == "202"]
    assert sum(d.samples for d in stays) == 3  # t, t+5, t+15; t+18 is still within the lag
