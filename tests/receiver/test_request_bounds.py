"""Bounds the web process keeps by itself, over real sockets against uvicorn: slow or
vanishing request bodies never hold a database connection, a drained pool is a 503,
anonymous probes cost the database little, and no response echoes a Host header."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.app import create_app
from receiver.errors import EXCEPTION_HANDLERS
from schema.db import create_engine
from schema.settings import Settings
from tests.conftest import Clock, eventually, serve
from tests.receiver.api_script import BOB, VIEWER
from tests.receiver.people import add_user, sign_in


async def _open(base: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def _start_slow_body(base: str, cookie: str) -> asyncio.StreamWriter:
    """POST /api/tokens announcing 100 bytes of body and sending 8 of them."""
    _, writer = await _open(base)
    writer.write(
        f"POST /api/tokens HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"name":'
    )
    await writer.drain()
    return writer


@pytest.fixture
async def web(settings: Settings, clock: Clock) -> AsyncIterator[tuple[str, Starlette]]:
    app = create_app(settings, clock=clock)
    async with serve(app) as base:
        yield base, app


async def test_slow_bodies_of_one_viewer_leave_the_pool_to_everyone_else(
    web: tuple[str, Starlette], settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    base, app = web
    await add_user(sessions, VIEWER, "viewer", streamer=False)
    await add_user(sessions, BOB, "bob", streamer=True)
    viewer = (await sign_in(sessions, settings, VIEWER))["Cookie"]
    # The pool is 5 + 5: ten trickled bodies would take every connection it has.
    writers = [await _start_slow_body(base, viewer) for _ in range(10)]
    try:
        await eventually(lambda: app.state.ctx.body_deadlines.reading() == 10, within=10)
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:
            me = await client.get("/api/me", headers=await sign_in(sessions, settings, BOB))
        assert me.status_code == 200, me.text
        async with sessions() as session:
            holders = await session.scalar(
                text("""SELECT count(*) FROM pg_stat_activity
                        WHERE datname = current_database() AND state = 'idle in transaction'""")
            )
        assert holders == 0
    finally:
        for writer in writers:
            writer.close()


async def test_a_client_that_leaves_mid_body_is_not_logged_as_an_error(
    web: tuple[str, Starlette],
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    base, app = web
    await add_user(sessions, VIEWER, "viewer", streamer=False)
    viewer = (await sign_in(sessions, settings, VIEWER))["Cookie"]
    with structlog.testing.capture_logs() as logged, caplog.at_level(logging.ERROR):
        writer = await _start_slow_body(base, viewer)
        await eventually(lambda: app.state.ctx.body_deadlines.reading() == 1, within=10)
        writer.close()
        await eventually(lambda: app.state.ctx.body_deadlines.reading() == 0, within=10)
    assert [e for e in logged if e["log_level"] in ("error", "critical")] == []
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_a_body_that_stalls_is_cut_off_with_408_before_any_database_work(
    web: tuple[str, Starlette], settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> None:
    from receiver.body import BodyDeadlines

    base, app = web
    app.state.ctx.body_deadlines = BodyDeadlines(0.5)
    await add_user(sessions, VIEWER, "viewer", streamer=False)
    viewer = (await sign_in(sessions, settings, VIEWER))["Cookie"]
    reader, writer = await _open(base)
    writer.write(
        f"POST /api/tokens HTTP/1.1\r\nHost: x\r\nCookie: {viewer}\r\n"
        "Content-Length: 100\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(5):
        status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"408"


async def test_a_drained_pool_is_a_503_with_retry_after(database_url: str) -> None:
    """Every connection busy for the pool's whole wait: an overloaded service, not a bug."""
    engine = create_engine(database_url, pool_size=1, pool_timeout=0.2)

    async def query(request: Request) -> Response:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/q", query)], exception_handlers=EXCEPTION_HANDLERS)
    try:
        async with engine.connect() as held, engine.connect() as overflow:
            await held.execute(text("SELECT 1"))
            await overflow.execute(text("SELECT 1"))
            async with serve(app, lifespan="off") as base, httpx.AsyncClient(base_url=base) as c:
                response = await c.get("/q")
        assert response.status_code == 503
        assert response.json()["error"] == "database_busy"
        assert int(response.headers["retry-after"]) > 0
    finally:
        await engine.dispose()


async def test_connections_carry_statement_and_idle_transaction_timeouts(
    database_url: str,
) -> None:
    engine = create_engine(database_url, idle_in_transaction_timeout=0.3)
    try:
        async with engine.connect() as conn:
            statement = await conn.scalar(text("SHOW statement_timeout"))
            assert statement == "1min"
            await conn.execute(text("SELECT 1"))  # a transaction, then left idle
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))

            async def ended() -> bool:
                async with engine.connect() as other:
                    gone = await other.scalar(
                        text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :p"),
                        {"p": pid},
                    )
                return bool(gone)

            await eventually(ended, within=10)
            await conn.invalidate()
    finally:
        await engine.dispose()


async def test_database_errors_never_carry_the_bound_values(database_url: str) -> None:
    """What a logged traceback shows of a failed statement: the SQL, not the values."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as raised:
                await conn.execute(
                    text("SELECT CAST(:v AS text), 1 / 0"), {"v": "sfk_secret-token"}
                )
        assert "division by zero" in str(raised.value)
        assert "sfk_secret-token" not in str(raised.value)
    finally:
        await engine.dispose()


async def test_anonymous_probes_reach_the_database_about_once_a_second(
    web: tuple[str, Starlette],
) -> None:
    base, app = web
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = app.state.ctx.engine.sync_engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            answers = await asyncio.gather(
                *(client.get(path) for path in ["/readyz", "/metrics"] * 30)
            )
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert {a.status_code for a in answers} == {200}
    # 30 of each within a second or two: one or two probes each, not thirty.
    assert sum(s == "SELECT 1" for s in statements) <= 3
    assert sum("dead_letters" in s for s in statements) <= 3


async def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_host_header(
    web: tuple[str, Starlette],
) -> None:
    base, _ = web
    async with httpx.AsyncClient(base_url=base) as client:
        response = await client.get("/api/me/", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.json()["error"] == "not_found"
