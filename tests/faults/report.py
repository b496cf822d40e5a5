"""Each fault test reports what it sent, what was acknowledged and what was folded."""

from __future__ import annotations

from pathlib import Path

SUMMARY = Path(__file__).resolve().parents[2] / ".streamfold" / "fault-figures.txt"


def report(fault: str, sent: int, acknowledged: int, folded: int | str, **extra: object) -> str:
    """Print the figures (``pytest -s`` shows them) and append them to
    ``.streamfold/fault-figures.txt``."""
    more = "".join(f", {k}={v}" for k, v in extra.items())
    line = f"{fault}: sent={sent} acknowledged={acknowledged} folded={folded}{more}"
    print(line)
    SUMMARY.parent.mkdir(parents=True, exist_ok=True)
    with SUMMARY.open("a", encoding="utf-8") as out:
        out.write(line + "\n")
    return line
