"""Query and path parameters of the JSON API: parsed and checked here, in pure functions.

Each ``QueryGroup`` documents the query parameters it reads (for ``/openapi.json``) and
parses them into one typed value; a bad value raises ``InvalidParameter`` naming the
parameter, which leaves as a 422 JSON error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

from schema.errors import InvalidParameter
from schema.events import NotAnInstant, parse_instant

T = TypeVar("T")

WINDOWS = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "90d": timedelta(days=90),
}
DEFAULT_WINDOW = WINDOWS["7d"]
# A year and a day: enough for "last year" views, small enough that one request stays cheap.
MAX_WINDOW = timedelta(days=366)
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
DEFAULT_LIMIT = 100
MAX_LIMIT = 500

BROADCASTER_ID_PATTERN = r"^[0-9]{1,64}$"
_BROADCASTER_ID = re.compile(BROADCASTER_ID_PATTERN)
TOKEN_ID_PATTERN = r"^[1-9][0-9]{0,17}$"  # noqa: S105 - a pattern, not a secret
_TOKEN_ID = re.compile(TOKEN_ID_PATTERN)


@dataclass(frozen=True, slots=True)
class Param:
    """One documented query parameter (an OpenAPI parameter object, minus ``in``)."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True, slots=True)
class Inputs:
    """What parameters are parsed from: the query string, the Accept header, the time."""

    query: Mapping[str, str]
    accept: str
    now: datetime


@dataclass(frozen=True, slots=True)
class QueryGroup(Generic[T]):
    """Query parameters read together into one value, e.g. since/until/window -> Window."""

    key: str
    params: tuple[Param, ...]
    parse: Callable[[Inputs], T]


@dataclass(frozen=True, slots=True)
class Window:
    """``[since, until)``; empty (``since == until``) when ``since`` lies after now."""

    since: datetime
    until: datetime

    @property
    def empty(self) -> bool:
        return self.since >= self.until


def query_instant(name: str, raw: str) -> datetime:
    """An RFC 3339 instant with a zone, as aware UTC. A '+' that arrived unescaped in a
    query string reads as a space; it is taken back as '+'."""
    try:
        parsed = parse_instant(raw.strip().replace(" ", "+"))
    except NotAnInstant:
        raise InvalidParameter(
            name, "must be an RFC 3339 instant such as 2024-05-04T12:00:00Z"
        ) from None
    except ValueError:
        raise InvalidParameter(name, "is not a valid date and time") from None
    if not EARLIEST <= parsed < LATEST:
        raise InvalidParameter(name, "must be between 2000-01-01 and 2200-01-01")
    return parsed


def parse_window(inputs: Inputs) -> Window:
    """``since``/``until`` (default: the 7 days up to now), or ``window`` up to ``until``.
    A ``since`` at or after now without ``until`` is the empty window at ``since``."""
    query = inputs.query
    window = query.get("window")
    until = query_instant("until", query["until"]) if "until" in query else inputs.now
    if window is not None:
        if window not in WINDOWS:
            raise InvalidParameter("window", f"must be one of {', '.join(WINDOWS)}")
        if "since" in query:
            raise InvalidParameter("window", "give either window or since, not both")
        return Window(until - WINDOWS[window], until)
    since = query_instant("since", query["since"]) if "since" in query else until - DEFAULT_WINDOW
    if "until" not in query and since >= until:
        # "Since" after now (a client clock running ahead, or "what came after the last
        # session I showed") asks for an empty window, not for a wrong one.
        return Window(since, since)
    if since >= until:
        raise InvalidParameter("since", "must be before until")
    if until - since > MAX_WINDOW:
        raise InvalidParameter("since", "the window may span at most 366 days")
    return Window(since, until)


def parse_limit(inputs: Inputs) -> int:
    query = inputs.query
    raw = query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # Length first: int() refuses strings of more than 4,300 digits with a ValueError.
    if len(raw) > 10 or not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


