"""Sign in with Twitch: login (redirect to consent), callback, logout (PROTOCOL.md 5).

``state`` is bound to the browser by a signed, short-lived cookie and used once (a Redis
key remembers used states for as long as a state could be valid). A streamer's callback
connects the channel and creates its subscriptions; the bot's makes chat subscriptions
possible for every connected channel. Every failure answers a small page with a 4xx
(503 when Twitch itself is unreachable), never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from typing import Literal

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from receiver.context import Context
from receiver.identity import cookies_secure, end_login_session, start_login_session
from schema.errors import InvalidParameter, LoginFailed
from schema.logs import get_logger
from schema.twitch import TwitchClient, TwitchError, TwitchRejected, TwitchUnavailable
from schema.twitch.channels import connect_channel
from schema.twitch.subscriptions import SyncReport, sync_subscriptions
from schema.twitch.tokens import TokenCipher, connected_bot_id, store_tokens, store_user

log = get_logger("receiver.oauth")

Role = Literal["streamer", "viewer", "bot"]
# PROTOCOL.md 5.10: minimal scopes per role; each one is shown on the consent screen.
SCOPES: dict[str, tuple[str, ...]] = {
    "streamer": ("channel:bot",),
    "viewer": (),
    "bot": ("user:read:chat", "user:bot"),
}
STATE_COOKIE = "streamfold_oauth_state"
STATE_MAX_AGE_SECONDS = 600  # Twitch's consent screen rarely takes more than minutes
_USED_STATE_PREFIX = "streamfold:oauth:used-state:"


def _serializer(ctx: Context) -> URLSafeTimedSerializer:
    secret = ctx.settings.session_secret
    return URLSafeTimedSerializer(secret.get_secret_value() if secret else "", salt="oauth-state")


def _configured(ctx: Context) -> bool:
    s = ctx.settings
    return bool(
        s.twitch_client_id
        and s.twitch_client_secret
        and s.session_secret
        and s.fernet_keys
        and ctx.twitch is not None
    )


def page(status: int, title: str, detail: str) -> HTMLResponse:
    body = (
        "<!doctype html><html><head><meta charset='utf-8'><title>streamfold</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(detail)}</p>"
        "<p><a href='/dashboard'>Continue to streamfold</a></p></body></html>"
    )
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def login(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    role = request.query_params.get("role", "streamer")
    if role not in SCOPES:
        raise InvalidParameter("role", "must be streamer, viewer or bot")
    if not _configured(ctx):
        return page(503, "Sign-in unavailable", "Twitch sign-in is not configured here.")
    assert ctx.twitch is not None
    state = secrets.token_urlsafe(32)
    url = ctx.twitch.authorize_url(
        SCOPES[role],
        state,
        redirect_uri=ctx.settings.oauth_redirect_url,
        # Roles that hand us tokens always see Twitch's consent screen: the bot account is
        # usually signed in from a browser logged in to Twitch as someone else, and a
        # streamer who disconnected must not be reconnected silently by a link on another
        # site that starts this login (Twitch skips consent for an app already granted).
        force_verify=role != "viewer",
    )
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        STATE_COOKIE,
        _serializer(ctx).dumps({"state": state, "role": role}),
        max_age=STATE_MAX_AGE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=cookies_secure(ctx.settings),
        path="/auth/twitch",
    )
    return response


async def callback(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    try:
        if not _configured(ctx):
            raise LoginFailed(503, "Sign-in unavailable", "Twitch sign-in is not configured here.")
        role = await _check_state(ctx, request)
        response = await _complete(ctx, request, role)
    except LoginFailed as failure:
        log.info("oauth.refused", status=failure.status_code, reason=failure.title)
        response = page(failure.status_code, failure.title, failure.detail)
    response.delete_cookie(STATE_COOKIE, path="/auth/twitch")
    return response


async def _check_state(ctx: Context, request: Request) -> Role:
    query_state = request.query_params.get("state")
    cookie = request.cookies.get(STATE_COOKIE)
    if not query_state or not cookie:
        raise LoginFailed(
            400, "Sign-in expired", "This sign-in was not started here; please start again."
        )
    try:
        bound = _serializer(ctx).loads(cookie, max_age=STATE_MAX_AGE_SECONDS)
    except SignatureExpired:
        raise LoginFailed(400, "Sign-in expired", "Please start the sign-in again.") from None
    except BadSignature:
        raise LoginFailed(400, "Sign-in refused", "The sign-in cookie was altered.") from None
    # Compared as bytes: compare_digest refuses str with non-ASCII characters.
    if not isinstance(bound, dict) or not hmac.compare_digest(
        str(bound.get("state", "")).encode(), query_state.encode()
    ):
        raise LoginFailed(400, "Sign-in refused", "The sign-in state does not match this browser.")
    digest = hashlib.sha256(query_state.encode()).hexdigest()
    first_use = await ctx.redis.set(
        _USED_STATE_PREFIX + digest, b"1", nx=True, ex=STATE_MAX_AGE_SECONDS
    )
    if not first_use:
        raise LoginFailed(400, "Sign-in refused", "This sign-in link was already used.")
    role = bound.get("role")
    if role not in SCOPES:
        raise LoginFailed(400, "Sign-in refused", "Unknown sign-in role.")
    return role  # type: ignore[no-any-return]


async def _complete(ctx: Context, request: Request, role: Role) -> Response:
    twitch = ctx.twitch
    assert twitch is not None
    query = request.query_params
    if query.get("error"):
        # access_denied: the user clicked Cancel on Twitch's consent screen.
        raise LoginFailed(403, "Access not granted", "You declined on Twitch; nothing was stored.")
    code = query.get("code")
    if not code:
        raise LoginFailed(400, "Sign-in refused", "Twitch sent no authorization code.")
    redirect_uri = ctx.settings.oauth_redirect_url
    try:
        tokens = await twitch.exchange_code(code, redirect_uri=redirect_uri)
        validation = await twitch.validate(tokens.access_token)
        users = await twitch.get_users(user_token=tokens.access_token)
    except TwitchUnavailable:
        raise LoginFailed(
            503, "Twitch unavailable", "Twitch did not answer; try again soon."
        ) from None
    except TwitchError:
        raise LoginFailed(400, "Sign-in refused", "Twitch did not accept this sign-in.") from None
    if not users or validation.user_id != users[0].id:
        raise LoginFailed(400, "Sign-in refused", "Twitch did not say who signed in.")
    user = users[0]
    missing = set(SCOPES[role]) - set(tokens.scopes)
    if role == "bot" and missing:
        raise LoginFailed(
            403, "Permissions missing", f"The bot account must grant: {' '.join(sorted(missing))}."
        )
    response = page(200, "Signed in", "")
    now = ctx.clock()
    async with ctx.sessions.begin() as session:
        if role == "bot" and not await _may_be_the_bot(session, ctx, user.id):
            raise LoginFailed(
                403,
                "Not the bot account",
                "This service already has a bot account; only that account "
                "(or the one BOT_USER_ID names) may sign in as bot.",
            )
        await store_user(session, user.id, user.login, user.display_name, is_bot=role == "bot")
        if role != "viewer":  # a viewer's identity is all we keep
            await store_tokens(
                session,
                TokenCipher.from_settings(ctx.settings),
                user.id,
                tokens,
                role=role,
                now=now,
                validated=True,
            )
        if role == "streamer":
            await connect_channel(session, user.id, user.login, user.display_name)
        await start_login_session(session, ctx.settings, user.id, response, now=now)
    log.info("oauth.signed_in", user_id=user.id, role=role)
    notes: list[str] = []
    if role == "streamer":
        if missing:
            notes.append("Chat is not collected: the channel:bot permission was not granted.")
        notes += await _subscribe(ctx, twitch, user.id)
    elif role == "bot":
        notes += await _subscribe(ctx, twitch, None)
    title = {"streamer": "Channel connected", "viewer": "Signed in", "bot": "Bot connected"}[role]
    detail = f"Signed in as {user.display_name}. " + " ".join(notes)
    final = page(200, title, detail.strip())
    for key, value in response.headers.items():
        if key.lower() == "set-cookie":
            final.headers.append("set-cookie", value)
    return final


async def _may_be_the_bot(session: AsyncSession, ctx: Context, user_id: str) -> bool:
    """Whoever is the bot names every chat subscription: it must not be up for grabs."""
    if ctx.settings.bot_user_id is not None:
        return user_id == ctx.settings.bot_user_id
    current = await connected_bot_id(session, None)
    return current is None or current == user_id


async def _subscribe(ctx: Context, twitch: TwitchClient, broadcaster_id: str | None) -> list[str]:
    """Create the channel's (or, for the bot, every channel's) subscriptions now; if
    Twitch is slow or refuses, the channel stays connected and the next sync repairs it."""
    try:
        async with ctx.sessions.begin() as session:
            report: SyncReport = await sync_subscriptions(
                session, twitch, ctx.settings, broadcaster_id=broadcaster_id
            )
    except (TwitchUnavailable, TwitchRejected) as exc:
        log.warning("oauth.subscriptions_deferred", broadcaster_id=broadcaster_id, error=exc.code)
        return ["Twitch notifications will be set up shortly."]
    log.info("oauth.subscriptions", broadcaster_id=broadcaster_id, **report.counts())
    notes = list(report.notes)
    if report.failed:
        notes.append(f"{len(report.failed)} subscription(s) could not be created yet.")
    return notes


async def logout(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    response = JSONResponse({"signed_out": True})
    async with ctx.sessions.begin() as session:
        await end_login_session(session, ctx.settings, request, response)
    return response
