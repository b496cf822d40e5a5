"""Pure folding: typed notifications in, plain values describing changes out.

No SQLAlchemy, httpx or arq here; ``store.py`` turns a ``FoldPlan`` into SQL, and
``sessions.py`` holds the rule that ends a channel's sessions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from schema.events import (
    AUTHORIZATION_REVOKE,
    CHAT_MESSAGE,
    STREAM_OFFLINE,
    STREAM_ONLINE,
    AuthorizationRevoke,
    ChatMessage,
    Notification,
    StreamOffline,
    StreamOnline,
    Unfoldable,
)

# Twitch ids are short opaque strings; anything longer is not a Twitch payload, and
# the columns that hold ids are sized for them.
MAX_ID_LENGTH = 64
_TYPE_OF = {
    ChatMessage: CHAT_MESSAGE,
    StreamOnline: STREAM_ONLINE,
    StreamOffline: STREAM_OFFLINE,
    AuthorizationRevoke: AUTHORIZATION_REVOKE,
}


@dataclass(frozen=True, slots=True)
class ChatRow:
    chat_message_id: str
    broadcaster_id: str
    chatter_id: str
    sent_at: datetime


@dataclass(slots=True)
class FoldPlan:
    chat: list[ChatRow] = field(default_factory=list)
    onlines: list[StreamOnline] = field(default_factory=list)
    offlines: list[StreamOffline] = field(default_factory=list)
    # Revocations folded now: the user's access ends in this transaction.
    revokes: list[AuthorizationRevoke] = field(default_factory=list)
    # Every valid revocation of the batch, folded now or before: each is followed by a
    # disconnect job once the transaction committed (a retry re-sends what a failed
    # try could not; the job is idempotent).
    disconnects: list[AuthorizationRevoke] = field(default_factory=list)
    dead: list[Unfoldable] = field(default_factory=list)
    # Shared-chat echoes and other notifications that are folded as "seen, nothing to count".
    ignored: int = 0


def _too_long_id(notification: Notification) -> str | None:
    ids: Iterable[str]
    if isinstance(notification, ChatMessage):
        ids = (notification.broadcaster_id, notification.chatter_id, notification.chat_message_id)
    elif isinstance(notification, StreamOnline):
        ids = (notification.broadcaster_id, notification.stream_id)
    elif isinstance(notification, StreamOffline):
        ids = (notification.broadcaster_id,)
    elif isinstance(notification, AuthorizationRevoke):
        ids = (notification.user_id,)
    else:
        return None
    for value in ids:
        if not value or len(value) > MAX_ID_LENGTH:
            return f"id {value[:80]!r} is empty or longer than {MAX_ID_LENGTH} characters"
    return None


def plan(
    notifications: Iterable[Notification],
    *,
    bodies: dict[str, bytes] | None = None,
    folded_before: Collection[str] = frozenset(),
) -> FoldPlan:
    """Sort notifications into the changes they make.

    A notification whose message id is in ``folded_before`` (the ledger had it) changes
    nothing again; only a revocation's follow-up is planned once more. A chat message
    seen twice in one batch (two subscriptions delivering it under different ids) is kept
    once, at the earliest event time, so the outcome does not depend on how batches were
    cut.
    """
    result = FoldPlan()
    chat: dict[str, ChatRow] = {}
    for notification in notifications:
        problem = _too_long_id(notification)
        if notification.message_id in folded_before:
            if problem is None and isinstance(notification, AuthorizationRevoke):
                result.disconnects.append(notification)
            continue
        if problem is not None:
            body = (bodies or {}).get(notification.message_id, b"")
            kind = _TYPE_OF.get(type(notification), "unknown")
            result.dead.append(Unfoldable(notification.message_id, kind, problem, body))
            continue
        match notification:
            case ChatMessage(from_other_channel=True):
                result.ignored += 1
            case ChatMessage():
                row = ChatRow(
                    notification.chat_message_id,
                    notification.broadcaster_id,
                    notification.chatter_id,
                    notification.event_time,
                )
                known = chat.get(row.chat_message_id)
                if known is None or row.sent_at < known.sent_at:
                    chat[row.chat_message_id] = row
            case StreamOnline():
                result.onlines.append(notification)
            case StreamOffline():
                result.offlines.append(notification)
            case AuthorizationRevoke():
                result.revokes.append(notification)
                result.disconnects.append(notification)
            case Unfoldable():
                result.dead.append(notification)
    # Sorted so concurrent writers take index locks in one order (no deadlocks).
    result.chat = sorted(chat.values(), key=lambda r: r.chat_message_id)
    return result
