"""Writes a fold's plan to PostgreSQL in the caller's transaction; decides nothing.

The ledger insert and every counter change happen in one transaction, so a delivery is
folded at most once however often it is redelivered or its job re-runs, and a job that
finishes has its effects committed. Chat is folded set-based, one statement per batch:
per-message round trips would cap a worker near 2,000 messages/s (LIMITS.md). Sessions
are written by ``sessions.py``, under the channel's lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from hashlib import sha256

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from aggregator.fold import FoldPlan
from aggregator.sessions import fold_stream_events
from schema.events import Delivery, Unfoldable, parse_instant
from schema.partitions import HORIZON, utc_day
from schema.twitch.channels import mark_disconnected, revoke_api_tokens
from schema.twitch.tokens import purge_tokens

# Every id goes into the partition of its timestamp's day, and an id within the dedupe
# horizon of midnight into the next day's as well (``rows_of``, ``schema/partitions.py``):
# an id is new only if all its rows went in. Answers with the ids folded before (usually
# none) rather than the fresh ones: a batch's worth of returned rows cost the worker more
# CPU than the insert itself.
_LEDGER = text("""
    WITH input AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:days AS date[]),
                             CAST(:types AS text[])) AS t(id, day, type)
    ), fresh AS (
        INSERT INTO folded_messages (message_id, day, subscription_type)
        SELECT id, day, type FROM input ORDER BY 1, 2
        ON CONFLICT (message_id, day) DO NOTHING
        RETURNING message_id, day
    )
    SELECT DISTINCT id FROM input WHERE (id, day) NOT IN (SELECT message_id, day FROM fresh)
""")

# One statement per batch: new chat messages (deduplicated on Twitch's chat message id)
# feed the per-chatter hours, whose newly inserted rows count as new unique chatters, and
# the channel-hour totals; each target row is touched once (GROUP BY) in key order.
# ``{new}`` is the new messages: in a batch without copies, simply the inserted rows (a
# message with one row is new if that row went in); else ``_NEW_WITH_COPIES``.
_FOLD_CHAT = """
    WITH input AS (
        SELECT * FROM unnest(CAST(:message_ids AS text[]), CAST(:days AS date[]),
                             CAST(:broadcaster_ids AS text[]), CAST(:chatter_ids AS text[]),
                             CAST(:sent_ats AS timestamptz[]), CAST(:copies AS boolean[]))
            AS t(message_id, day, broadcaster_id, chatter_id, sent_at, is_copy)
    ), inserted AS (
        INSERT INTO chat_messages (message_id, day, broadcaster_id, chatter_id, sent_at, is_copy)
        SELECT * FROM input ORDER BY message_id, day
        ON CONFLICT (message_id, day) DO NOTHING
        RETURNING message_id, day, broadcaster_id, chatter_id, sent_at, is_copy
    ), {new}, per_chatter AS (
        SELECT broadcaster_id, date_trunc('hour', sent_at, 'UTC') AS hour, chatter_id,
               count(*) AS n
        FROM new GROUP BY 1, 2, 3
    ), chatters AS (
        INSERT INTO chatter_hours (broadcaster_id, hour, chatter_id, messages)
        SELECT broadcaster_id, hour, chatter_id, n FROM per_chatter ORDER BY 1, 2, 3
        ON CONFLICT (broadcaster_id, hour, chatter_id)
            DO UPDATE SET messages = chatter_hours.messages + excluded.messages
        RETURNING broadcaster_id, hour, (xmax = 0) AS is_new
    ), totals AS (
        SELECT p.broadcaster_id, p.hour, p.n, coalesce(c.new_chatters, 0) AS new_chatters
        FROM (SELECT broadcaster_id, hour, sum(n) AS n FROM per_chatter GROUP BY 1, 2) AS p
        LEFT JOIN (SELECT broadcaster_id, hour, count(*) FILTER (WHERE is_new) AS new_chatters
                   FROM chatters GROUP BY 1, 2) AS c USING (broadcaster_id, hour)
    ), hours AS (
        INSERT INTO channel_hours (broadcaster_id, hour, chat_messages, unique_chatters)
        SELECT broadcaster_id, hour, n, new_chatters FROM totals ORDER BY 1, 2
        ON CONFLICT (broadcaster_id, hour) DO UPDATE
            SET chat_messages = channel_hours.chat_messages + excluded.chat_messages,
                unique_chatters = channel_hours.unique_chatters + excluded.unique_chatters
    )
    {result}
