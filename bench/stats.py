"""Figures, their summaries and the printed table. Pure."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = math.ceil(q / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


@dataclass
class Row:
    """One printed row: a figure measured once per repetition, and what it is compared to.

    ``higher_is_better`` decides the ratio's direction so that a ratio above 1 always
    reads "better than the baseline" and the target is a minimum ratio or a ceiling."""

    section: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def ratio(self) -> float | None:
        if self.median is None or not self.baseline:
            return None
        return self.median / self.baseline

    def as_json(self) -> dict[str, object]:
        return {
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            "values": self.values,
            "median": self.median,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "baseline": self.baseline,
            "baseline_name": self.baseline_name,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "note": self.note,
        }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def render(rows: Sequence[Row]) -> str:
    header = ("benchmark", "median", "min-max", "unit", "baseline", "ratio", "target")
    lines: list[tuple[str, ...]] = [header]
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            lines.append((f"[{section}]", "", "", "", "", "", ""))
        spread = f"{_fmt(min(row.values))}-{_fmt(max(row.values))}" if row.values else "-"
        baseline = f"{_fmt(row.baseline)} {row.baseline_name}".strip() if row.baseline else ""
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else ""
        verdict = {True: " ok", False: " MISSED", None: ""}[row.met]
        target = (row.target + verdict).strip()
        median = _fmt(row.median) if row.values else "n/a"
        lines.append(("  " + row.name, median, spread, row.unit, baseline, ratio, target))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for line in lines:
        if line[0].startswith("[") and not any(line[1:]):
            out.append(line[0])
            continue
        rest = zip(line[1:], widths[1:], strict=True)
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in rest]
        out.append("  ".join(cells).rstrip())
    notes = [f"  {row.section} / {row.name}: {row.note}" for row in rows if row.note]
    if notes:
        out += ["", "notes:", *notes]
    return "\n".join(out)
