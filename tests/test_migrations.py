"""Migrations and models agree, and the migrations run both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from alembic import command
from schema.partitions import is_partition
from schema.tables import Base
from streamfold.migrate import alembic_config
from tests.conftest import _libpq


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    return not (type_ == "table" and name is not None and is_partition(name))


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "compare_type": True,
                    "compare_server_default": True,
                    "include_name": _include_name,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    with psycopg.connect(_libpq(database_url)) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert [t for (t,) in tables] == ["alembic_version"]
    command.upgrade(config, "head")
    engine = create_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_existing_tokens_get_the_role_their_scopes_show(database_url: str) -> None:
    """Before per-role tokens, a former bot's streamer login shared the bot's row: only
    a row that still carries the bot's scopes becomes the bot's."""
    config = alembic_config(database_url)
    command.downgrade(config, "0003")
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            """INSERT INTO twitch_users (id, login, display_name, is_bot) VALUES
               ('1', 'bot', 'Bot', true), ('2', 'former', 'Former', true),
               ('3', 'streamer', 'Streamer', false)"""
        )
        conn.execute(
            """INSERT INTO oauth_tokens (user_id, access_token, refresh_token, scopes, expires_at)
               VALUES ('1', 'a', 'r', '{user:read:chat,user:bot}', now()),
                      ('2', 'a', 'r', '{channel:bot}', now()),
                      ('3', 'a', 'r', '{channel:bot}', now())"""
        )
    command.upgrade(config, "head")
    with psycopg.connect(_libpq(database_url)) as conn:
        roles = conn.execute("SELECT user_id, role FROM oauth_tokens ORDER BY 1").fetchall()
    assert roles == [("1", "bot"), ("2", "streamer"), ("3", "streamer")]


def test_partitioning_a_populated_database_keeps_every_row(database_url: str) -> None:
    """300,000 chat messages over the last 500 days and their ledger rows, migrated into
    day partitions: the same rows after, each in its day's partition (the default
    partition only holds days older than the migration makes partitions for)."""
    config = alembic_config(database_url)
    command.downgrade(config, "0008")
    rows = 300_000
    chat = """SELECT count(*), sum(hashtext(message_id || broadcaster_id || chatter_id
                                           || extract(epoch FROM sent_at)::text)::bigint)
              FROM chat_messages"""
    ledger = """SELECT count(DISTINCT message_id),
                       sum(DISTINCT hashtext(message_id || subscription_type)::bigint)
                FROM folded_messages"""
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            """INSERT INTO chat_messages (message_id, broadcaster_id, chatter_id, sent_at)
               SELECT 'm' || i, 'b' || (i %% 100), 'u' || (i %% 5000),
                      now() - (i * interval '1 day' * 500 / %s)
               FROM generate_series(1, %s) AS i""",
            (rows, rows),
        )
        conn.execute(
            """INSERT INTO folded_messages (message_id, subscription_type, folded_at)
               SELECT 'e' || i, 'channel.chat.message', now() - (i * interval '1 day' * 500 / %s)
               FROM generate_series(1, %s) AS i""",
            (rows, rows),
        )
        before = (conn.execute(chat).fetchone(), conn.execute(ledger).fetchone())
    command.upgrade(config, "head")
    with psycopg.connect(_libpq(database_url)) as conn:
        after = (
            conn.execute(chat + " WHERE NOT is_copy").fetchone(),
            conn.execute(ledger).fetchone(),
        )
        misplaced = conn.execute(
            """SELECT count(*) FROM chat_messages
               WHERE tableoid::regclass::text <> 'chat_messages_p' || to_char(day, 'YYYYMMDD')
                 AND day >= current_date - 400"""
        ).fetchone()
        in_default = conn.execute("SELECT count(*) FROM chat_messages_default").fetchone()
        copies = conn.execute("SELECT count(*) FROM chat_messages WHERE is_copy").fetchone()
    assert before[0] is not None
    assert before[0][0] == rows
    assert after == before
    assert misplaced == (0,)
    assert in_default is not None  # the 100 oldest days and their copies
    assert in_default[0] == pytest.approx(rows * 100 / 500 * 25 / 24, rel=0.05)
    assert copies is not None  # those of the hour before each midnight
    assert copies[0] == pytest.approx(rows / 24, rel=0.05)


def test_search_rows_are_filled_from_existing_profiles(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "0009")
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            """INSERT INTO channel_profiles
                   (broadcaster_id, login, display_name, live_at, recent_viewer_seconds)
               VALUES ('1', 'one', 'One', now(), 7200), ('2', 'two', 'Two', NULL, 0)"""
        )
    command.upgrade(config, "head")
    with psycopg.connect(_libpq(database_url)) as conn:
        rows = conn.execute("SELECT * FROM channel_search ORDER BY 1").fetchall()
        assert rows == [("1", "one", "One", True, 7200), ("2", "two", "Two", False, 0)]
        conn.execute("UPDATE channel_profiles SET live_at = NULL WHERE broadcaster_id = '1'")
        live = conn.execute("SELECT live FROM channel_search WHERE broadcaster_id = '1'")
        assert live.fetchall() == [(False,)]


def test_viewer_samples_of_a_populated_database_are_partitioned_and_rolled_up(
    database_url: str,
) -> None:
    """300,000 samples of 100 channels over the last 500 days, migrated into month
    partitions: the same rows after, each in its month's partition (older than 400 days
    in the default one), and the rollup holds exactly what grouping the samples gives."""
    config = alembic_config(database_url)
    command.downgrade(config, "0012")
    rows = 300_000
    samples = """SELECT count(*), sum(hashtext(broadcaster_id || stream_id || viewer_count
                                              || extract(epoch FROM sampled_at)::text)::bigint)
                 FROM viewer_samples"""
    grouped = """SELECT broadcaster_id, date_trunc('hour', sampled_at, 'UTC') AS hour, stream_id,
                        count(*)::int, sum(viewer_count)::bigint, max(viewer_count),
                        sum(viewer_count::bigint * interval_seconds)::bigint,
                        (array_agg(title ORDER BY sampled_at DESC))[1]
                 FROM viewer_samples GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    # The first month partition the migration makes: that of the day 400 days back.
    month = (datetime.now(UTC).date() - timedelta(days=400)).replace(day=1)
    first = f"'{month.isoformat()}T00:00:00+00:00'"
    rollup = """SELECT broadcaster_id, hour, stream_id, samples, viewer_sum, peak_viewers,
                       viewer_seconds, title
                FROM viewer_hours ORDER BY 1, 2, 3"""
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            """INSERT INTO viewer_samples (broadcaster_id, sampled_at, stream_id, viewer_count,
                                           interval_seconds, title)
               SELECT 'b' || (i %% 100), date_trunc('second', now())
                          - (i / 100) * interval '1 day' * 500 / (%s / 100),
                      's' || (i %% 100) || '-' || (i / 6000), (i::bigint * 7919) %% 50000, 300,
                      't' || (i %% 3)
               FROM generate_series(1, %s) AS i""",
            (rows, rows),
        )
        before = conn.execute(samples).fetchone()
        expected = conn.execute(grouped).fetchall()
        older = conn.execute(f"SELECT count(*) FROM viewer_samples WHERE sampled_at < {first}")  # noqa: S608
        old = older.fetchone()
    command.upgrade(config, "head")
    with psycopg.connect(_libpq(database_url)) as conn:
        after = conn.execute(samples).fetchone()
        misplaced = conn.execute(
            """SELECT count(*) FROM viewer_samples
               WHERE tableoid::regclass::text
                     <> 'viewer_samples_p' || to_char(sampled_at AT TIME ZONE 'UTC', 'YYYYMM')
                 AND sampled_at >= """  # noqa: S608 - a date of this test's
            + first
        ).fetchone()
        in_default = conn.execute("SELECT count(*) FROM viewer_samples_default").fetchone()
        rolled = conn.execute(rollup).fetchall()
    assert before is not None
    assert before[0] == rows
    assert after == before
    assert misplaced == (0,)
    assert old is not None
    assert old[0] > 0
    assert in_default == old
    assert rolled == expected