"""
_NEW_SIMPLE = "new AS (SELECT broadcaster_id, chatter_id, sent_at FROM inserted)"
# A message with two rows is new only if both went in. A primary row it inserted anyway
# (a redelivery stamped a little earlier, across midnight) comes back as a stray, for
# ``_UNPRIMARY``.
_NEW_WITH_COPIES = """outcome AS (
        SELECT c.message_id, bool_and(i.message_id IS NOT NULL) AS is_new
        FROM input c LEFT JOIN inserted i USING (message_id, day) GROUP BY 1
    ), new AS (
        SELECT i.broadcaster_id, i.chatter_id, i.sent_at
        FROM inserted i JOIN outcome o USING (message_id) WHERE o.is_new AND NOT i.is_copy
    )"""
_STRAYS = """SELECT i.message_id, i.day FROM inserted i JOIN outcome o USING (message_id)
    WHERE NOT o.is_new AND NOT i.is_copy"""
_FOLD_CHAT_SIMPLE = text(_FOLD_CHAT.format(new=_NEW_SIMPLE, result="SELECT 1 WHERE false"))
_FOLD_CHAT_COPIES = text(_FOLD_CHAT.format(new=_NEW_WITH_COPIES, result=_STRAYS))

_UNPRIMARY = text("""
    UPDATE chat_messages SET is_copy = true
    WHERE (message_id, day) IN (SELECT * FROM unnest(CAST(:ids AS text[]),
                                                     CAST(:days AS date[])))
""")

# Chat carries no reason to touch a known channel's row: DO NOTHING takes no row lock,
# where DO UPDATE ... WHERE false still locks (and dirties) every conflicting row, which
# serialised workers folding the same channels.
_ADD_CHANNELS = text("""
    INSERT INTO channels (broadcaster_id)
    SELECT id FROM unnest(CAST(:ids AS text[])) AS t(id)
    WHERE NOT EXISTS (SELECT 1 FROM channels c WHERE c.broadcaster_id = t.id)
    ORDER BY 1
    ON CONFLICT (broadcaster_id) DO NOTHING
""")

_ENSURE_CHANNELS = text("""
    INSERT INTO channels (broadcaster_id, login, display_name)
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:logins AS text[]), CAST(:names AS text[]))
    ORDER BY 1
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = coalesce(excluded.login, channels.login),
            display_name = coalesce(excluded.display_name, channels.display_name)
        WHERE excluded.login IS NOT NULL
""")

_DEAD_LETTER = text("""
    INSERT INTO dead_letters
        (message_id, subscription_type, reason, body_sha256, body_bytes, received_at)
    VALUES (:message_id, :subscription_type, :reason, :body_sha256, :body_bytes, :received_at)
