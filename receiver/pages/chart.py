"""Charts as inline SVG, rendered on the server. The hourly chart: chat messages and unique
chatters as bars, average viewers as a line on its own scale; a channel's snapshots: viewers
as one line per stream. Pure: rows in, markup out.
No script and no style attribute, so the page's Content-Security-Policy holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from receiver.reads.queries import HourRow

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 44, 12, 28


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def hourly_svg(hours: Sequence[HourRow]) -> str:
    if not hours:
        return ""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / len(hours)
    bar = max(1.0, slot * 0.38)
    chat_max = _scale([h.chat_messages for h in hours])
    viewer_max = _scale([h.avg_viewers or 0.0 for h in hours])
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="chart-title"><title id="chart-title">Chat messages, unique '
        "chatters and average viewers per hour (UTC)</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">'
        f"{int(chat_max)}</text>",
        f'<text class="tick viewers" x="{LEFT + plot_w + 4}" y="{TOP + 10}">'
        f"{int(viewer_max)}</text>",
    ]
    points = []
    for i, h in enumerate(hours):
        x = LEFT + i * slot + slot * 0.1
        for j, (value, css) in enumerate(
            ((h.chat_messages, "messages"), (h.unique_chatters, "chatters"))
        ):
            height = plot_h * value / chat_max
            label = escape(f"{h.hour:%Y-%m-%d %H}:00Z: {value} {css}")
            parts.append(
                f'<rect class="{css}" x="{x + j * bar:.1f}" y="{TOP + plot_h - height:.1f}" '
                f'width="{bar:.1f}" height="{height:.1f}"><title>{label}</title></rect>'
            )
        if h.avg_viewers is not None:
            cx = LEFT + (i + 0.5) * slot
            cy = TOP + plot_h - plot_h * h.avg_viewers / viewer_max
            points.append(f"{cx:.1f},{cy:.1f}")
            parts.append(
                f'<circle class="viewers" cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>'
                f"{escape(f'{h.hour:%Y-%m-%d %H}:00Z: {h.avg_viewers:.1f} avg viewers')}"
                "</title></circle>"
            )
        if len(hours) <= 12 or i % max(1, len(hours) // 8) == 0:
            parts.append(
                f'<text class="tick" x="{LEFT + (i + 0.5) * slot:.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{h.hour:%d %H}h</text>'
            )
    if len(points) > 1:
        parts.append(f'<polyline class="viewers" points="{" ".join(points)}"/>')
    parts.append("</svg>")
    return "".join(parts)


# At most this many points per line: a 90-day window of 5-minute snapshots (25,920) would
# otherwise make a megabyte of SVG; each point keeps the largest count of its slot.
MAX_POINTS = 240


def _thinned(
    series: Sequence[tuple[datetime, int]], start: datetime, span: float
) -> list[tuple[float, int]]:
    slots: dict[int, int] = {}
    for at, viewers in series:
        slot = min(MAX_POINTS - 1, int((at - start).total_seconds() / span * MAX_POINTS))
        slots[slot] = max(viewers, slots.get(slot, 0))
    return [(slot / (MAX_POINTS - 1), viewers) for slot, viewers in sorted(slots.items())]


def snapshots_svg(streams: Sequence[Sequence[tuple[datetime, int]]]) -> str:
    """Viewers of each stream's 5-minute snapshots (oldest first): one line per stream, so
    the time between streams is a gap rather than a slope. The time axis runs from the
    first snapshot to the last, not over the whole window: a two-hour stream in a 90-day
    window would otherwise be a dot."""
    if not any(streams):
        return ""
    since = min(s[0][0] for s in streams if s)
    until = max(s[-1][0] for s in streams if s)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    span = max((until - since).total_seconds(), 1.0)
    top = _scale([float(v) for s in streams for _, v in s])
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="snapshots-title"><title id="snapshots-title">Viewers in each '
        "5-minute snapshot (UTC)</title>",
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{LEFT + plot_w}" '
        f'y2="{TOP + plot_h}"/>',
        f'<text class="tick" x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end">{int(top)}</text>',
        f'<text class="tick" x="{LEFT}" y="{HEIGHT - 8}">{since:%Y-%m-%d %H:%M}</text>',
        f'<text class="tick" x="{LEFT + plot_w}" y="{HEIGHT - 8}" text-anchor="end">'
        f"{until:%Y-%m-%d %H:%M}</text>",
    ]
    for series in streams:
        points = [
            (LEFT + x * plot_w, TOP + plot_h - plot_h * v / top)
            for x, v in _thinned(series, since, span)
        ]
        if len(points) == 1:
            (cx, cy), (at, viewers) = points[0], series[-1]
            parts.append(
                f'<circle class="viewers" cx="{cx:.1f}" cy="{cy:.1f}" r="3"><title>'
                f"{escape(f'{at:%Y-%m-%d %H:%M}Z: {viewers} viewers')}</title></circle>"
            )
        elif points:
            joined = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            parts.append(f'<polyline class="viewers" points="{joined}"/>')
    parts.append("</svg>")
    return "".join(parts)
