"""/api/tokens: per-user API tokens for server-side frontends.

A token is ``sfk_`` + 256 random bits, shown once at creation; only its SHA-256 is
stored (``receiver/identity.py`` looks it up by that hash). Tokens are created, listed
and revoked from a signed-in browser session (``access.BROWSER_SESSION``).
"""

from __future__ import annotations

import secrets

import msgspec
from sqlalchemy import text
from starlette.responses import Response

from receiver.api import render, shapes
from receiver.api.endpoint import Call
from receiver.identity import API_TOKEN_PREFIX, hash_api_token
from schema.errors import InvalidParameter, NotFound, TooManyTokens

MAX_ACTIVE_TOKENS = 25

_decode_request = msgspec.json.Decoder(shapes.TokenRequest)


_ACTIVE = text("SELECT count(*) FROM api_tokens WHERE user_id = :u AND revoked_at IS NULL")
_CREATE = text("""
    INSERT INTO api_tokens (user_id, name, token_sha256) VALUES (:u, :name, :h)
    RETURNING id, created_at
""")
_LIST = text("""
    SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens
    WHERE user_id = :u ORDER BY id
""")
_REVOKE = text("""
    UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
    WHERE id = :id AND user_id = :u RETURNING id
""")


async def create_token(call: Call) -> Response:
    try:
        wanted = _decode_request.decode(call.body)
    except msgspec.ValidationError as exc:
        raise InvalidParameter("name", f'{exc} (send {{"name": "1-100 characters"}})') from None
    except msgspec.DecodeError:
        raise InvalidParameter("body", 'must be JSON such as {"name": "dashboard"}') from None
    name = wanted.name.strip()
    if not name or not name.isprintable():
        raise InvalidParameter("name", "must be 1-100 printable characters")
    user_id = call.who.user_id
    if (await call.session.scalar(_ACTIVE, {"u": user_id}) or 0) >= MAX_ACTIVE_TOKENS:
        raise TooManyTokens(f"at most {MAX_ACTIVE_TOKENS} active tokens; revoke one first")
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = (
        await call.session.execute(
            _CREATE, {"u": user_id, "name": name, "h": hash_api_token(token)}
        )
    ).one()
    return render.json_response(
        shapes.CreatedToken(id=row.id, name=name, created_at=row.created_at, token=token),
        status_code=201,
        headers={"Cache-Control": "no-store"},
    )


async def list_tokens(call: Call) -> Response:
    rows = (await call.session.execute(_LIST, {"u": call.who.user_id})).all()
    return render.json_response(
        shapes.TokenList(
            tokens=[
                shapes.Token(r.id, r.name, r.created_at, r.last_used_at, r.revoked_at) for r in rows
            ]
        )
    )


async def revoke_token(call: Call) -> Response:
    """Idempotent for the owner; someone else's token id is simply not found."""
    revoked = await call.session.scalar(_REVOKE, {"id": call.token_id, "u": call.who.user_id})
    if revoked is None:
        raise NotFound(f"no token {call.token_id}")
    return Response(status_code=204)
