"""The streamfold command for operators: run, inspect, exercise."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from receiver.api.params import WINDOWS
from schema.errors import ConfigurationError
from schema.logs import configure_logging
from schema.preflight import ServiceUnreachable
from schema.settings import Settings, load_settings
from streamfold import localenv


def _settings(*required: str, local: bool = False) -> Settings:
    if local:
        localenv.apply_local_defaults()
    settings = load_settings()
    settings.require(*required)
    configure_logging(settings.log_format)
    return settings


def cmd_dev(args: argparse.Namespace) -> int:
    from streamfold.dev import run_dev

    configure_logging("console")
    return run_dev()


def cmd_web(args: argparse.Namespace) -> int:
    import uvicorn

    from receiver.app import create_app
    from schema.preflight import require_reachable
    from streamfold import serving

    settings = _settings("database_url", "redis_url", "eventsub_secret")
    require_reachable(settings, "web")
    uvicorn.run(
        create_app(settings),
        host=args.host,
        port=settings.port,
        log_level="warning",
        # X-Forwarded-For is judged by the app against TRUSTED_PROXIES, not by uvicorn.
        proxy_headers=False,
        # The Procfile's bounds: heads in size and time, connections at once.
        http=serving.HTTP_PROTOCOL,
        limit_concurrency=serving.LIMIT_CONCURRENCY,
        timeout_keep_alive=serving.TIMEOUT_KEEP_ALIVE_SECONDS,
        # On SIGTERM: stop accepting, let requests in flight finish for this long.
        timeout_graceful_shutdown=settings.web_shutdown_grace_seconds,
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from aggregator.worker import run
    from schema.preflight import require_reachable

    settings = _settings("database_url", "redis_url")
    require_reachable(settings, "worker")
    run(settings)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from streamfold.migrate import upgrade_head

    upgrade_head(_settings("database_url", local=args.local).database_url or "")
    print("database is at the newest migration")
    return 0


def _window(args: argparse.Namespace) -> tuple[datetime, datetime]:
    now = datetime.now(UTC)
    if args.window:
        return now - WINDOWS[args.window], now
    since = datetime.fromisoformat(args.since) if args.since else now - timedelta(days=7)
    until = datetime.fromisoformat(args.until) if args.until else now
    return since.astimezone(UTC), until.astimezone(UTC)


def cmd_show(args: argparse.Namespace) -> int:
    from schema.db import create_engine, create_sessionmaker
    from streamfold.show import render

    settings = _settings("database_url", local=True)
    since, until = _window(args)

    async def go() -> str:
        engine = create_engine(settings.database_url or "", pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session:
                return await render(session, args.broadcaster_id, since, until, datetime.now(UTC))
        finally:
            await engine.dispose()

    print(asyncio.run(go()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from streamfold.simulate import build_plan, describe, send

    settings = _settings("eventsub_secret", local=True)
    url = (args.url or settings.public_base_url or "").rstrip("/") + "/eventsub/callback"
    secret = settings.eventsub_secret.get_secret_value() if settings.eventsub_secret else ""
    not_before = {}
    if settings.database_url is not None:
        from streamfold.simulate import last_ends

        not_before = asyncio.run(last_ends(settings, args.channels))
    now = datetime.now(UTC)
    plan = build_plan(
        secret.encode(),
        channels=args.channels,
        messages=args.messages,
        chatters=args.chatters,
        now=now,
        not_before=not_before,
    )
    print(
        f"sending {len(plan.deliveries)} deliveries (+{len(plan.refused)} that must be "
        f"refused) to {url}"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from streamfold.simulate_local import local_twitch_url

    if settings.database_url is not None and local_twitch_url(settings) is not None:
        from streamfold.simulate_live import send_with_local_twitch

        base = url.removesuffix("/eventsub/callback")
        statuses = asyncio.run(send_with_local_twitch(settings, base, url, plan))
    else:
        statuses = asyncio.run(send(url, plan))
    print("answers:", ", ".join(f"{n} x {code}" for code, n in sorted(statuses.items())))
    print(describe(plan))
    if settings.database_url is None:
        print("\nSee them with: streamfold show " + " / ".join(plan.expected))
        return 0
    from streamfold.simulate import wait_and_compare

    return asyncio.run(wait_and_compare(settings, plan))


def cmd_local_twitch(args: argparse.Namespace) -> int:
    from streamfold.twitch_local_run import LOCAL_CLIENT_ID, serve

    settings = _settings()
    secret = settings.twitch_client_secret
    serve(
        args.port,
        settings.twitch_client_id or LOCAL_CLIENT_ID,
        secret.get_secret_value() if secret else "local-client-secret",
    )
    return 0


def cmd_requeue_failed(args: argparse.Namespace) -> int:
    from aggregator.requeue import requeue_failed

    settings = _settings("redis_url")
    moved = asyncio.run(requeue_failed(settings))
    print(f"re-queued {moved} parked fold batch(es)")
    return 0


def cmd_rotate_token_keys(args: argparse.Namespace) -> int:
    from streamfold.channels_cli import rotate_keys

    settings = _settings("database_url", "token_encryption_keys")
    rotated = asyncio.run(rotate_keys(settings))
    print(f"re-encrypted the tokens of {rotated} user(s) with the newest key")
    return 0


def cmd_channels(args: argparse.Namespace) -> int:
    from streamfold.channels_cli import describe_channels

    print(asyncio.run(describe_channels(_settings("database_url"))))
    return 0


def cmd_follows(args: argparse.Namespace) -> int:
    from streamfold.channels_cli import describe_follows

    print(asyncio.run(describe_follows(_settings("database_url", "redis_url", local=True))))
    return 0


def cmd_subscriptions(args: argparse.Namespace) -> int:
    from streamfold.channels_cli import sync

    settings = _settings(
        "database_url", "redis_url", "twitch_client_id", "twitch_client_secret", "eventsub_secret"
    )
    report = asyncio.run(sync(settings, retry_blocked=args.retry_blocked))
    print("\n".join(report.lines()))
    return 1 if report.failed else 0


def cmd_reconcile(args: argparse.Namespace) -> int:
    from streamfold.jobs import describe_result, run_reconcile

    settings = _settings(
        "database_url", "twitch_client_id", "twitch_client_secret", "eventsub_secret", local=True
    )
    result = asyncio.run(run_reconcile(settings))
    print(describe_result(result))
    return 1 if result.outcome == "failed" else 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from streamfold.jobs import jobs_report

    settings = _settings("database_url", local=True)
    print(asyncio.run(jobs_report(settings, args.job, args.limit)))
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from streamfold.jobs import run_retention

    report, failed = asyncio.run(run_retention(_settings("database_url", local=True), args.dry_run))
    print(report)
    return 1 if failed else 0


def cmd_status(args: argparse.Namespace) -> int:
    from streamfold.status import gather, render

    checks = asyncio.run(gather(_settings("database_url", "redis_url", local=True)))
    print(render(checks))
    return 0 if all(c.ok for c in checks) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamfold", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], help_: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    add("dev", cmd_dev, "run everything locally (embedded PostgreSQL/Redis when no URL is set)")
    web = add("web", cmd_web, "serve the receiver and API with uvicorn on $PORT")
    web.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server binds all interfaces
    add("worker", cmd_worker, "run an arq worker that folds notifications")
    migrate = add("migrate", cmd_migrate, "apply database migrations (alembic upgrade head)")
    migrate.add_argument("--local", action="store_true", help="use the local data folder's URLs")
    show = add("show", cmd_show, "print a channel's sessions and hourly rows")
    show.add_argument("broadcaster_id")
    show.add_argument("--since", help="RFC 3339 instant (default: 7 days ago)")
    show.add_argument("--until", help="RFC 3339 instant (default: now)")
    show.add_argument("--window", choices=sorted(WINDOWS))
    sim = add("simulate", cmd_simulate, "send a signed, realistic event stream to a receiver")
    sim.add_argument("--url", help="receiver base URL (default: PUBLIC_BASE_URL)")
    sim.add_argument("--channels", type=int, default=3)
    sim.add_argument("--messages", type=int, default=600)
    sim.add_argument("--chatters", type=int, default=40)
    local = add(
        "local-twitch",
        cmd_local_twitch,
        "serve the local Twitch stand-in (consent page, Helix, EventSub) on 127.0.0.1",
    )
    local.add_argument("--port", type=int, default=8090)
    add(
        "requeue-failed",
        cmd_requeue_failed,
        "put fold batches that ran out of retries back on the queue",
    )
    add(
        "rotate-token-keys",
        cmd_rotate_token_keys,
        "re-encrypt stored Twitch tokens with the first of TOKEN_ENCRYPTION_KEYS",
    )
    add("channels", cmd_channels, "list channels and the state of their subscriptions")
    add(
        "follows",
        cmd_follows,
        "tracked channels, who follows them, their online/offline subscriptions, the budget",
    )
    subs = add(
        "subscriptions",
        cmd_subscriptions,
        "sync: make Twitch's EventSub subscriptions match ours and print what changed",
    )
    subs.add_argument("action", choices=["sync"])
    subs.add_argument(
        "--retry-blocked",
        action="store_true",
        help="also re-create chat subscriptions blocked by a ban or a lost moderator status"
        " (after the bot was unbanned or made moderator again)",
    )
    add("reconcile", cmd_reconcile, "run one reconciliation with Helix now and print what it did")
    jobs = add("jobs", cmd_jobs, "recent periodic job runs and their success rate over 24 h")
    jobs.add_argument("--job", help="only this job (e.g. reconcile)")
    jobs.add_argument("--limit", type=int, default=20, help="how many recent runs (default 20)")
    retention = add(
        "retention",
        cmd_retention,
        "make partitions ahead and remove raw rows past RETENTION_DAYS / LEDGER_RETENTION_DAYS"
        " now, as the daily job does, and print what went",
    )
    retention.add_argument(
        "--dry-run", action="store_true", help="only print what would be made and removed"
    )
    add(
        "status",
        cmd_status,
        "queue, fold lag, periodic jobs, subscriptions, chat gaps, database size: each ok or"
        " look at this (exit 1 if any)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigurationError as exc:
        print(f"streamfold: {exc.detail}", file=sys.stderr)
        return 2
    except ServiceUnreachable:
        return 3  # logged as one line already
    except KeyboardInterrupt:
        return 130
