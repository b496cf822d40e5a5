"""``streamfold dev``: the whole product on one machine, until Ctrl-C.

Starts embedded PostgreSQL and Redis when ``DATABASE_URL``/``REDIS_URL`` are unset,
applies migrations, and runs the web and worker processes of the Procfile side by side.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from streamfold import embedded, localenv
from streamfold.migrate import upgrade_head


def _wait_until_reachable(url: str, default_port: int) -> None:
    for _ in range(100):
        if embedded.tcp_reachable(url, default_port):
            return
        time.sleep(0.1)
    raise SystemExit(f"embedded service at {url} did not start")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly stop as Ctrl-C, embedded services included


def run_dev() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    env = dict(os.environ)
    for key, value in localenv.ensure_local_secrets().items():
        env.setdefault(key, value)
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("EVENTSUB_ACCEPT_ANY_CHALLENGE", "true")  # for the Twitch CLI
    env.setdefault("PORT", "8000")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
    embedded_note = []
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.start_postgres(localenv.DATA_DIR)
        embedded_note.append(f"PostgreSQL (embedded, data in {localenv.DATA_DIR}/postgres)")
    upgrade_head(env["DATABASE_URL"])
    commands: dict[str, list[str]] = {}
    children: dict[str, subprocess.Popen[bytes]] = {}
    if not env.get("REDIS_URL"):
        port = embedded.free_port()
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
        commands["redis"] = embedded.redis_command(localenv.DATA_DIR, port)
        children["redis"] = subprocess.Popen(commands["redis"], stdout=subprocess.DEVNULL)  # noqa: S603
        _wait_until_reachable(env["REDIS_URL"], 6379)
        embedded_note.append(f"Redis (embedded, data in {localenv.DATA_DIR}/redis)")
    localenv.write_run_file(
        {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "PORT", "PUBLIC_BASE_URL")}
    )
    commands["web"] = [sys.executable, "-m", "streamfold", "web"]
    commands["worker"] = [sys.executable, "-m", "streamfold", "worker"]
    for name in ("web", "worker"):
        children[name] = subprocess.Popen(commands[name], env=env)  # noqa: S603
    base = env["PUBLIC_BASE_URL"]
    print(
        f"""
streamfold is running.
  callback URL     {base}/eventsub/callback
  EventSub secret  {env["EVENTSUB_SECRET"]}   (kept in {localenv.SECRETS_FILE})
  services         {"; ".join(embedded_note) or "from DATABASE_URL and REDIS_URL"}
  health           {base}/readyz     metrics {base}/metrics

Try next, in another terminal (same folder):
  .venv/bin/streamfold simulate          # signed live streams, chat, retries, offline
  .venv/bin/streamfold show 1001         # that channel's sessions and hourly rows

Ctrl-C stops everything.
""",
        flush=True,
    )
    restarts = 0
    try:
        while True:
            time.sleep(0.5)
            for name, child in children.items():
                if child.poll() is not None:
                    # Like a process supervisor in production: restart, but not in a loop.
                    restarts += 1
                    if restarts > 20:
                        print(f"stopping: {name} keeps exiting (see the log above)")
                        return 1
                    print(f"{name} exited with {child.returncode}; restarting it", flush=True)
                    time.sleep(min(restarts, 5))
                    children[name] = subprocess.Popen(commands[name], env=env)  # noqa: S603
    except KeyboardInterrupt:
        return 0
    finally:
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children.values():
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        localenv.RUN_FILE.unlink(missing_ok=True)
