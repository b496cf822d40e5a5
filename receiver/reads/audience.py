"""Viewer figures over a window: average and peak viewers, hours watched, streams seen.

Whole hours come from ``viewer_hours``, the samples rolled up per channel, hour and
stream (kept forever), and the partial hours at a window's edges from the samples
themselves (kept ``RETENTION_DAYS``): ``VIEWER_ROWS`` gives both in the rollup's shape,
one row per hour and stream or per edge sample, so every read aggregates them alike. An
edge older than the kept samples is read on its whole hour (``receiver/reads/windows.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from receiver.reads.windows import edge_horizon, kept_from, split

# Parameters: :b, the whole hours [:whole_from, :whole_to), two edge spans [:edgeN_from,
# :edgeN_to) (empty spans match nothing).
VIEWER_ROWS = """
    SELECT stream_id, hour, samples, viewer_sum, peak_viewers, viewer_seconds,
           first_sampled_at, last_sampled_at, started_at, title, game_name
    FROM viewer_hours
    WHERE broadcaster_id = :b AND hour >= :whole_from AND hour < :whole_to
    UNION ALL
    SELECT stream_id, date_trunc('hour', sampled_at, 'UTC'), 1, viewer_count, viewer_count,
           viewer_count::bigint * interval_seconds, sampled_at, sampled_at, started_at,
           title, game_name
    FROM viewer_samples
    WHERE broadcaster_id = :b
      AND ((sampled_at >= :edge1_from AND sampled_at < :edge1_to)
           OR (sampled_at >= :edge2_from AND sampled_at < :edge2_to))
"""

# Over rows of ``VIEWER_ROWS`` or ``viewer_hours`` (``r``): the same figures, to the
# bit, as avg(), max() and sum() over the samples they roll up.
FIGURES = """
    (sum(r.viewer_sum)::numeric / nullif(sum(r.samples), 0))::float AS avg_viewers,
    max(r.peak_viewers) AS peak_viewers,
    (sum(r.viewer_seconds) / 3600.0)::float AS hours_watched
"""
# The newest title and category among the rows.
LATEST = """
    (array_agg(r.title ORDER BY r.last_sampled_at DESC))[1] AS title,
    (array_agg(r.game_name ORDER BY r.last_sampled_at DESC))[1] AS game_name
"""


@dataclass(frozen=True, slots=True)
class ViewerWindow:
    """``VIEWER_ROWS``' parameters for one window, and whether its edges are exact."""

    params: dict[str, datetime]
    exact_edges: bool


async def viewer_window(session: AsyncSession, since: datetime, until: datetime) -> ViewerWindow:
    (start, end), exact = edge_horizon(since, until, await kept_from(session, "viewer_samples"))
    (whole_from, whole_to), edges = split(start, end)
    (e1, e1_to), (e2, e2_to) = [*edges, (start, start), (start, start)][:2]
    params = {"whole_from": whole_from, "whole_to": whole_to}
    params |= {"edge1_from": e1, "edge1_to": e1_to, "edge2_from": e2, "edge2_to": e2_to}
    return ViewerWindow(params, exact)
