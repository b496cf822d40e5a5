"""Signature and replay window, against the fixed vectors of PROTOCOL.md 1.5."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from receiver.signature import MAX_AGE, MAX_FUTURE_SKEW, check_fresh, sign, verify
from schema.errors import InvalidSignature, MalformedHeaders, StaleMessage
from schema.events import parse_instant

SECRET = b"streamfold-test-secret-0123456789"
VECTOR_A_ID = "e76c6bd4-55c9-4987-8304-da1588d8988b"
VECTOR_A_TS = "2024-05-04T12:34:56.123456789Z"
VECTOR_A_BODY = (
    b'{"subscription":{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"enabled",'
    b'"type":"stream.online","version":"1","cost":0,"condition":{"broadcaster_user_id":"1337"},'
    b'"transport":{"method":"webhook","callback":"https://example.com/eventsub/callback"},'
    b'"created_at":"2024-05-01T09:00:00.000000000Z"},"event":{"id":"9001",'
    b'"broadcaster_user_id":"1337","broadcaster_user_login":"cool_user",'
    b'"broadcaster_user_name":"Cool_User","type":"live","started_at":"2024-05-04T12:34:50Z"}}'
)
VECTOR_A_SIG = "sha256=a51e346d03d84efebd22dcf8b84c7c9ff67c542b875d4863b1265b47439ce584"
VECTOR_B_ID = "0f9b3b0a-3c1e-4c64-9d0e-6a4f8e2b7c11"
VECTOR_B_TS = "2024-05-04T12:30:00.5Z"
VECTOR_B_BODY = (
    b'{"challenge":"pogchamp-kappa-360noscope-vohiyo","subscription":{"id":'
    b'"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending",'
    b'"type":"stream.online","version":"1","cost":0,"condition":{"broadcaster_user_id":"1337"},'
    b'"transport":{"method":"webhook","callback":"https://example.com/eventsub/callback"},'
    b'"created_at":"2024-05-04T12:29:59.912345678Z"}}'
)
VECTOR_B_SIG = "sha256=0310d13d760fbc3e44909d0517af2500d3768c473eac8013f22fb0023e6eed4e"


def test_vector_bodies_have_the_documented_lengths() -> None:
    assert len(VECTOR_A_BODY) == 474
    assert len(VECTOR_B_BODY) == 377


@pytest.mark.parametrize(
    ("message_id", "timestamp", "body", "signature"),
    [
        (VECTOR_A_ID, VECTOR_A_TS, VECTOR_A_BODY, VECTOR_A_SIG),
        (VECTOR_B_ID, VECTOR_B_TS, VECTOR_B_BODY, VECTOR_B_SIG),
    ],
)
def test_documented_vectors_sign_and_verify(
    message_id: str, timestamp: str, body: bytes, signature: str
) -> None:
    assert sign(SECRET, message_id, timestamp, body) == signature
    verify([SECRET], message_id, timestamp, body, signature)


def test_reserialised_json_does_not_verify() -> None:
    reserialised = json.dumps(json.loads(VECTOR_A_BODY)).encode()
    assert sign(SECRET, VECTOR_A_ID, VECTOR_A_TS, reserialised) == (
        "sha256=7dc67c886aa79d9db12a31e0635837619a888679c32fc64150d740cb0b909a36"
    )
    with pytest.raises(InvalidSignature):
        verify([SECRET], VECTOR_A_ID, VECTOR_A_TS, reserialised, VECTOR_A_SIG)


def test_previous_secret_is_accepted_during_rotation() -> None:
    verify(
        [b"a-brand-new-secret-value", SECRET], VECTOR_A_ID, VECTOR_A_TS, VECTOR_A_BODY, VECTOR_A_SIG
    )


@pytest.mark.parametrize(
    "forged",
    [
        VECTOR_A_SIG.upper().replace("SHA256=", "sha256="),  # upper-case hex
        VECTOR_A_SIG.replace("sha256=", "sha1="),
        VECTOR_A_SIG.removeprefix("sha256="),
        VECTOR_A_SIG[:-1],
        VECTOR_A_SIG + "0",
        "",
        VECTOR_A_SIG[:-1] + ("0" if VECTOR_A_SIG[-1] != "0" else "1"),
    ],
)
def test_forged_signatures_are_refused(forged: str) -> None:
    with pytest.raises(InvalidSignature):
        verify([SECRET], VECTOR_A_ID, VECTOR_A_TS, VECTOR_A_BODY, forged)


def test_wrong_secret_flipped_body_and_swapped_headers_are_refused() -> None:
    flipped = bytearray(VECTOR_A_BODY)
    flipped[100] ^= 1
    cases = [
        ([b"not-the-right-secret"], VECTOR_A_ID, VECTOR_A_TS, VECTOR_A_BODY),
        ([SECRET], VECTOR_A_ID, VECTOR_A_TS, bytes(flipped)),
        ([SECRET], VECTOR_B_ID, VECTOR_A_TS, VECTOR_A_BODY),
        ([SECRET], VECTOR_A_ID, VECTOR_B_TS, VECTOR_A_BODY),
    ]
    for secrets, message_id, timestamp, body in cases:
        with pytest.raises(InvalidSignature):
            verify(secrets, message_id, timestamp, body, VECTOR_A_SIG)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2024-05-04T12:34:56Z", datetime(2024, 5, 4, 12, 34, 56, tzinfo=UTC)),
        ("2024-05-04T12:34:56.5Z", datetime(2024, 5, 4, 12, 34, 56, 500000, tzinfo=UTC)),
        ("2024-05-04T12:34:56.123Z", datetime(2024, 5, 4, 12, 34, 56, 123000, tzinfo=UTC)),
        ("2021-02-19T23:47:00.8091512Z", datetime(2021, 2, 19, 23, 47, 0, 809151, tzinfo=UTC)),
        ("2024-05-04T12:34:56.123456789Z", datetime(2024, 5, 4, 12, 34, 56, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_with_0_to_9_fraction_digits_parse(header: str, expected: datetime) -> None:
    assert parse_instant(header) == expected
    assert check_fresh(header, expected) == expected


def test_replay_window_boundaries() -> None:
    now = datetime(2024, 5, 4, 12, 0, 0, tzinfo=UTC)
    second = timedelta(seconds=1)

    def ts(t: datetime) -> str:
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    check_fresh(ts(now - MAX_AGE + second), now)
    check_fresh(ts(now - MAX_AGE), now)
    with pytest.raises(StaleMessage):
        check_fresh(ts(now - MAX_AGE - second), now)
    check_fresh(ts(now + MAX_FUTURE_SKEW - second), now)
    with pytest.raises(StaleMessage):
        check_fresh(ts(now + MAX_FUTURE_SKEW + second), now)


@pytest.mark.parametrize("bad", ["yesterday", "", "2024-05-04 12:00", "2024-05-04T12:00:00"])
def test_unparseable_or_zoneless_timestamps_are_malformed(bad: str) -> None:
    with pytest.raises(MalformedHeaders):
        check_fresh(bad, datetime.now(UTC))
