"""GET /openapi.json: the OpenAPI 3.1 document, generated from the route table.

Paths, parameters and access rules come from the ``Operation`` values that also serve
the routes; body schemas come from the msgspec shapes that also encode the bodies. The
document is built once, at start-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from receiver.api import params, shapes
from receiver.api.access import Audience
from receiver.api.endpoint import Operation
from receiver.identity import SESSION_COOKIE

REF = "#/components/schemas/{name}"
ERROR_TEXT = {
    400: "Bad request.",
    401: "Not signed in: no valid session cookie or API token.",
    403: "Signed in, but not allowed to do this.",
    404: "No such channel or token.",
    409: "Conflict with the current state.",
    413: "The body is too large.",
    429: "Too many requests from this client address; Retry-After says when to retry.",
    422: "A parameter is invalid; detail starts with its name.",
    503: "A backing service is unavailable; retry.",
}
PATH_PARAMS = {
    "broadcaster_id": (params.BROADCASTER_ID_PATTERN, "The channel's Twitch user id."),
    "token_id": (params.TOKEN_ID_PATTERN, "An id from GET /api/tokens."),
}
DESCRIPTION = """\
Read-only analytics of Twitch channels folded by streamfold, plus a few operations on
the caller's own account. Sign in with Twitch in a browser (session cookie) or send
`Authorization: Bearer sfk_...` with an API token from `POST /api/tokens`.

Who may read what: a streamer reads their own channel only; any signed-in person reads
their own chat statistics; operators read every channel. Anonymous calls get 401,
others' data 403. Every error body is `{"error": "<code>", "detail": "<text>"}`.

Windows: `since`/`until` as RFC 3339 instants (default: the 7 days up to now), or
`window=24h|7d|30d|90d` ending at `until`; at most 366 days. A `since` after now with no
`until` is an empty window: no rows, zero totals. Instants in responses are
RFC 3339 UTC with a `Z`; hours are UTC tops of the hour.
"""


def _schemas(operations: Sequence[Operation]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    types: set[type] = {shapes.Error}
    for op in operations:
        types.update(t for t in (op.returns, op.body) if t is not None)
    ordered = sorted(types, key=lambda t: t.__name__)
    refs, components = msgspec.json.schema_components(ordered, ref_template=REF)
    return dict(zip(ordered, refs, strict=True)), components


def _parameters(op: Operation) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, (pattern, text) in PATH_PARAMS.items():
        if "{" + name + "}" in op.path:
            out.append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "description": text,
                    "schema": {"type": "string", "pattern": pattern},
                }
            )
    for group in op.queries:
        for param in group.params:
            out.append(
                {
                    "name": param.name,
                    "in": "query",
                    "required": False,
                    "description": param.description,
                    "schema": param.schema,
                }
            )
    return out


def _operation(op: Operation, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    success: dict[str, Any] = {"description": op.summary}
    if op.returns is not None:
        success["content"] = {"application/json": {"schema": refs[op.returns]}}
        if op.csv is not None:
            header = ",".join(f.name for f in msgspec.structs.fields(op.csv))
            success["content"]["text/csv"] = {
                "schema": {"type": "string", "description": f"Header row: {header}"}
            }
    responses: dict[str, Any] = {str(op.status): success}
    for status in (*op.errors, 503):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {"application/json": {"schema": refs[shapes.Error]}},
        }
    security: list[dict[str, list[str]]] = [{"session": []}]
    if not op.rule.browser_only:
        security.append({"apiToken": []})
    if op.rule.audience is Audience.PUBLIC:
        security.append({})  # no sign-in needed; signing in may show more
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.rule.describe(),
        "parameters": _parameters(op),
        "responses": responses,
        "security": security,
    }
    if op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[op.body]}},
        }
    return out


def build_document(operations: Sequence[Operation]) -> dict[str, Any]:
    refs, components = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "streamfold API", "version": "1", "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "apiToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token, sfk_ followed by 43 characters.",
                },
            },
        },
    }


def openapi_route(operations: Sequence[Operation]) -> Route:
    body = msgspec.json.encode(build_document(operations))

    async def openapi_document(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi_document, methods=["GET"])
