"""Fuzzing the callback: random headers, bodies, encodings and sizes, with and without a
valid signature. Only 2xx/4xx come back, and nothing unsigned or malformed is queued."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import httpx
import pytest
from arq.connections import ArqRedis
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schema.settings import Settings
from streamfold.eventsub_sender import chat_message_body, rfc3339
from tests.conftest import SECRET
from tests.faults.report import report
from tests.receiver.test_signed_hostile_bodies import HOSTILE

HEADER_NAMES = [
    "Twitch-Eventsub-Message-Id",
    "Twitch-Eventsub-Message-Timestamp",
    "Twitch-Eventsub-Message-Signature",
    "Twitch-Eventsub-Message-Type",
    "Twitch-Eventsub-Subscription-Type",
    "Content-Type",
    "Content-Encoding",
]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=200).map(
    str.strip
)
bodies = st.one_of(
    st.binary(max_size=4096),
    st.text(max_size=2048).map(lambda t: t.encode("utf-8")),
    st.text(max_size=512).map(lambda t: t.encode("utf-16")),
    st.builds(lambda n: b"{" * n, st.integers(0, 70_000)),
    st.just(b'{"subscription": {"type": "channel.chat.message"}, "event": {}}'),
    st.integers(0, 10**9).map(lambda i: chat_message_body("5", "u1", f"fuzz-chat-{i}")),
)
tally = {"sent": 0, "2xx": 0, "4xx": 0, "signed": 0}


def sign(message_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(SECRET.encode(), message_id.encode() + timestamp.encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


@pytest.mark.slow
@hsettings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_text, max_size=7),
    body=bodies,
    valid_signature=st.booleans(),
    message_type=st.sampled_from(
        ["notification"] * 4 + ["revocation", "webhook_callback_verification", "x"]
    ),
)
@example(headers={}, body=HOSTILE[0][1], valid_signature=True, message_type=HOSTILE[0][0])
@example(headers={}, body=HOSTILE[1][1], valid_signature=True, message_type=HOSTILE[1][0])
@example(headers={}, body=HOSTILE[2][1], valid_signature=True, message_type=HOSTILE[2][0])
@example(headers={}, body=HOSTILE[3][1], valid_signature=True, message_type=HOSTILE[3][0])
@example(headers={}, body=HOSTILE[4][1], valid_signature=True, message_type=HOSTILE[4][0])
@example(headers={}, body=HOSTILE[5][1], valid_signature=True, message_type=HOSTILE[5][0])
@example(headers={}, body=HOSTILE[6][1], valid_signature=True, message_type=HOSTILE[6][0])
@example(headers={}, body=HOSTILE[7][1], valid_signature=True, message_type=HOSTILE[7][0])
@example(headers={}, body=HOSTILE[8][1], valid_signature=True, message_type=HOSTILE[8][0])
async def test_fuzzed_callback_answers_only_2xx_or_4xx(
    receiver: httpx.AsyncClient,
    redis: ArqRedis,
    settings: Settings,
    headers: dict[str, str],
    body: bytes,
    valid_signature: bool,
    message_type: str,
) -> None:
    sent = {k: v for k, v in headers.items()}
    if valid_signature:
        message_id = f"fuzz-{hashlib.sha256(body).hexdigest()[:16]}"
        timestamp = rfc3339(datetime.now(UTC))
        sent.update(
            {
                "Twitch-Eventsub-Message-Id": message_id,
                "Twitch-Eventsub-Message-Timestamp": timestamp,
                "Twitch-Eventsub-Message-Type": message_type,
                "Twitch-Eventsub-Message-Signature": sign(message_id, timestamp, body),
            }
        )
        sent.setdefault("Twitch-Eventsub-Subscription-Type", "channel.chat.message")
    before = await redis.zcard(settings.queue_name)
    answer = await receiver.post("/eventsub/callback", content=body, headers=sent)
    tally["sent"] += 1
    tally["signed"] += valid_signature
    assert 200 <= answer.status_code < 500, (answer.status_code, answer.text)
    if answer.status_code >= 400:
        tally["4xx"] += 1
        assert answer.json()["error"]
        # Refused: nothing of it queued.
        assert await redis.zcard(settings.queue_name) == before
    else:
        tally["2xx"] += 1
        assert valid_signature  # nothing forged is ever accepted


@pytest.mark.slow
def test_fuzz_figures() -> None:
    """Runs after the fuzz (same module, in order): the figures of the run."""
    report(
        "callback fuzz",
        tally["sent"],
        tally["2xx"],
        "not folded here (answers and the queue are checked)",
        refused=tally["4xx"],
        signed=tally["signed"],
    )
    assert tally["sent"] > 0