MAX_CURSOR_LENGTH = 256


def encode_cursor(started_at: datetime, session_id: str) -> str:
    """Opaque to clients: the keyset (start, id) of the last session of a page."""
    raw = json.dumps([started_at.astimezone(UTC).isoformat(), session_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def parse_cursor(inputs: Inputs) -> tuple[datetime, str] | None:
    query = inputs.query
    raw = query.get("cursor")
    if raw is None:
        return None
    try:
        if len(raw) > MAX_CURSOR_LENGTH:  # ours are ~80 characters; bounds json's nesting
            raise ValueError(raw[:20])
        decoded = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        started_raw, session_id = decoded
        started_at = datetime.fromisoformat(started_raw).astimezone(UTC)
        # Printable only: a NUL (or any control character) is no session id, and
        # PostgreSQL refuses NUL in text outright.
        if (
            not isinstance(session_id, str)
            or not 0 < len(session_id) <= 64
            or not session_id.isprintable()
        ):
            raise ValueError(session_id)
        if datetime.fromisoformat(started_raw).tzinfo is None:
            raise ValueError(started_raw)
    except (
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        binascii.Error,
        UnicodeDecodeError,
    ):
        raise InvalidParameter("cursor", "not a cursor this API returned in next") from None
    return started_at, session_id


Format = Literal["json", "csv"]


def parse_format(inputs: Inputs) -> Format:
    """``?format=`` wins; else CSV when the Accept header asks for text/csv."""
    query = inputs.query
    raw = query.get("format")
    if raw is None:
        return "csv" if "text/csv" in inputs.accept.lower() else "json"
    if raw not in ("json", "csv"):
        raise InvalidParameter("format", "must be json or csv")
    return "csv" if raw == "csv" else "json"


def parse_granularity(inputs: Inputs) -> Literal["hour", "day"]:
    query = inputs.query
    raw = query.get("granularity", "day")
    if raw not in ("hour", "day"):
        raise InvalidParameter("granularity", "must be hour or day")
    return "hour" if raw == "hour" else "day"


def parse_purge(inputs: Inputs) -> bool:
    query = inputs.query
    raw = query.get("purge", "false")
    if raw not in ("true", "false"):
        raise InvalidParameter("purge", "must be true or false")
    return raw == "true"


def broadcaster_id(raw: str) -> str:
    if not _BROADCASTER_ID.fullmatch(raw):
        raise InvalidParameter("broadcaster_id", "must be a Twitch user id (1-64 digits)")
    return raw


def token_id(raw: str) -> int:
    if not _TOKEN_ID.fullmatch(raw):
        raise InvalidParameter("token_id", "must be a positive integer")
    return int(raw)


_INSTANT = {"type": "string", "format": "date-time"}

WINDOW: QueryGroup[Window] = QueryGroup(
    "window",
    (
        Param("since", _INSTANT, "Start of the window, RFC 3339 (default: until minus 7 days)."),
        Param("until", _INSTANT, "End of the window, exclusive, RFC 3339 (default: now)."),
        Param(
            "window",
            {"type": "string", "enum": list(WINDOWS)},
            "A window ending at until (default now), instead of since.",
        ),
    ),
    parse_window,
)
LIMIT: QueryGroup[int] = QueryGroup(
    "limit",
    (
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "Sessions per page of JSON (CSV streams every session of the window).",
        ),
    ),
    parse_limit,
)
CURSOR: QueryGroup[tuple[datetime, str] | None] = QueryGroup(
    "cursor",
    (
        Param(
            "cursor",
            {"type": "string"},
            "The previous page's next value; pages continue from there (JSON only).",
        ),
    ),
    parse_cursor,
)
FORMAT: QueryGroup[Format] = QueryGroup(
    "format",
    (
        Param(
            "format",
            {"type": "string", "enum": ["json", "csv"]},
            "csv for a streamed CSV with a header row (or send Accept: text/csv).",
        ),
    ),
    parse_format,
)
GRANULARITY: QueryGroup[Literal["hour", "day"]] = QueryGroup(
    "granularity",
    (
        Param(
            "granularity",
            {"type": "string", "enum": ["hour", "day"], "default": "day"},
            "Group the statistics per UTC hour or per UTC day.",
        ),
    ),
    parse_granularity,
)
PURGE: QueryGroup[bool] = QueryGroup(
    "purge",
    (
        Param(
            "purge",
            {"type": "string", "enum": ["true", "false"], "default": "false"},
            "true also deletes every session, hourly row and chat record of the channel.",
        ),
    ),
    parse_purge,
)


# -- the public (discovery) routes -------------------------------------------------------


def encode_rank_cursor(rank: int, key: str) -> str:
    """Opaque to clients: the keyset (rank, id) of the last row of a ranked page."""
    return base64.urlsafe_b64encode(json.dumps([rank, key]).encode()).decode().rstrip("=")


def parse_rank_cursor(inputs: Inputs) -> tuple[int, str] | None:
    raw = inputs.query.get("cursor")
    if raw is None:
        return None
    try:
        if len(raw) > MAX_CURSOR_LENGTH:
            raise ValueError(raw[:20])
        rank, key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if type(rank) is not int or not isinstance(key, str) or not 0 < len(key) <= 64:
            raise ValueError(raw[:20])
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("cursor", "not a cursor this API returned in next") from None
    return rank, key


def _bounded_text(name: str, raw: str | None, shortest: int, longest: int) -> str | None:
    if raw is None:
        return None
    value = raw.strip()
    if not shortest <= len(value) <= longest or not value.isprintable():
        raise InvalidParameter(name, f"must be {shortest} to {longest} printable characters")
    return value


def parse_query_text(inputs: Inputs) -> str:
    value = _bounded_text("q", inputs.query.get("q"), 2, 64)
    if value is None:
        raise InvalidParameter("q", "is required (at least 2 characters)")
    return value


def parse_game(inputs: Inputs) -> str | None:
    return _bounded_text("game", inputs.query.get("game"), 1, 256)


def parse_language(inputs: Inputs) -> str | None:
    value = _bounded_text("language", inputs.query.get("language"), 2, 16)
    if value is not None and not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})?|other", value):
        raise InvalidParameter("language", "must be a language code such as en or pt-br")
    return value.lower() if value else None


