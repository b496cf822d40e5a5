"""``streamfold dev`` as a newcomer meets it: embedded services, the banner first, and a
Ctrl-C (SIGINT to the whole process group, as a terminal sends it) that stops everything."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from streamfold.dev import _stop_processes
from tests.conftest import ROOT, eventually, free_port

# A console log line of the product: "<instant>Z [level] startup.something key=value".
OUR_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[\w+\s*\] (startup|receiver|schema)\.")


def _processes() -> dict[int, tuple[str, int, int, str]]:
    """pid -> (state, process group, session, command line) of every live process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry.name)] = (stat[0], int(stat[2]), int(stat[3]), cmdline)
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid, (state, *_) in _processes().items() if pid in pids and state != "Z"}


def test_stopping_children_waits_once_for_all_then_kills() -> None:
    ignoring = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)"
    )
    children = [
        subprocess.Popen([sys.executable, "-c", ignoring], stdout=subprocess.PIPE) for _ in range(3)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ignoring\n"  # its handler is in place
    started = time.monotonic()
    _stop_processes(children, within=1.0)
    # One shared deadline, not one per child: three stubborn children cost 1 s, not 3.
    assert time.monotonic() - started < 2.5
    assert all(child.returncode == -signal.SIGKILL for child in children)
    for child in children:
        assert child.stdout is not None
        child.stdout.close()


class _Dev:
    """``streamfold dev`` started as a terminal would, in its own process group, with
    embedded services under ``data_dir``; its output collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
        self.process = process
        self.reader = reader
        self.lines: list[str] = []

    @classmethod
    async def start(cls, data_dir: Path, port: int) -> _Dev:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(STREAMFOLD_DATA_DIR=str(data_dir), PORT=str(port))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamfold",
            "dev",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal gives it
        )
        lines: list[str] = []

        async def read() -> None:
            assert process.stdout is not None
            async for line in process.stdout:
                lines.append(line.decode(errors="replace").rstrip())

        dev = cls(process, asyncio.create_task(read()))
        dev.lines = lines
        return dev

    async def close(self) -> None:
        if self.process.returncode is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            await self.process.wait()
        self.reader.cancel()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Under the checkout rather than /tmp/pytest-of-*: the embedded PostgreSQL runs as its
    # own user when started by root, and must be able to reach its data folder.
    path = ROOT / ".streamfold" / f"dev-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_dev_shows_the_banner_once_ready_and_ctrl_c_stops_everything(
    data_dir: Path,
) -> None:
    port = free_port()
    dev = await _Dev.start(data_dir, port)
    lines = dev.lines
    try:
        await eventually(lambda: "streamfold is running." in lines, within=180)
        async with httpx.AsyncClient() as client:
            ready = await client.get(f"http://127.0.0.1:{port}/readyz")
        assert ready.status_code == 200  # the banner came after the web was ready

        # The first screen is the banner; the embedded servers' chatter is in files. The web
        # may already have logged its own start-up (structured lines of ours), nothing else.
        before = [line for line in lines[: lines.index("streamfold is running.")] if line]
        assert [line for line in before if not OUR_LOG_LINE.match(line)] == []
        logs = data_dir / "logs"
        assert any(f"in {logs}/" in line for line in lines)
        assert "initdb" in (logs / "postgres.log").read_text()
        assert "Ready to accept connections" in (logs / "redis.log").read_text()

        processes = _processes()
        group = {pid for pid, (_, pgid, _, _) in processes.items() if pgid == dev.process.pid}
        postgres = {pid for pid, (*_, cmd) in processes.items() if str(data_dir) in cmd}
        redis_url = (data_dir / "run.env").read_text().split("REDIS_URL=redis://")[1]
        redis_address = redis_url.split("/", 1)[0]  # redis-server shows it in its title
        redis = {pid for pid, (*_, cmd) in processes.items() if redis_address in cmd}
        assert postgres, "the embedded PostgreSQL is running"
        assert redis, "the embedded Redis is running"
        servers = postgres | redis
        # Redis is outside the terminal's group: it outlives its clients' orderly stop.
        assert all(processes[pid][1] != dev.process.pid for pid in redis)

        started = time.monotonic()
        os.killpg(dev.process.pid, signal.SIGINT)
        async with asyncio.timeout(30):
            code = await dev.process.wait()
        assert code == 0
        assert time.monotonic() - started < 25
        await eventually(lambda: not _alive(group | servers), within=10)
        assert not (data_dir / "run.env").exists()
    finally:
        await dev.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_dev_killed_outright_takes_its_children_with_it(data_dir: Path) -> None:
    """SIGKILL leaves no orderly stop: the kernel's parent-death signal stops the web,
    worker, embedded Redis and local Twitch. The embedded PostgreSQL is a daemon of its
    own, reused by the next ``dev``; this test stops it itself."""
    dev = await _Dev.start(data_dir, free_port())
    try:
        await eventually(lambda: "streamfold is running." in dev.lines, within=180)
        await eventually(lambda: bool(_children(dev.process.pid) - _postgres(data_dir)), within=30)
        children = _children(dev.process.pid) - _postgres(data_dir)
        commands = " ".join(_processes()[pid][3] for pid in children)
        for name in ("streamfold web", "streamfold worker", "redis-server", "local-twitch"):
            assert name in commands, f"{name} runs under dev"

        os.kill(dev.process.pid, signal.SIGKILL)  # the process alone, not its group
        await dev.process.wait()
        await eventually(lambda: not _alive(children), within=20)
    finally:
        await dev.close()
        for pid in _postgres(data_dir):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown of the postmaster
        await eventually(lambda: not _alive(_postgres(data_dir)), within=20)


def _children(parent: int) -> set[int]:
    """Every live descendant of ``parent``."""
    processes = _processes()
    parents = {pid: _parent(pid) for pid in processes}
    found: set[int] = set()
    frontier = {parent}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return _alive(found)


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(stat[1])


def _postgres(data_dir: Path) -> set[int]:
    return _alive({pid for pid, (*_, cmd) in _processes().items() if str(data_dir) in cmd})
