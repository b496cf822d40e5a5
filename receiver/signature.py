"""Twitch EventSub message signatures: sign, verify, and the replay window. Pure.

HMAC-SHA256 over message id + timestamp + raw body, exactly as received (PROTOCOL.md 1.4).
``simulate``, the benchmarks and the tests sign with ``sign`` so there is one definition.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime, timedelta

from schema.errors import InvalidSignature, MalformedHeaders, StaleMessage
from schema.events import parse_instant

# Twitch's advice: refuse messages older than 10 minutes.
MAX_AGE = timedelta(minutes=10)
# Not a Twitch rule: Svix-style tolerance for a sender clock that runs ahead of ours.
MAX_FUTURE_SKEW = timedelta(minutes=2)

_PREFIX = b"sha256="
_SIGNATURE_LENGTH = len(_PREFIX) + 64


def sign(secret: bytes, message_id: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret, message_id.encode() + timestamp.encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(
    secrets: Sequence[bytes], message_id: str, timestamp: str, body: bytes, signature: str
) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` was made with one of ``secrets``.

    Every secret is tried, so the time taken does not reveal which one matched.
    """
    given = signature.encode("ascii", "replace")
    if len(given) != _SIGNATURE_LENGTH or not given.startswith(_PREFIX):
        raise InvalidSignature("signature must be sha256= followed by 64 hex digits")
    message = message_id.encode() + timestamp.encode() + body
    ok = False
    for secret in secrets:
        expected = _PREFIX + hmac.new(secret, message, hashlib.sha256).hexdigest().encode()
        ok |= hmac.compare_digest(expected, given)
    if not ok:
        raise InvalidSignature("signature does not match")


def check_fresh(timestamp: str, now: datetime) -> datetime:
    """The message time, if it lies inside the replay window around ``now``."""
    try:
        sent = parse_instant(timestamp)
    except ValueError:
        raise MalformedHeaders("message timestamp is not an RFC 3339 instant") from None
    if sent < now - MAX_AGE:
        raise StaleMessage("message timestamp is more than 10 minutes old")
    if sent > now + MAX_FUTURE_SKEW:
        raise StaleMessage("message timestamp is too far in the future")
    return sent
