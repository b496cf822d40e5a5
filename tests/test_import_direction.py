"""Imports run one way: product packages never import the benchmarks or the tests, and the
benchmarks never import the tests (the tests may import either)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "receiver": {"bench", "tests"},
    "aggregator": {"bench", "tests"},
    "schema": {"bench", "tests"},
    "streamfold": {"bench", "tests"},
    "bench": {"tests"},
}


def imported_tops(path: Path) -> set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            tops |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            tops.add(node.module.split(".")[0])
    return tops


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_only_downward(package: str) -> None:
    offending = [
        (str(path.relative_to(ROOT)), sorted(imported_tops(path) & FORBIDDEN[package]))
        for path in sorted((ROOT / package).rglob("*.py"))
        if imported_tops(path) & FORBIDDEN[package]
    ]
    assert offending == []
