"""The queue contract between receiver and worker: job names, payloads, job ids, keys."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgspec

from schema.events import Delivery

FOLD_JOB = "fold_notifications"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Delivery])


def encode_batch(deliveries: Sequence[Delivery]) -> bytes:
    """A fold job's one argument: msgpack bytes, so the payload is not tied to pickle."""
    return _encoder.encode(list(deliveries))


def decode_batch(payload: bytes) -> list[Delivery]:
    return _decoder.decode(payload)


def fold_job_id(deliveries: Sequence[Delivery]) -> str:
    """Derived from the message ids: re-enqueueing the same batch while it is queued or
    running is a no-op. PostgreSQL's ledger, not this id, is what makes folding exact."""
    if len(deliveries) == 1:
        return f"fold:{deliveries[0].message_id}"
    digest = hashlib.sha256("\n".join(d.message_id for d in deliveries).encode()).hexdigest()
    return f"fold:batch:{digest[:40]}"


def failed_batches_key(queue_name: str) -> str:
    """Redis list of fold payloads that ran out of retries, kept for an operator."""
    return f"{queue_name}:failed-batches"