def parse_detail(inputs: Inputs) -> Literal["sessions", "snapshots"]:
    raw = inputs.query.get("detail", "sessions")
    if raw not in ("sessions", "snapshots"):
        raise InvalidParameter("detail", "must be sessions or snapshots")
    return "snapshots" if raw == "snapshots" else "sessions"


RANK_CURSOR: QueryGroup[tuple[int, str] | None] = QueryGroup(
    "rank_cursor", (CURSOR.params[0],), parse_rank_cursor
)
QUERY_TEXT: QueryGroup[str] = QueryGroup(
    "q",
    (
        Param(
            "q",
            {"type": "string", "minLength": 2, "maxLength": 64},
            "Part of a login or display name (typos tolerated); required.",
        ),
    ),
    parse_query_text,
)
GAME: QueryGroup[str | None] = QueryGroup(
    "game",
    (
        Param(
            "game",
            {"type": "string", "minLength": 1, "maxLength": 256},
            "A category: its Twitch id or its name (case-insensitive).",
        ),
    ),
    parse_game,
)
LANGUAGE: QueryGroup[str | None] = QueryGroup(
    "language",
    (Param("language", {"type": "string"}, "The stream's language code, such as en."),),
    parse_language,
)
DETAIL: QueryGroup[Literal["sessions", "snapshots"]] = QueryGroup(
    "detail",
    (
        Param(
            "detail",
            {"type": "string", "enum": ["sessions", "snapshots"], "default": "sessions"},
            "snapshots also lists the window's 5-minute snapshots (JSON only).",
        ),
    ),
    parse_detail,
)
