"""POST /eventsub/callback: prove the message came from Twitch, then answer it.

Order matters: headers, then the raw body (bounded in size and time), then the
signature over exactly those bytes, then the replay window. Nothing is parsed, queued
or stored before the signature checks out.
"""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from receiver.body import Headers, read_body, read_headers
from receiver.context import Context
from receiver.metrics import NOTIFICATIONS
from receiver.refusals import note_refusal
from receiver.signature import check_fresh, verify
from schema.channels import AUTH_LOST_REASONS, enqueue_disconnect, enqueue_token_check
from schema.errors import BadRequest, Forbidden, MalformedHeaders, QueueUnavailable
from schema.events import (
    FOLDED_TYPES,
    Delivery,
    WireSubscription,
    challenge_decoder,
    parse_instant,
    revocation_decoder,
)
from schema.logs import get_logger
from schema.subscriptions import (
    is_expected,
    record_revocation,
    record_verified_unless_busy,
)

log = get_logger("receiver.eventsub")

NOTIFICATION = "notification"
VERIFICATION = "webhook_callback_verification"
REVOCATION = "revocation"

# Resolved once: a labelled child per outcome, not a label lookup per request.
ACCEPTED = NOTIFICATIONS.labels(outcome="accepted")
REFUSED = NOTIFICATIONS.labels(outcome="refused")
IGNORED = NOTIFICATIONS.labels(outcome="ignored")
REVOKED = NOTIFICATIONS.labels(outcome="revocation")


async def callback(request: Request) -> Response:
    ctx: Context = request.app.state.ctx
    headers = read_headers(request)
    body = await read_body(request, headers, ctx.body_deadlines)
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
        REFUSED.inc()
        log.info(
            "eventsub.refused",
            message_id=headers.message_id,
            reason=getattr(exc, "code", type(exc).__name__),
        )
        raise
    if headers.message_type == NOTIFICATION:
        return await _notification(ctx, headers, body)
    with structlog.contextvars.bound_contextvars(message_id=headers.message_id):
        if headers.message_type == VERIFICATION:
            return await _verification(ctx, body)
        if headers.message_type == REVOCATION:
            return await _revocation(ctx, body)
        log.warning("eventsub.unknown_message_type", message_type=headers.message_type[:64])
        return Response(status_code=204)


async def _notification(ctx: Context, headers: Headers, body: bytes) -> Response:
    subscription_type = headers.subscription_type
    if subscription_type is None:
        raise MalformedHeaders("missing header Twitch-Eventsub-Subscription-Type")
    if subscription_type not in FOLDED_TYPES:
        IGNORED.inc()
        log.info(
            "eventsub.ignored_type",
            message_id=headers.message_id,
            subscription_type=subscription_type[:100],
        )
        return Response(status_code=204)
    try:
        await ctx.queue.accept(
            Delivery(headers.message_id, headers.timestamp, subscription_type, body)
        )
    except QueueUnavailable:
        # Twitch will retry, but not forever: mark the time as a possible chat gap.
        await note_refusal(ctx.sessions, parse_instant(headers.timestamp), ctx.clock())
        raise
    ACCEPTED.inc()
    return Response(status_code=204)


def _subscription(
    decoder: msgspec.json.Decoder[Any], body: bytes
) -> tuple[object, WireSubscription]:
    try:
        decoded = decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not a valid EventSub message: {exc}") from None
    return decoded, decoded.subscription


async def _verification(ctx: Context, body: bytes) -> Response:
    decoded, subscription = _subscription(challenge_decoder, body)
    async with ctx.sessions.begin() as session:
        # Only subscriptions we asked for: a pending create of this type and condition
        # (the challenge can beat our create call's answer) or an id we recorded.
        if not await is_expected(session, ctx.redis, subscription):
            log.warning(
                "eventsub.challenge_refused",
                subscription_id=subscription.id,
                subscription_type=subscription.type,
            )
            raise Forbidden("challenge for a subscription streamfold did not request")
        if not await record_verified_unless_busy(session, subscription):
            log.info("eventsub.challenge_record_deferred", subscription_id=subscription.id)
    log.info(
        "eventsub.challenge_answered",
        subscription_id=subscription.id,
        subscription_type=subscription.type,
    )
    # The exact challenge bytes as text/plain: a JSON-encoded answer fails verification.
    return PlainTextResponse(decoded.challenge, status_code=200)  # type: ignore[attr-defined]


async def _revocation(ctx: Context, body: bytes) -> Response:
    _, subscription = _subscription(revocation_decoder, body)
    async with ctx.sessions.begin() as session:
        await record_revocation(session, subscription)
    if subscription.status in AUTH_LOST_REASONS:
        await _follow_lost_authorization(ctx, subscription)
    REVOKED.inc()
    log.warning(
        "eventsub.revoked",
        subscription_id=subscription.id,
        subscription_type=subscription.type,
        reason=subscription.status,
        condition=subscription.condition,
    )
    return Response(status_code=204)


async def _follow_lost_authorization(ctx: Context, subscription: WireSubscription) -> None:
    """A user took our authorization away: the worker disconnects them. For a chat
    subscription it may be the broadcaster or the bot, so their tokens tell which."""
    broadcaster = subscription.condition.get("broadcaster_user_id")
    chatter = subscription.condition.get("user_id")
    queue = ctx.settings.queue_name
    if chatter is not None and broadcaster is not None and chatter != broadcaster:
        await enqueue_token_check(ctx.redis, queue, [broadcaster, chatter])
    elif broadcaster is not None:
        await enqueue_disconnect(ctx.redis, queue, broadcaster, subscription.status)
