"""Malformed windows, ids, cursors and bodies: a 4xx JSON error naming the parameter."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from receiver.api import params
from schema.errors import InvalidParameter
from schema.settings import Settings
from tests.receiver.people import add_user, sign_in

ALICE = "1337"
NOW = datetime(2024, 5, 6, 10, 30, tzinfo=UTC)


def _inputs(accept: str = "", **query: str) -> params.Inputs:
    return params.Inputs(query, accept, NOW)


def test_windows_default_to_seven_days_and_accept_presets_and_offsets() -> None:
    assert params.parse_window(_inputs()) == params.Window(NOW - timedelta(days=7), NOW)
    until = "2024-05-05T12:00:00Z"
    day = params.parse_window(_inputs(window="24h", until=until))
    assert (day.since.isoformat(), day.until.isoformat()) == (
        "2024-05-04T12:00:00+00:00",
        "2024-05-05T12:00:00+00:00",
    )
    # An unescaped '+' arrives as a space; offsets become UTC; nanoseconds are cut.
    window = params.parse_window(
        _inputs(since="2024-05-04T13:00:00.123456789 02:00", until="2024-05-05T00:00:00z")
    )
    assert window.since == datetime(2024, 5, 4, 11, 0, 0, 123456, tzinfo=UTC)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-05-04T11:00:00"}, "since"),  # no zone
        ({"since": "2024-05-04"}, "since"),
        ({"until": "2024-13-01T00:00:00Z"}, "until"),
        ({"until": "2024-02-30T00:00:00Z"}, "until"),
        ({"until": "1999-12-31T00:00:00Z"}, "until"),
        ({"since": "2024-05-05T00:00:00Z", "until": "2024-05-04T00:00:00Z"}, "since"),
        ({"since": "2024-05-04T00:00:00Z", "until": "2024-05-04T00:00:00Z"}, "since"),
        ({"since": "2022-05-04T00:00:00Z", "until": "2024-05-04T00:00:00Z"}, "since"),
        ({"window": "2w"}, "window"),
        ({"window": "7d", "since": "2024-05-01T00:00:00Z"}, "window"),
    ],
)
def test_bad_windows_name_the_parameter(query: dict[str, str], parameter: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        params.parse_window(_inputs(**query))
    assert raised.value.parameter == parameter
    assert raised.value.detail.startswith(f"{parameter}: ")


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    started = datetime(2024, 5, 4, 11, 40, 0, 123456, tzinfo=UTC)
    cursor = params.encode_cursor(started, "s1")
    assert params.parse_cursor(_inputs(cursor=cursor)) == (started, "s1")
    out_of_range = base64.urlsafe_b64encode(b'["0001-01-01T00:00:00+01:00", "x"]').decode()
    too_deep = base64.urlsafe_b64encode(b"[" * 3000).decode()
    for bad in (
        "!!",
        "abc",
        base64.urlsafe_b64encode(b'["x", 1]').decode(),
        "W10",
        "",
        out_of_range,
        too_deep,
    ):
        with pytest.raises(InvalidParameter):
            params.parse_cursor(_inputs(cursor=bad))


def test_format_comes_from_the_query_or_the_accept_header() -> None:
    assert params.parse_format(_inputs()) == "json"
    assert params.parse_format(_inputs(accept="text/csv")) == "csv"
    assert params.parse_format(_inputs(accept="text/csv", format="json")) == "json"
    assert params.parse_format(_inputs(format="csv")) == "csv"


@pytest.fixture
async def alice(
    receiver: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], settings: Settings
) -> dict[str, str]:
    await add_user(sessions, ALICE, "alice", streamer=True)
    return await sign_in(sessions, settings, ALICE)


BAD_REQUESTS = [
    ("GET", f"/api/channels/{ALICE}/sessions?since=yesterday", 422, "since"),
    ("GET", f"/api/channels/{ALICE}/hourly?until=2024-05-04T11:00:00", 422, "until"),
    ("GET", f"/api/channels/{ALICE}/summary?window=1y", 422, "window"),
    ("GET", f"/api/channels/{ALICE}/sessions?limit=0", 422, "limit"),
    ("GET", f"/api/channels/{ALICE}/sessions?limit=501", 422, "limit"),
    ("GET", f"/api/channels/{ALICE}/sessions?limit=ten", 422, "limit"),
    ("GET", f"/api/channels/{ALICE}/sessions?cursor=not-a-cursor", 422, "cursor"),
    ("GET", f"/api/channels/{ALICE}/sessions?limit={'9' * 4301}", 422, "limit"),
    (
        "GET",
        f"/api/channels/{ALICE}/sessions?cursor="
        + params.encode_cursor(datetime(2024, 5, 4, tzinfo=UTC), "s\u0000"),
        422,
        "cursor",
    ),
    ("GET", f"/api/channels/{ALICE}/sessions?format=xml", 422, "format"),
    ("GET", "/api/viewers/me/stats?granularity=week", 422, "granularity"),
    ("DELETE", f"/api/channels/{ALICE}?purge=yes", 422, "purge"),
    ("GET", "/api/channels/alice/summary", 422, "broadcaster_id"),
    ("GET", f"/api/channels/{'1' * 65}/summary", 422, "broadcaster_id"),
    ("DELETE", "/api/tokens/0", 422, "token_id"),
    ("DELETE", "/api/tokens/abc", 422, "token_id"),
]


@pytest.mark.parametrize(("method", "url", "status", "parameter"), BAD_REQUESTS)
async def test_bad_parameters_get_a_json_error_naming_them(
    receiver: httpx.AsyncClient,
    alice: dict[str, str],
    method: str,
    url: str,
    status: int,
    parameter: str,
) -> None:
    response = await receiver.request(method, url, headers=alice)
    assert response.status_code == status, response.text
    assert response.json()["error"] == "invalid_parameter"
    assert response.json()["detail"].startswith(f"{parameter}: ")


async def test_token_bodies_are_checked(receiver: httpx.AsyncClient, alice: dict[str, str]) -> None:
    async def post(content: bytes) -> httpx.Response:
        return await receiver.post("/api/tokens", content=content, headers=alice)

    for content, parameter in [
        (b"{not json", "body"),
        (b'{"name": ""}', "name"),
        (b'{"name": 7}', "name"),
        (b'{"name": "x", "admin": true}', "name"),
        (b"[]", "name"),
    ]:
        response = await post(content)
        assert response.status_code == 422, content
        assert response.json()["detail"].startswith(f"{parameter}: "), response.text
    huge = await post(b'{"name": "' + b"x" * 10_000 + b'"}')
    assert (huge.status_code, huge.json()["error"]) == (413, "payload_too_large")


async def test_unknown_routes_and_methods_answer_json(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    missing = await receiver.get("/api/nothing-here", headers=alice)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    wrong = await receiver.put("/api/tokens", headers=alice)
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def test_an_unescaped_plus_in_an_offset_still_reads_as_an_offset(
    receiver: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    url = (
        f"/api/channels/{ALICE}/summary?since=2024-05-04T13:00:00+02:00&until=2024-05-05T00:00:00Z"
    )
    response = await receiver.get(url, headers=alice)
    assert response.status_code == 200, response.text
    assert response.json()["since"] == "2024-05-04T11:00:00Z"


def test_csv_cells_are_plain_text_and_never_spreadsheet_formulas() -> None:
    from receiver.api.render import csv_cell

    assert csv_cell(None) == ""
    assert csv_cell(True) == "true"
    assert csv_cell(datetime(2024, 5, 4, 11, 0, tzinfo=UTC)) == "2024-05-04T11:00:00Z"
    assert csv_cell(-3) == "-3"
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("Speedrun") == "Speedrun"
