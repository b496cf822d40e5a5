"""/openapi.json matches the routes, and a schemathesis run against the served app finds
no 500s and no response that contradicts the document."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.routing import Route

from receiver.api.params import encode_cursor
from receiver.api.routes import OPERATIONS
from receiver.app import create_app
from receiver.identity import SESSION_COOKIE
from schema.settings import Settings
from streamfold.twitch_local import TwitchStandin, point_at
from tests.conftest import Clock, serve
from tests.receiver.api_script import ALICE, BOB, fold_history
from tests.receiver.people import add_user, sign_in

# Examples per operation and mode: about 20 s for the whole run on a 2-core machine.
EXAMPLES = 25
# Query values that once reached a 500 (int() of 4,301+ digits; a NUL bound for
# PostgreSQL): every operation taking the parameter is also called with them.
HOSTILE_QUERIES = {
    "limit": "9" * 4301,
    "cursor": encode_cursor(datetime(2024, 5, 4, tzinfo=UTC), "s\u0000"),
}


async def test_the_document_lists_every_api_route_and_method(
    receiver: httpx.AsyncClient,
) -> None:
    document = (await receiver.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    offline = Settings(
        database_url="postgresql://x/y", redis_url="redis://x", eventsub_secret="s" * 10
    )
    app = create_app(offline)  # routes only: no lifespan, no connections
    served = {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api/")
        for method in route.methods or ()
        if method != "HEAD"
    }
    assert documented == served == {(op.method, op.path) for op in OPERATIONS}
    for path, ops in document["paths"].items():
        for op in ops.values():
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == set(path.replace("}", "{").split("{")[1::2]), path
            # Signed-in routes say 401; the public ones say their rate limit's 429 instead.
            assert ("401" in op["responses"]) != ("429" in op["responses"]), path


def _run_schemathesis(document: dict[str, Any], base_url: str, cookie: str) -> list[str]:
    """Every operation, positive and negative data; returns the failures found.

    All of schemathesis's checks run but "schema-valid request rejected": rules across
    parameters (since before until, at most 366 days, window or since) cannot be said in
    OpenAPI, so a schema-valid window may rightly get its 422."""
    schema = schemathesis.openapi.from_dict(document)
    # An operation without parameters or body has no negative data to generate.
    no_inputs = {
        f"{method.upper()} {path}"
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if not op["parameters"] and "requestBody" not in op
    }
    failures: list[str] = []
    http = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and operation.label in no_inputs:
                continue
            strategy = operation.as_strategy(generation_mode=mode, cookies={SESSION_COOKIE: cookie})

            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @given(case=strategy)
            def check(case: Any) -> None:
                case.call_and_validate(
                    base_url=base_url, session=http, excluded_checks=[positive_data_acceptance]
                )

            try:
                check()
            except Exception as exc:  # report every operation, not just the first
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
        failures += _hostile_queries(operation, base_url, http, cookie)
    return failures


def _hostile_queries(operation: Any, base_url: str, http: Any, cookie: str) -> list[str]:
    """Each ``HOSTILE_QUERIES`` value on its own, with path ids of a real channel."""
    names = {p.name for p in operation.query} & set(HOSTILE_QUERIES)
    path = {p.name: ALICE if p.name == "broadcaster_id" else "1" for p in operation.path_parameters}
    failures = []
    for name in sorted(names):
        case = operation.Case(
            path_parameters=path,
            query={name: HOSTILE_QUERIES[name]},
            cookies={SESSION_COOKIE: cookie},
        )
        try:
            case.call_and_validate(
                base_url=base_url, session=http, excluded_checks=[positive_data_acceptance]
            )
        except Exception as exc:
            failures.append(f"{operation.label} [{name}]: {exc}")
    return failures


async def test_schemathesis_finds_no_server_errors_or_schema_violations(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    clock: Clock,
    drain: Callable[[], Any],
    receiver: httpx.AsyncClient,
) -> None:
    await add_user(sessions, ALICE, "alice", streamer=True)
    await add_user(sessions, BOB, "bob", streamer=True)
    await fold_history(receiver, clock, drain, sessions)
    cookie = (await sign_in(sessions, settings, ALICE))["Cookie"].split("=", 1)[1]
    standin = TwitchStandin()
    async with serve(standin.app) as twitch_url:
        values = point_at(settings, twitch_url).model_dump() | {
            "operator_user_ids": ALICE,
            "public_rate_limit": 100_000,  # schemathesis asks far more than a client may
        }
        async with serve(create_app(Settings(**values), clock=clock)) as base_url:
            async with httpx.AsyncClient(base_url=base_url) as client:
                document = (await client.get("/openapi.json")).json()
            # Reads go to channels with data (and one that does not exist) rather than
            # random ids; the disconnect route keeps random ids, so it never purges them.
            channel_ids = {"type": "string", "enum": [ALICE, BOB, "404"]}
            for path, ops in document["paths"].items():
                for op in ops.values():
                    for param in op["parameters"]:
                        if param["name"] == "broadcaster_id" and not path.endswith(
                            "{broadcaster_id}"
                        ):
                            param["schema"] = channel_ids
            failures = await asyncio.to_thread(_run_schemathesis, document, base_url, cookie)
    assert failures == []
