"""Builds and signs EventSub messages the way Twitch sends them (PROTOCOL.md 1 and 4).

Used by ``streamfold simulate``, the benchmarks and the tests: the one place outside
the receiver that knows the wire format, so all three send what Twitch would.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from receiver.signature import sign


def rfc3339(instant: datetime, *, digits: int = 9) -> str:
    """Twitch style: UTC with ``Z``, ``digits`` fractional digits (0-9)."""
    base = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    fraction = f"{instant.microsecond:06d}000"[:digits]
    return f"{base}.{fraction}Z"


def _subscription(
    sub_type: str, condition: dict[str, str], status: str = "enabled", sub_id: str | None = None
) -> dict[str, object]:
    return {
        "id": sub_id or str(uuid.uuid4()),
        "status": status,
        "type": sub_type,
        "version": "1",
        "cost": 0,
        "condition": condition,
        "transport": {"method": "webhook", "callback": "https://example.invalid/eventsub/callback"},
        "created_at": "2024-05-01T09:00:00.123456789Z",
    }


def stream_online_body(
    broadcaster_id: str, stream_id: str, started_at: datetime, login: str | None = None
) -> bytes:
    login = login or f"channel_{broadcaster_id}"
    event = {
        "id": stream_id,
        "broadcaster_user_id": broadcaster_id,
        "broadcaster_user_login": login,
        "broadcaster_user_name": login.title(),
        "type": "live",
        "started_at": rfc3339(started_at, digits=3),
    }
    body = {
        "subscription": _subscription("stream.online", {"broadcaster_user_id": broadcaster_id}),
        "event": event,
    }
    return msgspec.json.encode(body)


def stream_offline_body(broadcaster_id: str, login: str | None = None) -> bytes:
    login = login or f"channel_{broadcaster_id}"
    event = {
        "broadcaster_user_id": broadcaster_id,
        "broadcaster_user_login": login,
        "broadcaster_user_name": login.title(),
    }
    body = {
        "subscription": _subscription("stream.offline", {"broadcaster_user_id": broadcaster_id}),
        "event": event,
    }
    return msgspec.json.encode(body)


def chat_message_body(
    broadcaster_id: str,
    chatter_id: str,
    chat_message_id: str,
    text: str = "hello chat",
    *,
    bot_id: str = "9999",
    source_broadcaster_id: str | None = None,
) -> bytes:
    event: dict[str, object] = {
        "broadcaster_user_id": broadcaster_id,
        "broadcaster_user_login": f"channel_{broadcaster_id}",
        "broadcaster_user_name": f"Channel_{broadcaster_id}",
        "chatter_user_id": chatter_id,
        "chatter_user_login": f"viewer_{chatter_id}",
        "chatter_user_name": f"Viewer_{chatter_id}",
        "message_id": chat_message_id,
        "message": {
            "text": text,
            "fragments": [
                {"type": "text", "text": text, "cheermote": None, "emote": None, "mention": None}
            ],
        },
        "color": "#00FF7F",
        "badges": [],
        "message_type": "text",
        "cheer": None,
        "reply": None,
        "channel_points_custom_reward_id": None,
        "source_broadcaster_user_id": source_broadcaster_id,
        "source_broadcaster_user_login": None,
        "source_broadcaster_user_name": None,
        "source_message_id": None,
        "source_badges": None,
        "is_source_only": None,
    }
    condition = {"broadcaster_user_id": broadcaster_id, "user_id": bot_id}
    body = {"subscription": _subscription("channel.chat.message", condition), "event": event}
    return msgspec.json.encode(body)


def authorization_revoke_body(client_id: str, user_id: str) -> bytes:
    body = {
        "subscription": _subscription("user.authorization.revoke", {"client_id": client_id}),
        "event": {
            "client_id": client_id,
            "user_id": user_id,
            "user_login": None,
            "user_name": None,
        },
    }
    return msgspec.json.encode(body)


def challenge_body(
    challenge: str, sub_type: str, condition: dict[str, str], sub_id: str | None = None
) -> bytes:
    sub = _subscription(sub_type, condition, "webhook_callback_verification_pending", sub_id)
    return msgspec.json.encode({"challenge": challenge, "subscription": sub})


def revocation_body(
    sub_type: str, condition: dict[str, str], reason: str, sub_id: str | None = None
) -> bytes:
    return msgspec.json.encode({"subscription": _subscription(sub_type, condition, reason, sub_id)})


@dataclass(frozen=True, slots=True)
class Message:
    """One signed EventSub HTTP request, ready to POST (or to POST again as a retry)."""

    message_id: str
    timestamp: str
    message_type: str
    subscription_type: str
    body: bytes
    signature: str

    def headers(self, retry: int = 0) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Twitch-Eventsub-Message-Id": self.message_id,
            "Twitch-Eventsub-Message-Retry": str(retry),
            "Twitch-Eventsub-Message-Type": self.message_type,
            "Twitch-Eventsub-Message-Signature": self.signature,
            "Twitch-Eventsub-Message-Timestamp": self.timestamp,
            "Twitch-Eventsub-Subscription-Type": self.subscription_type,
            "Twitch-Eventsub-Subscription-Version": "1",
        }


def signed(
    secret: bytes,
    body: bytes,
    subscription_type: str,
    *,
    sent_at: datetime,
    message_type: str = "notification",
    message_id: str | None = None,
    digits: int = 9,
) -> Message:
    message_id = message_id or str(uuid.uuid4())
    timestamp = rfc3339(sent_at, digits=digits)
    return Message(
        message_id,
        timestamp,
        message_type,
        subscription_type,
        body,
        sign(secret, message_id, timestamp, body),
    )
