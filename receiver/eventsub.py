"""POST /eventsub/callback: prove the message came from Twitch, then answer it.

Order matters: headers, then the raw body (bounded in size and time), then the
signature over exactly those bytes, then the replay window. Nothing is parsed, queued
or stored before the signature checks out. Then the signed body, not the unsigned
Message-Type and Subscription-Type headers, says what the message is; a header that
contradicts it is refused, so a captured message cannot be replayed as another kind.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope

from receiver.body import Headers, read_body, read_headers
from receiver.context import Context
from receiver.refusals import note_refusal
from receiver.signature import MAX_AGE, MAX_FUTURE_SKEW, check_fresh, verify
from schema.errors import (
    BadRequest,
    Forbidden,
    MalformedHeaders,
    QueueUnavailable,
    StreamfoldError,
)
from schema.events import (
    FOLDED_TYPES,
    NOTIFICATION,
    VERIFICATION,
    Delivery,
    Subscription,
    challenge_decoder,
    parse_instant,
    read_kind,
    revocation_decoder,
)
from schema.logs import get_logger
from schema.metrics import count_notification
from schema.settings import Settings
from schema.twitch.channels import AUTH_LOST_REASONS, enqueue_disconnect, enqueue_token_check
from schema.twitch.subscription_records import (
    is_expected,
    record_revocation,
    record_verified_unless_busy,
)

log = get_logger("receiver.eventsub")

# A signed message is accepted while its timestamp is within MAX_AGE behind and
# MAX_FUTURE_SKEW ahead of our clock, so a replay is possible for their sum at most.
# Notifications are remembered by the fold's ledger; challenges and revocations here.
SEEN_TTL = MAX_AGE + MAX_FUTURE_SKEW + timedelta(minutes=1)


# The answer to an accepted notification, made once: the hot path builds no Response.
NO_CONTENT = Response(status_code=204)


async def answer(ctx: Context, scope: Scope, receive: Receive) -> Response:
    """The answer to one webhook request (``receiver/webhook.py`` sends it). Every answer
    but an accepted one (counted where it is) is counted by its outcome."""
    try:
        return await _answer(ctx, scope, receive)
    except StreamfoldError as exc:
        claimed = _claimed_type(scope)
        if isinstance(exc, QueueUnavailable):
            count_notification(claimed, "unavailable")
        else:
            count_notification(claimed, "refused", exc.code)
        raise


def _claimed_type(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"twitch-eventsub-subscription-type":
            return str(value.decode("latin-1"))
    return None


async def _answer(ctx: Context, scope: Scope, receive: Receive) -> Response:
    headers = read_headers(scope["headers"])
    # Every line logged for this message names it (read_headers bounded the id). Bound
    # and reset by token: structlog's bound_contextvars copies the whole context first.
    bound = structlog.contextvars.bind_contextvars(message_id=headers.message_id)
    try:
        body = await read_body(receive, headers, ctx.body_deadlines)
        try:
            verify(
                ctx.settings.eventsub_secrets,
                headers.message_id,
                headers.timestamp,
                body,
                headers.signature,
            )
            check_fresh(headers.timestamp, ctx.clock())
        except Exception as exc:
            log.info("eventsub.refused", reason=getattr(exc, "code", type(exc).__name__))
            raise
        message_type, subscription_type = _signed_kind(headers, body)
        bound_type = structlog.contextvars.bind_contextvars(
            subscription_type=subscription_type[:100]
        )
        try:
            if message_type == NOTIFICATION:
                return await _notification(ctx, headers, subscription_type, body)
            return await _control(ctx, headers, message_type, body)
        finally:
            structlog.contextvars.reset_contextvars(**bound_type)
    finally:
        structlog.contextvars.reset_contextvars(**bound)


async def _control(ctx: Context, headers: Headers, message_type: str, body: bytes) -> Response:
    """A challenge or a revocation: acted on once, remembered for the replay window."""
    if not await _first_sighting(ctx, headers.message_id):
        log.info("eventsub.duplicate", message_type=message_type)
        count_notification(headers.subscription_type, "duplicate")
        if message_type == VERIFICATION:  # the same answer again, nothing recorded
            decoded, _ = _subscription(challenge_decoder, body)
            return PlainTextResponse(decoded.challenge, status_code=200)  # type: ignore[attr-defined]
        return Response(status_code=204)
    try:
        if message_type == VERIFICATION:
            return await _verification(ctx, body)
        return await _revocation(ctx, body)
    except BaseException:
        # Not acted on: Twitch's retry of this message must be handled, not dropped.
        await _forget_sighting(ctx, headers.message_id)
        raise


def _signed_kind(headers: Headers, body: bytes) -> tuple[str, str]:
    """Message type and subscription type from the signed body, if the headers agree."""
    try:
        kind = read_kind(body)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if headers.message_type != kind.message_type:
        raise MalformedHeaders(
            f"Twitch-Eventsub-Message-Type {headers.message_type[:64]!r} contradicts the "
            f"signed body, a {kind.message_type} message"
        )
    if headers.subscription_type is None:
        raise MalformedHeaders("missing header Twitch-Eventsub-Subscription-Type")
    if headers.subscription_type != kind.subscription_type:
        raise MalformedHeaders(
            f"Twitch-Eventsub-Subscription-Type {headers.subscription_type[:100]!r} differs "
            f"from the signed body's subscription type {kind.subscription_type[:100]!r}"
        )
    return kind.message_type, kind.subscription_type


def _seen_key(settings: Settings, message_id: str) -> str:
    return f"{settings.queue_name}:eventsub-seen:{message_id}"


async def _first_sighting(ctx: Context, message_id: str) -> bool:
    """Remember ``message_id`` for the replay window; False if it was already there."""
    try:
        first = await ctx.redis.set(
            _seen_key(ctx.settings, message_id),
            b"1",
            ex=int(SEEN_TTL.total_seconds()),
            nx=True,
        )
    except (RedisError, OSError) as exc:
        log.warning("eventsub.seen_unavailable", error=type(exc).__name__)
        raise QueueUnavailable("cannot tell a first delivery from a replay right now") from None
    return bool(first)


async def _forget_sighting(ctx: Context, message_id: str) -> None:
    try:
        await ctx.redis.delete(_seen_key(ctx.settings, message_id))
    except (RedisError, OSError) as exc:  # Twitch's retry then counts as a duplicate
        log.warning("eventsub.seen_not_forgotten", error=type(exc).__name__)


async def _notification(
    ctx: Context, headers: Headers, subscription_type: str, body: bytes
) -> Response:
    if subscription_type not in FOLDED_TYPES:
        count_notification(subscription_type, "ignored")
        log.info("eventsub.ignored_type")
        return NO_CONTENT
    try:
        await ctx.queue.accept(
            Delivery(headers.message_id, headers.timestamp, subscription_type, body)
        )
    except QueueUnavailable:
        # Twitch will retry, but not forever: mark the time as a possible chat gap.
        await note_refusal(ctx.sessions, parse_instant(headers.timestamp), ctx.clock())
        raise
    count_notification(subscription_type, "accepted")
    return NO_CONTENT


def _subscription(decoder: msgspec.json.Decoder[Any], body: bytes) -> tuple[object, Subscription]:
    try:
        decoded = decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise BadRequest(f"body is not a valid EventSub message: {exc}") from None
    return decoded, decoded.subscription


async def _verification(ctx: Context, body: bytes) -> Response:
    decoded, subscription = _subscription(challenge_decoder, body)
    async with ctx.sessions.begin() as session:
        # Only subscriptions we asked for: a pending create of this type and condition
        # (the challenge can beat our create call's answer) or an id we recorded.
        if not await is_expected(session, ctx.redis, ctx.settings.queue_name, subscription):
            if not ctx.settings.eventsub_accept_any_challenge:
                log.warning(
                    "eventsub.challenge_refused",
                    subscription_id=subscription.id,
                )
                raise Forbidden("challenge for a subscription streamfold did not request")
            # The local run: `twitch event verify-subscription` invents the subscription.
            # Answered, and nothing stored about it.
            log.info("eventsub.challenge_unrequested_accepted", subscription_id=subscription.id)
        elif not await record_verified_unless_busy(session, subscription):
            log.info("eventsub.challenge_record_deferred", subscription_id=subscription.id)
    log.info(
        "eventsub.challenge_answered",
        subscription_id=subscription.id,
    )
    # The exact challenge bytes as text/plain: a JSON-encoded answer fails verification.
    return PlainTextResponse(decoded.challenge, status_code=200)  # type: ignore[attr-defined]


async def _revocation(ctx: Context, body: bytes) -> Response:
    _, subscription = _subscription(revocation_decoder, body)
    async with ctx.sessions.begin() as session:
        known = await record_revocation(session, subscription)
    if not known:
        log.warning(
            "eventsub.unknown_revoked",
            subscription_id=subscription.id[:64],
            reason=subscription.status[:64],
        )
        return Response(status_code=204)
    if subscription.status in AUTH_LOST_REASONS:
        await _follow_lost_authorization(ctx, subscription)
    count_notification(subscription.type, "revocation", subscription.status[:64])
    log.warning(
        "eventsub.revoked",
        subscription_id=subscription.id,
        reason=subscription.status,
        condition=subscription.condition,
    )
    return Response(status_code=204)


async def _follow_lost_authorization(ctx: Context, subscription: Subscription) -> None:
    """A user took our authorization away: the worker disconnects them. For a chat
    subscription it may be the broadcaster or the bot, so their tokens tell which."""
    broadcaster = subscription.condition.get("broadcaster_user_id")
    chatter = subscription.condition.get("user_id")
    queue = ctx.settings.queue_name
    if chatter is not None and broadcaster is not None and chatter != broadcaster:
        await enqueue_token_check(ctx.redis, queue, [broadcaster, chatter])
    elif broadcaster is not None:
        await enqueue_disconnect(ctx.redis, queue, broadcaster, subscription.status)
