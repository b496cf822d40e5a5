"""The Procfile's web runs uvicorn as ``streamfold.serving.serve`` does, so tests and
benchmarks exercise the server settings production uses."""

from __future__ import annotations

import shlex

from streamfold import serving
from tests.conftest import ROOT


def _web_options() -> dict[str, str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            words = shlex.split(line.removeprefix("web:"))
            assert words[0] == "uvicorn"
            options: dict[str, str] = {}
            for i, word in enumerate(words):
                if word.startswith("--"):
                    following = words[i + 1] if i + 1 < len(words) else ""
                    options[word] = "" if following.startswith("--") else following
            return options
    raise AssertionError("the Procfile has no web process")


def test_the_procfile_web_uses_the_settings_of_serve() -> None:
    options = _web_options()
    assert options["--http"] == serving.HTTP_PROTOCOL
    assert options["--timeout-keep-alive"] == str(serving.TIMEOUT_KEEP_ALIVE_SECONDS)
    assert options["--limit-concurrency"] == str(serving.LIMIT_CONCURRENCY)
    assert "--no-access-log" in options
    assert "--no-proxy-headers" in options
