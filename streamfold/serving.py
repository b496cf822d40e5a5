"""An ASGI app under a real uvicorn server inside the running event loop: used where a
test or a benchmark needs real HTTP without a separate process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn

from streamfold.embedded import free_port

# How the Procfile's web runs uvicorn (tests/test_procfile.py holds the two together):
# heads bounded in size and time (receiver/http_limits.py), idle keep-alive connections
# closed after 30 s, and at most LIMIT_CONCURRENCY connections or requests at once; past
# that uvicorn answers 503 at once instead of queueing without end.
HTTP_PROTOCOL = "receiver.http_limits:BoundedHttpTools"
TIMEOUT_KEEP_ALIVE_SECONDS = 30
LIMIT_CONCURRENCY = 500


@contextlib.asynccontextmanager
async def serve(
    app: Any, *, port: int | None = None, lifespan: Literal["on", "off"] = "on"
) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port unless ``port`` is given, e.g. when the app
    must know its own URL) until the block ends, with the Procfile's settings; yield its
    base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan=lifespan,
        loop="asyncio",
        # X-Forwarded-For is judged by the app against TRUSTED_PROXIES, not by uvicorn.
        proxy_headers=False,
        http=HTTP_PROTOCOL,
        timeout_keep_alive=TIMEOUT_KEEP_ALIVE_SECONDS,
        limit_concurrency=LIMIT_CONCURRENCY,
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # start-up failed: raise why
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
