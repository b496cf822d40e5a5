"""``python -m bench [--quick] [--only SECTION ...]``: run, print the table, save JSON."""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from bench.services import RESULTS, Environment, environment
from bench.stats import Row, render
from schema.logs import configure_logging

Section = Callable[..., list[Row]]
FAILED = "failed"  # the one row of a section that raised


def _sections() -> dict[str, Section]:
    from bench import (
        discovery_bench,
        e2e_bench,
        fold_bench,
        fold_steps,
        live_bench,
        query_bench,
        receiver_bench,
        reconcile_bench,
        storage_bench,
    )

    return {
        "receiver": receiver_bench.run,
        "fold": fold_bench.run,
        "foldsteps": fold_steps.run,
        "e2e": e2e_bench.run,
        "queries": query_bench.run,
        "discovery": discovery_bench.run,
        "reconcile": reconcile_bench.run,
        "scaling": fold_bench.run_scaling,
        "storage": storage_bench.run,
        "live": live_bench.run,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes")
    parser.add_argument(
        "--only", action="append", metavar="SECTION", help="run only these sections"
    )
    parser.add_argument("--repetitions", type=int, default=3, help="measured runs (>= 3)")
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("console", level=logging.WARNING)
    sections = _sections()
    chosen = args.only or list(sections)
    unknown = [name for name in chosen if name not in sections]
    if unknown:
        print(f"bench: unknown section(s) {unknown}; choose from {list(sections)}", file=sys.stderr)
        return 2
    rows: list[Row] = []
    timings: dict[str, float] = {}
    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = ""
    with environment() as env:
        for name in chosen:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            rows += _run_section(sections[name], name, env, args)
            timings[name] = round(time.monotonic() - began, 1)
            # Saved after every section, so an interrupted run keeps what it measured.
            path = _save(rows, args, timings, time.monotonic() - started, stamp)
    print(render(rows))
    print(f"\nraw figures: {path}  ({time.monotonic() - started:.0f} s)")
    return exit_code(rows)


def exit_code(rows: list[Row]) -> int:
    """1 if a section failed (the others' figures are printed and saved all the same)."""
    failed = [r.section for r in rows if r.name == FAILED]
    if failed:
        print(f"bench: section(s) failed: {failed}", file=sys.stderr)
        return 1
    return 0


def _run_section(
    section: Section, name: str, env: Environment, args: argparse.Namespace
) -> list[Row]:
    try:
        return section(env, quick=args.quick, repetitions=max(3, args.repetitions))
    except Exception as exc:  # one broken section must not hide the others' figures
        logging.getLogger("bench").exception("section %s failed", name)
        return [Row(name, FAILED, "", note=f"{type(exc).__name__}: {exc}"[:200])]


def _save(
    rows: list[Row],
    args: argparse.Namespace,
    timings: dict[str, float],
    total: float,
    stamp: str,
) -> str:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    document = {
        "started": stamp,
        "quick": args.quick,
        "repetitions": max(3, args.repetitions),
        "machine": {"cpus": _cpus(), "python": platform.python_version()},
        "section_seconds": timings,
        "total_seconds": round(total, 1),
        "rows": [row.as_json() for row in rows],
    }
    path.write_text(json.dumps(document, indent=2))
    return str(path)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def main(argv: list[str] | None = None) -> int:
    return run(argv)
