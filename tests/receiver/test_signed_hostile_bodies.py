"""Signed but hostile webhooks: whatever a correctly signed body holds, the callback answers
with a 2xx or a 4xx JSON error, never a 5xx. Only Twitch could sign these; they are
refused anyway, so a bug on Twitch's side (or a leaked secret) is not a database error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import hypothesis
from hypothesis import HealthCheck, example, given
from hypothesis import strategies as st

from schema.settings import Settings
from streamfold.eventsub_sender import challenge_body, chat_message_body, revocation_body, signed
from tests.conftest import SECRET, Clock

CHALLENGE = "webhook_callback_verification"
TYPES = ("notification", CHALLENGE, "revocation")
CHAT = "channel.chat.message"
DEEP = "[" * 1000 + "]" * 1000


def _with(body: bytes, path: tuple[str, ...], value: Any) -> bytes:
    """``body`` with the field at ``path`` set to ``value`` (raw JSON when a str of JSON)."""
    decoded = json.loads(body)
    target = decoded
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(decoded).encode()


def _nested(body: bytes) -> bytes:
    return body[:-1] + b', "extra": ' + DEEP.encode() + b"}"


CONDITION = {"broadcaster_user_id": "1337", "user_id": "9"}
VALID = {
    "notification": chat_message_body("1337", "42", "chat-1"),
    CHALLENGE: challenge_body("abc", CHAT, CONDITION),
    "revocation": revocation_body(CHAT, CONDITION, "authorization_revoked"),
}
FIELDS = (
    ("subscription", "id"),
    ("subscription", "type"),
    ("subscription", "status"),
    ("subscription", "version"),
    ("subscription", "condition"),
    ("subscription", "condition", "broadcaster_user_id"),
    ("subscription", "condition", "user_id"),
    ("challenge",),
    ("event", "broadcaster_user_id"),
    ("event", "chatter_user_id"),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
hostile_text = st.sampled_from(["1" * 65, "a\x00b", "\x00", "", "é" * 40, "x" * 5000])


# Signed bodies that once reached a 500 (RecursionError, database errors); the fault
# fuzz (tests/faults/test_callback_fuzz.py) replays them too.
HOSTILE: list[tuple[str, bytes]] = [
    ("revocation", _with(VALID["revocation"], FIELDS[5], "1" * 65)),
    ("revocation", _with(VALID["revocation"], FIELDS[5], "a\x00b")),
    ("revocation", _with(VALID["revocation"], ("subscription", "id"), "a\x00")),
    (CHALLENGE, _with(VALID[CHALLENGE], FIELDS[5], "1" * 65)),
    (CHALLENGE, _with(VALID[CHALLENGE], FIELDS[6], "\x00")),
    (CHALLENGE, _nested(VALID[CHALLENGE])),
    ("revocation", _nested(VALID["revocation"])),
    ("notification", _nested(VALID["notification"])),
    (CHALLENGE, DEEP.encode()),
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    message_type = draw(st.sampled_from(TYPES))
    path = draw(st.sampled_from(FIELDS))
    value = draw(hostile_text | json_values)
    try:
        return message_type, _with(VALID[message_type], path, value)
    except (KeyError, TypeError):  # the path goes through a value just replaced
        return message_type, VALID[message_type]


messages = mutated() | st.tuples(
    st.sampled_from(TYPES),
    st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()),
)


def _deliver(base_url: str, clock: Clock, message_type: str, body: bytes) -> httpx.Response:
    message = signed(SECRET.encode(), body, CHAT, sent_at=clock.now, message_type=message_type)
    return httpx.post(
        f"{base_url}/eventsub/callback", content=message.body, headers=message.headers()
    )


def _fuzz(base_url: str, clock: Clock) -> None:
    @hypothesis.settings(
        max_examples=150,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=messages)
    @example(case=HOSTILE[0])
    @example(case=HOSTILE[1])
    @example(case=HOSTILE[2])
    @example(case=HOSTILE[3])
    @example(case=HOSTILE[4])
    @example(case=HOSTILE[5])
    @example(case=HOSTILE[6])
    @example(case=HOSTILE[7])
    @example(case=HOSTILE[8])
    def check(case: tuple[str, bytes]) -> None:
        message_type, body = case
        response = _deliver(base_url, clock, message_type, body)
        assert response.status_code < 500, (case, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"error", "detail"}, response.text

    check()


async def test_signed_hostile_bodies_get_2xx_or_4xx_json_never_5xx(
    receiver: httpx.AsyncClient, clock: Clock, settings: Settings
) -> None:
    await asyncio.to_thread(_fuzz, str(receiver.base_url).rstrip("/"), clock)
