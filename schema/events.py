"""Twitch bytes become typed values here, right after the signature check, and nowhere else.

msgspec decodes a chat body into typed structs in about a microsecond (LIMITS.md), which
matters on the fold's hot path; unknown fields are ignored, as Twitch may add them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NewType

import msgspec
from msgspec import UNSET, UnsetType

BroadcasterId = NewType("BroadcasterId", str)
MessageId = NewType("MessageId", str)
StreamId = NewType("StreamId", str)

STREAM_ONLINE = "stream.online"
STREAM_OFFLINE = "stream.offline"
CHAT_MESSAGE = "channel.chat.message"
AUTHORIZATION_REVOKE = "user.authorization.revoke"
FOLDED_TYPES = frozenset({STREAM_ONLINE, STREAM_OFFLINE, CHAT_MESSAGE, AUTHORIZATION_REVOKE})


# RFC 3339 section 5.6 (date-time). ``datetime.fromisoformat`` alone accepts far more of
# ISO 8601: week dates (2026-W49-2), ordinal dates, the basic format without separators,
# hour-only times. A signed timestamp in any of those is not what Twitch sends.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


class NotAnInstant(ValueError):
    """The text is not shaped as an RFC 3339 date-time at all (rather than, say, month 13)."""


def parse_instant(value: str) -> datetime:
    """RFC 3339 with 0-9 fractional digits (Twitch varies it) to an aware UTC datetime.
    The one parser for instants: signed timestamps, Twitch's fields and API parameters."""
    if _RFC3339.fullmatch(value) is None:
        raise NotAnInstant(f"not an RFC 3339 instant: {value[:64]!r}")
    # RFC 3339 allows a lowercase t and z; fromisoformat reads only the uppercase z.
    parsed = datetime.fromisoformat(value.upper())
    if parsed.tzinfo is None:
        raise ValueError(f"instant without a time zone: {value!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        raise ValueError(f"instant out of range: {value!r}") from None


# -- the queue payload ---------------------------------------------------------------------


class Delivery(msgspec.Struct, frozen=True, array_like=True):
    """One verified notification as the receiver queued it: headers that matter + raw body."""

    message_id: str
    timestamp: str
    subscription_type: str
    body: bytes


# -- wire shapes (PROTOCOL.md section 4) ---------------------------------------------------

# Text that is stored: no longer than its column, and without control characters
# (PostgreSQL refuses NUL in text and jsonb outright). A body outside these bounds is
# refused when decoded, so it never becomes a database error.
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_NO_CONTROL)]
Login = Annotated[str, msgspec.Meta(max_length=64, pattern=_NO_CONTROL)]
DisplayName = Annotated[str, msgspec.Meta(max_length=128, pattern=_NO_CONTROL)]
SubscriptionType = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=_NO_CONTROL)]
Version = Annotated[str, msgspec.Meta(max_length=16, pattern=_NO_CONTROL)]
# Twitch sends "" for an unset optional condition field.
ConditionText = Annotated[str, msgspec.Meta(max_length=64, pattern=_NO_CONTROL)]
Condition = Annotated[dict[ConditionText, ConditionText], msgspec.Meta(max_length=16)]
MessageText = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=_NO_CONTROL)]


class SubscriptionTransport(msgspec.Struct, frozen=True):
    method: str
    callback: str | None = None


# Statuses of a subscription that delivers (or is about to, once the challenge is answered).
LIVE_STATUSES = frozenset({"enabled", "webhook_callback_verification_pending"})


class Subscription(msgspec.Struct, frozen=True):
    """Twitch's subscription object, as Helix lists it and as each webhook body carries it.
    A body without ``transport`` still decodes (its method reads empty, its callback None)."""

    id: Id
    status: Login
    type: SubscriptionType
    version: Version
    condition: Condition
    transport: SubscriptionTransport = msgspec.field(
        default_factory=lambda: SubscriptionTransport(method="")
    )
    created_at: str | None = None
    cost: int = 0


class WireStreamOnline(msgspec.Struct, frozen=True):
    id: Id
    broadcaster_user_id: Id
    broadcaster_user_login: Login
    broadcaster_user_name: DisplayName
    started_at: str
    type: str = "live"


