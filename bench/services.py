"""What the benchmarks run against: PostgreSQL, Redis, and real server processes.

The machine's PostgreSQL and Redis are used when ``DATABASE_URL``/``REDIS_URL`` or the
127.0.0.1 defaults answer, else embedded ones (``streamfold/embedded.py``). Either way the
run gets a throwaway database (created, migrated, dropped) and its own queue name, so it
never touches anyone's data. uvicorn and arq workers run as separate processes, as in
production, so their CPU can be read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from schema.settings import Settings
from streamfold import embedded, serving
from streamfold.migrate import upgrade_head

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
SECRET = "streamfold-bench-secret-0123456789"
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def libpq(url: str) -> str:
    return embedded.libpq_url(url)


@dataclass(frozen=True)
class Environment:
    database_url: str
    redis_url: str
    queue_name: str
    run_id: str

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": self.database_url,
            "redis_url": self.redis_url,
            "eventsub_secret": SECRET,
            "queue_name": self.queue_name,
            "log_format": "json",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def process_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            EVENTSUB_SECRET=SECRET,
            QUEUE_NAME=self.queue_name,
            LOG_FORMAT="json",
            PYTHONPATH=str(ROOT),
        )
        env.update(extra)
        return env


@contextlib.contextmanager
def environment() -> Iterator[Environment]:
    """A migrated throwaway database and a private queue name, removed afterwards."""
    admin = embedded.postgres_url(os.environ.get("DATABASE_URL"), ROOT / ".streamfold" / "bench")
    run_id = uuid.uuid4().hex[:10]
    name = f"streamfold_bench_{run_id}"
    with psycopg.connect(libpq(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_head(url)
        yield Environment(
            url,
            embedded.redis_url(os.environ.get("REDIS_URL"), ROOT / ".streamfold" / "bench"),
            f"streamfold-bench:{run_id}:queue",
            run_id,
        )
    finally:
        with psycopg.connect(libpq(admin), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout} s")


def log_file(name: str) -> Path:
    path = RESULTS / "logs" / f"{name}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], name: str) -> Iterator[subprocess.Popen[bytes]]:
    """A child process, logging to ``bench/results/logs``; stopped with SIGTERM on exit."""
    with log_file(name).open("ab") as log:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=log)  # noqa: S603
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


# The same uvicorn settings for the receiver and for its baseline, the Procfile's web's.
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    serving.HTTP_PROTOCOL,
    "--no-access-log",
    "--no-proxy-headers",
    "--log-level",
    "warning",
    "--timeout-keep-alive",
    str(serving.TIMEOUT_KEEP_ALIVE_SECONDS),
    "--limit-concurrency",
    str(serving.LIMIT_CONCURRENCY),
]


@contextlib.contextmanager
def uvicorn(factory: str, env: dict[str, str], name: str) -> Iterator[tuple[int, int]]:
    """Serve an app factory (``module:function``) on a free port; yield (port, pid)."""
    port = free_port()
    args = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1"]
    args += ["--port", str(port), *UVICORN_FLAGS]
    with process(args, env, name) as proc:
        wait_for_port(port, proc)
        yield port, proc.pid


def worker_args() -> list[str]:
    return [sys.executable, "-m", "streamfold", "worker"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
