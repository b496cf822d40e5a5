"""Responses of the JSON API: msgspec-encoded JSON, and CSV streamed row by row.

msgspec encodes the read models (dataclasses and structs) directly and writes UTC
instants as RFC 3339 with a ``Z``; the same types give ``/openapi.json`` its schemas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from starlette.responses import Response, StreamingResponse

_encoder = msgspec.json.Encoder()
CSV_MEDIA_TYPE = "text/csv; charset=utf-8"


def json_response(
    body: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        _encoder.encode(body),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


# Stream titles are the streamer's free text; a spreadsheet would run one starting with
# "=" as a formula (OWASP "CSV injection"), so such text gets a leading apostrophe.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return str(value)


def csv_lines(columns: Sequence[str], rows: Sequence[Any]) -> str:
    """Rows (dataclasses) as CSV text, one line each, RFC 4180 quoting."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        writer.writerow([csv_cell(getattr(row, c)) for c in columns])
    return buffer.getvalue()


def csv_response(
    columns: Sequence[str],
    chunks: AsyncIterator[Sequence[Any]],
    filename: str,
    headers: dict[str, str] | None = None,
) -> StreamingResponse:
    """A header row, then each chunk of rows as it is read: a long window never sits in
    memory whole."""

    async def body() -> AsyncIterator[str]:
        yield ",".join(columns) + "\r\n"
        async for rows in chunks:
            if rows:
                yield csv_lines(columns, rows)

    return StreamingResponse(
        body(),
        media_type=CSV_MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', **(headers or {})},
    )