class WireStreamOffline(msgspec.Struct, frozen=True):
    broadcaster_user_id: Id
    broadcaster_user_login: Login | None = None
    broadcaster_user_name: DisplayName | None = None


class WireChatMessage(msgspec.Struct, frozen=True):
    broadcaster_user_id: Id
    chatter_user_id: Id
    message_id: MessageText
    source_broadcaster_user_id: Id | None = None


class WireAuthorizationRevoke(msgspec.Struct, frozen=True):
    client_id: Id
    user_id: Id


class _Envelope(msgspec.Struct, frozen=True):
    subscription: Subscription


class _OnlineEnvelope(_Envelope, frozen=True):
    event: WireStreamOnline


class _OfflineEnvelope(_Envelope, frozen=True):
    event: WireStreamOffline


class _ChatEnvelope(_Envelope, frozen=True):
    event: WireChatMessage


class _RevokeEnvelope(_Envelope, frozen=True):
    event: WireAuthorizationRevoke


class ChallengeBody(msgspec.Struct, frozen=True):
    challenge: Annotated[str, msgspec.Meta(max_length=1024, pattern=_NO_CONTROL)]
    subscription: Subscription


class RevocationBody(msgspec.Struct, frozen=True):
    subscription: Subscription


# The chat envelope again with the same bounds but no control-character patterns, which
# cost two thirds of a chat body's decoding (msgspec runs each through ``re``). It is used
# only for a body with no backslash and no DEL byte: JSON text carries a control
# character only as an escape (raw ones are invalid JSON), so no string in such a body
# could fail the patterns, and both decoders give the same result or the same error.
_IdText = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
_ShortText = Annotated[str, msgspec.Meta(max_length=64)]


class _PlainSubscription(Subscription, frozen=True):
    id: _IdText
    status: _ShortText
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    version: Annotated[str, msgspec.Meta(max_length=16)]
    condition: Annotated[dict[_ShortText, _ShortText], msgspec.Meta(max_length=16)]


class _PlainChatMessage(WireChatMessage, frozen=True):
    broadcaster_user_id: _IdText
    chatter_user_id: _IdText
    message_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    source_broadcaster_user_id: _IdText | None = None


class _PlainChatEnvelope(_ChatEnvelope, frozen=True):
    subscription: _PlainSubscription
    event: _PlainChatMessage


_PLAIN_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    CHAT_MESSAGE: msgspec.json.Decoder(_PlainChatEnvelope),
}

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    STREAM_ONLINE: msgspec.json.Decoder(_OnlineEnvelope),
    STREAM_OFFLINE: msgspec.json.Decoder(_OfflineEnvelope),
    CHAT_MESSAGE: msgspec.json.Decoder(_ChatEnvelope),
    AUTHORIZATION_REVOKE: msgspec.json.Decoder(_RevokeEnvelope),
}
challenge_decoder = msgspec.json.Decoder(ChallengeBody)
revocation_decoder = msgspec.json.Decoder(RevocationBody)


# -- what a message is, from its signed body -------------------------------------------------

NOTIFICATION = "notification"
VERIFICATION = "webhook_callback_verification"
REVOCATION = "revocation"


class _SubscriptionHead(msgspec.Struct, frozen=True):
    type: str
    status: str


class _Head(msgspec.Struct, frozen=True):
    """Only what decides how a message is handled. The event is checked to be JSON and
    skipped, not built: the worker decodes it against its type, and a notification with
    the wrong event shape is still acknowledged and dead-lettered there."""

    subscription: _SubscriptionHead
    event: msgspec.Raw | UnsetType = UNSET
    challenge: str | UnsetType = UNSET


_head_decoder = msgspec.json.Decoder(_Head)


@dataclass(frozen=True, slots=True)
class SignedKind:
    """What the signed body says a message is. Twitch signs neither the Message-Type nor
    the Subscription-Type header, so those may only agree with this, never decide."""

    message_type: str
    subscription_type: str