""")


def text_array(values: Iterable[str]) -> str:
    """A PostgreSQL array literal of ``values``, bound as one string and cast to an
    array in the statement. psycopg adapts a list element by element in Python, which
    cost the fold more CPU per message than decoding the message; this is two joins."""
    items = list(values)
    joined = "".join(items)
    if '"' in joined or "\\" in joined:
        items = [v.replace("\\", "\\\\").replace('"', '\\"') for v in items]
    return '{"' + '","'.join(items) + '"}' if items else "{}"


def _instant(timestamp: str) -> datetime:
    try:
        return parse_instant(timestamp)
    except ValueError:  # the receiver checked it; a hand-made job may not have
        return datetime.now(UTC)


def rows_of(at: datetime, horizon: timedelta) -> tuple[date, ...]:
    """The days a message stamped ``at`` is written into: its own, and the next one when
    ``at`` lies within ``horizon`` of it (``schema/partitions.py``)."""
    day, later = utc_day(at), utc_day(at + horizon)
    return (day,) if later == day else (day, later)


async def claim_ids(
    session: AsyncSession, deliveries: Sequence[Delivery], *, horizon: timedelta = HORIZON
) -> set[str]:
    """Ledger the message ids; the ids not folded before come back."""
    if not deliveries:
        return set()
    ids: list[str] = []
    days: list[str] = []
    types: list[str] = []
    for d in deliveries:
        for day in rows_of(_instant(d.timestamp), horizon):
            ids.append(d.message_id)
            days.append(day.isoformat())
            types.append(d.subscription_type)
    result = await session.execute(
        _LEDGER, {"ids": text_array(ids), "days": text_array(days), "types": text_array(types)}
    )
    return {d.message_id for d in deliveries}.difference(result.scalars())


async def write_plan(
    session: AsyncSession,
    folded: FoldPlan,
    received: dict[str, str],
    *,
    horizon: timedelta = HORIZON,
) -> None:
    """Everything ``folded`` changes; ``received`` holds the deliveries' timestamps by
    message id, for the dead letters."""
    await _fold_chat(session, folded, horizon)
    await _fold_streams(session, folded)
    await _end_revoked_access(session, folded)
    await record_dead_letters(session, folded.dead, received)


async def _fold_chat(session: AsyncSession, folded: FoldPlan, horizon: timedelta) -> None:
    if not folded.chat:
        return
    broadcasters = sorted({row.broadcaster_id for row in folded.chat})
    await session.execute(_ADD_CHANNELS, {"ids": text_array(broadcasters)})
    columns: dict[str, list[str]] = {
        k: [] for k in ("message_ids", "days", "broadcaster_ids", "chatter_ids", "sent_ats")
    }
    copies: list[str] = []
    for r in folded.chat:
        sent_at = r.sent_at.isoformat()
        for n, day in enumerate(rows_of(r.sent_at, horizon)):
            columns["message_ids"].append(r.chat_message_id)
            columns["days"].append(day.isoformat())
            columns["broadcaster_ids"].append(r.broadcaster_id)
            columns["chatter_ids"].append(r.chatter_id)
            columns["sent_ats"].append(sent_at)
            copies.append("t" if n else "f")
    arrays = {k: text_array(v) for k, v in columns.items()}
    arrays["copies"] = text_array(copies)
    if "t" not in copies:
        await session.execute(_FOLD_CHAT_SIMPLE, arrays)
        return
    strays = (await session.execute(_FOLD_CHAT_COPIES, arrays)).all()
    if strays:
        await session.execute(
            _UNPRIMARY, {"ids": [r.message_id for r in strays], "days": [r.day for r in strays]}
        )


async def _fold_streams(session: AsyncSession, folded: FoldPlan) -> None:
    if not folded.onlines and not folded.offlines:
        return
    for online in sorted(folded.onlines, key=lambda o: o.broadcaster_id):
        await session.execute(
            _ENSURE_CHANNELS,
            {
                "ids": [online.broadcaster_id],
                "logins": [online.login],
                "names": [online.display_name],
            },
        )
    await fold_stream_events(session, folded.onlines, folded.offlines)


async def _end_revoked_access(session: AsyncSession, folded: FoldPlan) -> None:
    """A user who revoked our authorization: their channel stops, their Twitch tokens go
    and their API tokens stop working now, before the disconnect job runs."""
    for revoke in folded.revokes:
        await mark_disconnected(session, revoke.user_id, at=revoke.event_time)
        await purge_tokens(session, revoke.user_id)
        await revoke_api_tokens(session, revoke.user_id)


async def record_dead_letters(
    session: AsyncSession, dead: Sequence[Unfoldable], received: dict[str, str]
) -> None:
    for letter in dead:
        timestamp = received.get(letter.message_id)
        try:
            received_at = parse_instant(timestamp) if timestamp else None
        except ValueError:
            received_at = None
        await session.execute(
            _DEAD_LETTER,
            {
                "message_id": letter.message_id[:128],
                "subscription_type": letter.subscription_type[:100],
                "reason": letter.reason[:2000],
                "body_sha256": sha256(letter.body).hexdigest(),
                "body_bytes": len(letter.body),
                "received_at": received_at,
            },
        )
