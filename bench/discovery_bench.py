"""The public routes at the server (uvicorn, HTTP), over what a year of discovery means.

A year of five-minute snapshots of 10,000 channels is up to a billion rows, more than
this benchmark can write in reasonable time; the routes do not read most of them. What
each route reads is generated at full size, inside PostgreSQL (``INSERT … SELECT`` over
``generate_series``):

- ``channel_profiles``: every channel (10,000), a quarter of them live now, with logins
  built from a small set of syllables so that trigrams are shared widely (a harder case
  for search than random strings);
- the live rows: each live channel's current stream, a snapshot every five minutes since
  it started (up to four hours), the newest one copied onto the profile as the collector
  does;
- ``category_days``: a year of the daily rollup for every channel (each streams on a
  share of days, mostly in its own category, among 500 of very unequal popularity);
- a year of five-minute snapshots (four hours a day) for a sample of channels, whose
  history is read too, so ``viewer_samples`` is millions of rows deep.

Why that is representative: live now walks a partial index of live profiles (by
viewers, or by category or language, then viewers) and reads only those rows, which
carry their newest snapshot, so it costs the live channels it passes, not the history;
search reads the trigram indexes of the 10,000 narrow search rows (``channel_search``)
and orders at most 200 candidates by their precomputed 30-day figure; the category
table reads the 30 newest days of the rollup through its primary key (day first), at
the full year's per-day density. A longer history adds index depth (one level per
~100x), not rows read.

The baseline, in the same run and through the same server, is ``/readyz`` (a
``SELECT 1`` and a Redis PING): the floor a route that talks to PostgreSQL and Redis
(the rate limit) stands on.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator import collector
from bench.services import Environment, uvicorn
from bench.stats import Row, percentile
from schema.db import create_engine, create_sessionmaker

FIRST_ID = 700_000
SYLLABLES = [
    *("sh", "ro", "ud", "xq", "ka", "mi", "to", "ne", "zu", "li", "ra", "vo", "ge", "pa", "da"),
    *("fi", "no", "be", "ty", "lo", "gi", "cu", "ha", "je", "wa", "ki", "ma", "so", "re", "yu"),
]

_GENERATE = [
    """TRUNCATE channel_profiles, channel_search, categories, category_days, viewer_samples,
                viewer_hours""",
    """INSERT INTO categories (game_id, name)
       SELECT (10000 + g)::text, 'Game ' || g FROM generate_series(1, :games) AS g""",
    # Channel n: its size (median 40 viewers, log-normal), its main category (skewed:
    # category 1 is far more popular than category 500), how often it streams.
    """CREATE TEMP TABLE chans AS
       SELECT (:first + i)::text AS b, i AS n,
              s[1 + (abs(hashint4(i)::bigint) % 30)] || s[1 + (abs(hashint4(i + 1)::bigint) % 30)]
                  || s[1 + (abs(hashint4(i + 2)::bigint) % 30)]
                  || CASE WHEN i % 2 = 0 THEN s[1 + (abs(hashint4(i + 3)::bigint) % 30)] ELSE '' END
                  || CASE WHEN i % 3 = 0 THEN (i % 1000)::text ELSE '' END AS login,
              greatest(1, round(40 * exp(1.5 * sqrt(-2 * ln(1 - random()))
                                      * cos(2 * pi() * random()))))::int AS size,
              (10000 + least(:games, floor(power(:games, random()))::int))::text AS game,
              0.2 + 0.6 * random() AS share,
              i < :live AS live
       FROM generate_series(0, :channels - 1) AS i, (SELECT CAST(:syllables AS text[]) AS s) x""",
    """CREATE INDEX ON chans (b)""",
    """INSERT INTO channel_profiles (broadcaster_id, login, display_name, profile_image_url,
                                    broadcaster_type, refreshed_at, last_seen_at)
       SELECT b, login, initcap(login), 'https://img.example/' || b || '.png',
              CASE WHEN n % 10 = 0 THEN 'partner' ELSE '' END, CAST(:now AS timestamptz),
              CAST(:slot AS timestamptz)
       FROM chans""",
    # The live channels' current streams, one snapshot every five minutes since start.
    """INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, viewer_count,
                                   interval_seconds, title, game_id, game_name, language,
                                   thumbnail_url, started_at)
       SELECT c.b, CAST(:slot AS timestamptz) - k * interval '5 minutes', 'live-' || c.b,
              greatest(0, c.size + (k % 7) - 3), 300, 'live stream of ' || c.login, c.game,
              'Game ' || (c.game::int - 10000),
              (ARRAY['en','en','en','es','de','fr','pt','ja','ko','ru'])[1 + c.n % 10],
              'https://thumb.example/' || c.b || '-{width}x{height}.jpg',
              CAST(:slot AS timestamptz) - (1 + c.n % 48) * interval '5 minutes'
       FROM chans c, generate_series(0, 48) AS k
       WHERE c.live AND k <= c.n % 48""",
    # Live now as the collector leaves it: the newest snapshot copied onto the profile.
    """UPDATE channel_profiles p
       SET live_at = CAST(:slot AS timestamptz), live_viewers = v.viewer_count,
           live_stream_id = v.stream_id, live_title = v.title, live_game_id = v.game_id,
           live_game_name = v.game_name, live_language = v.language,
           live_started_at = v.started_at, live_thumbnail_url = v.thumbnail_url
       FROM viewer_samples v
       WHERE v.broadcaster_id = p.broadcaster_id AND v.sampled_at = CAST(:slot AS timestamptz)""",
    # A year of snapshots for a sample of channels: four hours a day at their own hour.
    """INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, viewer_count,
                                   interval_seconds, title, game_id, game_name, language,
                                   started_at)
       SELECT c.b, t.start + k * interval '5 minutes', c.b || '-' || d,
              greatest(0, c.size + (k % 11) - 5), 300, 'stream ' || d, c.game,
              'Game ' || (c.game::int - 10000), 'en', t.start
       FROM chans c, generate_series(1, :days) AS d,
            LATERAL (SELECT date_trunc('day', CAST(:now AS timestamptz)) - d * interval '1 day'
                            + (c.n % 20) * interval '1 hour' AS start) AS t,
            generate_series(0, 47) AS k
       WHERE c.n >= :live AND c.n < :live + :history
       ON CONFLICT DO NOTHING""",
    # A year of the daily rollup for every channel.
    """INSERT INTO category_days (day, game_id, broadcaster_id, samples, seconds,
                                  viewer_seconds, viewer_sum, peak_viewers)
       SELECT date_trunc('day', CAST(:now AS timestamptz)) - d * interval '1 day',
              CASE WHEN random() < 0.85 THEN c.game
                   ELSE (10000 + 1 + floor(random() * :games))::text END,
              c.b, 48, 14400, 14400::bigint * c.size, 48::bigint * c.size, c.size + 5
       FROM chans c, generate_series(0, :days - 1) AS d
       WHERE random() < c.share
       ON CONFLICT DO NOTHING""",
    """INSERT INTO rollup_marks (name, upto) VALUES ('category_days', CAST(:slot AS timestamptz))
       ON CONFLICT (name) DO UPDATE SET upto = excluded.upto""",
]


async def generate(session: AsyncSession, sizes: dict[str, Any]) -> dict[str, Any]:
    for statement in _GENERATE:
        needed = {k: v for k, v in sizes.items() if f":{k}" in statement}
        await session.execute(text(statement), needed)
    began = time.perf_counter()
    await collector._refresh_windows(session, sizes["now"])  # as the collector does
    refresh_s = time.perf_counter() - began
    began = time.perf_counter()
    await collector._refresh_recent(session, sizes["now"])
    recent_s = time.perf_counter() - began
    tables = "channel_profiles, channel_search, categories, category_days, category_windows, "
    tables += "viewer_samples"
    await session.execute(text(f"ANALYZE {tables}"))
    counts: dict[str, Any] = {"refresh_s": refresh_s, "recent_s": recent_s}
    for table in ("channel_profiles", "category_days", "viewer_samples"):
        count = text(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed table names
        counts[table] = int((await session.execute(count)).scalar_one())
    live = "SELECT count(*) FROM channel_profiles WHERE live_at IS NOT NULL"
    counts["live"] = int((await session.execute(text(live))).scalar_one())
    logins = await session.execute(text("SELECT login FROM chans ORDER BY random() LIMIT 200"))
    counts["logins"] = [r[0] for r in logins]
    history = "SELECT b FROM chans WHERE n >= :live AND n < :live + :history"
    bounds = {"live": sizes["live"], "history": sizes["history"]}
    rows = await session.execute(text(history), bounds)
    counts["history_ids"] = [r[0] for r in rows]
    return counts


async def prepare(env: Environment, sizes: dict[str, Any]) -> dict[str, Any]:
    engine = create_engine(env.database_url, pool_size=1, statement_timeout=None)
    try:
        async with create_sessionmaker(engine).begin() as session:
            began = time.perf_counter()
            info = await generate(session, sizes)
            info["generate_s"] = time.perf_counter() - began
        return info
    finally:
        await engine.dispose()


def typo(login: str) -> str:
    """``login`` with two neighbouring letters swapped (past the first, as people type)."""
    if len(login) < 4:
        return login
    at = random.randrange(1, len(login) - 2)
    return login[:at] + login[at + 1] + login[at] + login[at + 2 :]


def plan(info: dict[str, Any], games: int, per_route: int) -> list[list[str]]:
    """[label, path] for one repetition, routes interleaved so drift hits all alike."""
    logins: list[str] = info["logins"]
    history: list[str] = info["history_ids"]
    makers: dict[str, Callable[[], str]] = {
        "live, top 50": lambda: "/api/live?limit=50",
        "live, one category": lambda: (
            f"/api/live?limit=50&game={10000 + min(games, int(games ** random.random()))}"
        ),
        "live, language": lambda: f"/api/live?limit=50&language={random.choice(['en', 'de'])}",
        "search, prefix": lambda: (
            f"/api/search?q={quote(random.choice(logins)[: random.randint(3, 6)])}&limit=20"
        ),
        "search, typo": lambda: f"/api/search?q={quote(typo(random.choice(logins)))}&limit=20",
        "categories, 30 days": lambda: "/api/stats/categories?window=30d&limit=50",
        "history, 30 days": lambda: f"/api/channels/{random.choice(history)}/history?window=30d",
        "baseline /readyz": lambda: "/readyz",
    }
    steps = [[label, make()] for _ in range(per_route) for label, make in makers.items()]
    return steps


def load(port: int, steps: list[list[str]]) -> dict[str, Any]:
    with (
        tempfile.NamedTemporaryFile("w", suffix=".json") as config,
        tempfile.NamedTemporaryFile(suffix=".json") as out,
    ):
        json.dump({"port": port, "plan": steps, "out": out.name}, config)
        config.flush()
        subprocess.run([sys.executable, "-m", "bench.getload", config.name], check=True)  # noqa: S603
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    return result


def sizes_for(quick: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    slot = now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0)
    common = {"first": FIRST_ID, "syllables": list(SYLLABLES), "now": now, "slot": slot}
    if quick:
        return common | {"channels": 500, "live": 125, "games": 50, "days": 30, "history": 5}
    return common | {"channels": 10_000, "live": 2_500, "games": 500, "days": 365, "history": 100}


TARGET_MS = 50.0
TARGETED = ("live", "search", "categories")


def run(env: Environment, *, quick: bool, repetitions: int) -> list[Row]:
    sizes = sizes_for(quick)
    info = asyncio.run(prepare(env, sizes))
    per_route = 40 if quick else 250
    process_env = env.process_env(PUBLIC_RATE_LIMIT="100000")
    results: dict[str, list[list[float]]] = {}
    statuses: dict[str, dict[str, int]] = {}
    with uvicorn("receiver.app:from_environment", process_env, "discovery-web") as (port, _):
        load(port, plan(info, sizes["games"], 10))  # warm-up: caches, plans, connections
        for _ in range(repetitions):
            result = load(port, plan(info, sizes["games"], per_route))
            for label, values in result["latencies"].items():
                results.setdefault(label, []).append(values)
            for label, seen in result["statuses"].items():
                into = statuses.setdefault(label, {})
                for status, n in seen.items():
                    into[status] = into.get(status, 0) + n
    base = "baseline /readyz"
    base_p50 = sorted(percentile(r, 50) for r in results[base])[len(results[base]) // 2] * 1000
    rows: list[Row] = []
    for label, runs in results.items():
        if label == base:
            continue
        p99 = Row(
            "discovery", f"{label}: p99", "ms", [percentile(r, 99) * 1000 for r in runs],
            base_p50, "/readyz p50",
        )  # fmt: skip
        bad = {s: n for s, n in statuses[label].items() if s != "200"}
        if label.startswith(TARGETED):
            p99.target = f"< {TARGET_MS:.0f} ms"
            p99.met = (p99.median or 1e9) < TARGET_MS and not bad
        if bad:
            p99.note = f"non-200 answers: {bad}"
        p50s = [percentile(r, 50) * 1000 for r in runs]
        rows.append(Row("discovery", f"{label}: p50", "ms", p50s, base_p50, "/readyz p50"))
        rows.append(p99)
    rows.append(
        Row(
            "discovery",
            "baseline /readyz p50",
            "ms",
            [percentile(r, 50) * 1000 for r in results[base]],
            note=(
                f"generated in {info['generate_s']:.0f} s: {info['channel_profiles']:,} "
                f"profiles ({info['live']:,} live), {info['category_days']:,} category-days "
                f"({sizes['days']} days), {info['viewer_samples']:,} snapshots "
                f"({sizes['history']} channels x {sizes['days']} days + live streams); "
                f"{per_route} requests per route per repetition, one at a time; the "
                f"collector's refresh of the category windows {info['refresh_s']:.1f} s and "
                f"of the recent figures {info['recent_s']:.1f} s"
            ),
        )
    )
    return rows
