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


def run_dev() -> int:
    env = dict(os.environ)
    for key, value in localenv.ensure_local_secrets().items():
        env.setdefault(key, value)
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("PORT", "8000")
    env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{env['PORT']}")
    embedded_note = []
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.start_postgres(localenv.DATA_DIR)
        embedded_note.append(f"PostgreSQL (embedded, data in {localenv.DATA_DIR}/postgres)")
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = embedded.start_redis(localenv.DATA_DIR)
        embedded_note.append(f"Redis (embedded, data in {localenv.DATA_DIR}/redis.rdb)")
    upgrade_head(env["DATABASE_URL"])
    localenv.write_run_file(
        {k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "PORT", "PUBLIC_BASE_URL")}
    )
    children = [
        subprocess.Popen([sys.executable, "-m", "streamfold", "web"], env=env),
        subprocess.Popen([sys.executable, "-m", "streamfold", "worker"], env=env),
    ]
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
    try:
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        localenv.RUN_FILE.unlink(missing_ok=True)
    failed = [c.args[-1] for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
    if failed:
        print(f"stopped: {', '.join(failed)} exited with an error (see the log above)")
        return 1
    return 0
