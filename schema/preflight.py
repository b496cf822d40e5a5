"""Before a process starts serving: are PostgreSQL and Redis there at all?

An unreachable service at start is a deployment problem (wrong URL, server down, a
firewall), not a blip to retry through: say so in one line and exit, instead of a storm
of retries and tracebacks. Once running, outages are ridden out (503s, job retries).
"""

from __future__ import annotations

import psycopg
import redis

from schema.errors import StreamfoldError
from schema.logs import get_logger
from schema.settings import Settings

log = get_logger("schema.preflight")

CONNECT_TIMEOUT_SECONDS = 3


class ServiceUnreachable(StreamfoldError):
    status_code = 503
    code = "service_unreachable"


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _problem(service: str, exc: BaseException) -> str:
    detail = next(iter(str(exc).strip().splitlines()), "") or type(exc).__name__
    return f"{service}: {detail[:200]}"


def require_reachable(settings: Settings, process: str) -> None:
    """Raise ``ServiceUnreachable`` naming every configured service that does not answer,
    after logging it as one line."""
    problems = []
    if settings.database_url:
        try:
            with psycopg.connect(
                _libpq(settings.database_url), connect_timeout=CONNECT_TIMEOUT_SECONDS
            ) as conn:
                conn.execute("SELECT 1")
        except Exception as exc:
            problems.append(_problem("PostgreSQL (DATABASE_URL)", exc))
    if settings.redis_url:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=CONNECT_TIMEOUT_SECONDS,
        )
        try:
            client.ping()
        except Exception as exc:
            problems.append(_problem("Redis (REDIS_URL)", exc))
        finally:
            client.close()
    if problems:
        message = f"{process} cannot start: " + "; ".join(problems)
        log.error("startup.unreachable", process=process, problems=problems)
        raise ServiceUnreachable(message)