def read_kind(body: bytes) -> SignedKind:
    """A challenge has a ``challenge``; a revocation has none and a status other than
    ``enabled``; a notification has an ``event`` and status ``enabled``. ``ValueError``
    for any other body."""
    try:
        head = _head_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise ValueError(f"body is not a valid EventSub message: {exc}") from None
    except RecursionError:
        raise ValueError("body is not a valid EventSub message: nested too deeply") from None
    has_event = head.event is not UNSET
    if head.challenge is not UNSET:
        if has_event:
            raise ValueError("body has both a challenge and an event")
        message_type = VERIFICATION
    elif head.subscription.status != "enabled":
        # Twitch's revocations carry no event; the Twitch CLI's (`trigger -r <status>`)
        # keep the generated one. Either way it is no notification: those are "enabled".
        message_type = REVOCATION
    elif has_event:
        message_type = NOTIFICATION
    else:
        raise ValueError("body is neither a notification, a challenge nor a revocation")
    return SignedKind(message_type, head.subscription.type)


# -- typed notifications, what the fold works on ---------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamOnline:
    message_id: MessageId
    event_time: datetime
    broadcaster_id: BroadcasterId
    login: str
    display_name: str
    stream_id: StreamId
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StreamOffline:
    message_id: MessageId
    event_time: datetime
    broadcaster_id: BroadcasterId


@dataclass(frozen=True, slots=True)
class ChatMessage:
    message_id: MessageId
    event_time: datetime
    broadcaster_id: BroadcasterId
    chatter_id: str
    chat_message_id: str
    # Shared chat: a message sent in another channel, echoed into this one.
    from_other_channel: bool


@dataclass(frozen=True, slots=True)
class AuthorizationRevoke:
    message_id: MessageId
    event_time: datetime
    user_id: str


@dataclass(frozen=True, slots=True)
class Unfoldable:
    """A verified notification whose body cannot be folded; it goes to the dead letters."""

    message_id: MessageId
    subscription_type: str
    reason: str
    body: bytes


Notification = StreamOnline | StreamOffline | ChatMessage | AuthorizationRevoke | Unfoldable


def decode(delivery: Delivery) -> Notification:
    """Typed notification from a queued delivery; a wrong shape gives ``Unfoldable``."""
    message_id = MessageId(delivery.message_id)

    def unfoldable(reason: str) -> Unfoldable:
        return Unfoldable(message_id, delivery.subscription_type, reason, delivery.body)

    body = delivery.body
    decoder = None
    if b"\\" not in body and b"\x7f" not in body:
        decoder = _PLAIN_DECODERS.get(delivery.subscription_type)
    if decoder is None:
        decoder = _DECODERS.get(delivery.subscription_type)
    if decoder is None:
        return unfoldable(f"unsupported subscription type {delivery.subscription_type!r}")
    try:
        envelope = decoder.decode(body)
        event_time = parse_instant(delivery.timestamp)
    except (msgspec.DecodeError, ValueError) as exc:
        return unfoldable(f"body does not match {delivery.subscription_type}: {exc}")
    except RecursionError:  # nesting deeper than msgspec follows
        return unfoldable(f"body of {delivery.subscription_type} is nested too deeply")
    if envelope.subscription.type != delivery.subscription_type:
        return unfoldable(
            f"header type {delivery.subscription_type!r} differs from body type "
            f"{envelope.subscription.type!r}"
        )
    event = envelope.event
    if isinstance(event, WireChatMessage):
        source = event.source_broadcaster_user_id
        return ChatMessage(
            message_id,
            event_time,
            BroadcasterId(event.broadcaster_user_id),
            event.chatter_user_id,
            event.message_id,
            from_other_channel=source is not None and source != event.broadcaster_user_id,
        )
    if isinstance(event, WireStreamOnline):
        try:
            started_at = parse_instant(event.started_at)
        except ValueError as exc:
            return unfoldable(f"bad started_at: {exc}")
        return StreamOnline(
            message_id,
            event_time,
            BroadcasterId(event.broadcaster_user_id),
            event.broadcaster_user_login,
            event.broadcaster_user_name,
            StreamId(event.id),
            started_at,
        )
    if isinstance(event, WireStreamOffline):
        return StreamOffline(message_id, event_time, BroadcasterId(event.broadcaster_user_id))
    return AuthorizationRevoke(message_id, event_time, event.user_id)
