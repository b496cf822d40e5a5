"""chat_messages and folded_messages partitioned by day, copies near midnight; retention marks

Revision ID: 0010
Revises: 0011
Create Date: 2026-12-03 12:00:00.000000

The tables are renamed, recreated partitioned, and their rows copied over in one
statement each (the migration refuses to finish if a row is missing). Old rows get a
partition per day they fall on (up to ``_DAYS_BACK`` back, older ones go into the
default partition, where retention deletes them); the ledger's rows, which carry no
message timestamp, are placed by ``folded_at``. A row within the dedupe horizon of
midnight gets its copy in the next day, as the fold writes them (``schema/partitions.py``).
"""

# ruff: noqa: S608 - table names and intervals are this file's constants

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from alembic import op

revision: str = "0010"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_HORIZON = "interval '3600 seconds'"  # DEDUPE_HORIZON_SECONDS' default
_DAYS_AHEAD = 7
_DAYS_BACK = 400
_DAY = timedelta(days=1)


def _partitions(table: str, first: date, last: date) -> None:
    op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    day = first
    while day <= last:
        op.execute(
            f"CREATE TABLE {table}_p{day:%Y%m%d} PARTITION OF {table}"
            f" FOR VALUES FROM ('{day}') TO ('{day + _DAY}')"
        )
        day += _DAY


def _first_day(column: str, table: str, today: date) -> date:
    """From the oldest row's day (a week back at least), at most ``_DAYS_BACK`` back."""
    oldest = op.get_bind().scalar(sa.text(f"SELECT min({column}) FROM {table}"))
    first = today - timedelta(days=_DAYS_AHEAD)
    if oldest is not None:
        first = min(oldest.astimezone(UTC).date(), first)
    return max(first, today - timedelta(days=_DAYS_BACK))


def _check(table: str, old: str, where: str) -> None:
    bind = op.get_bind()
    before = bind.scalar(sa.text(f"SELECT count(*) FROM {old}"))
    after = bind.scalar(sa.text(f"SELECT count(*) FROM {table} WHERE {where}"))
    if before != after:
        raise RuntimeError(f"{table}: {before} rows before, {after} after; nothing changed")


def upgrade() -> None:
    today = datetime.now(UTC).date()
    last = today + timedelta(days=_DAYS_AHEAD)
    op.execute("ALTER TABLE chat_messages RENAME TO chat_messages_unpartitioned")
    op.execute("ALTER INDEX pk_chat_messages RENAME TO pk_chat_messages_unpartitioned")
    op.execute(
        "ALTER INDEX ix_chat_messages_broadcaster_id_sent_at"
        " RENAME TO ix_chat_messages_unpartitioned_broadcaster_id_sent_at"
    )
    op.create_table(
        "chat_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("chatter_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_copy", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("message_id", "day", name=op.f("pk_chat_messages")),
        postgresql_partition_by="RANGE (day)",
    )
    op.create_index(
        op.f("ix_chat_messages_broadcaster_id_sent_at"),
        "chat_messages",
        ["broadcaster_id", "sent_at"],
        unique=False,
        postgresql_where=sa.text("NOT is_copy"),
    )
    _partitions("chat_messages", _first_day("sent_at", "chat_messages_unpartitioned", today), last)
    op.execute(f"""
        INSERT INTO chat_messages (message_id, day, broadcaster_id, chatter_id, sent_at, is_copy)
        SELECT message_id, (sent_at AT TIME ZONE 'UTC')::date, broadcaster_id, chatter_id,
               sent_at, false
        FROM chat_messages_unpartitioned
        UNION ALL
        SELECT message_id, ((sent_at + {_HORIZON}) AT TIME ZONE 'UTC')::date, broadcaster_id,
               chatter_id, sent_at, true
        FROM chat_messages_unpartitioned
        WHERE ((sent_at + {_HORIZON}) AT TIME ZONE 'UTC')::date
              <> (sent_at AT TIME ZONE 'UTC')::date
    """)
    _check("chat_messages", "chat_messages_unpartitioned", "NOT is_copy")
    op.drop_table("chat_messages_unpartitioned")

    op.execute("ALTER TABLE folded_messages RENAME TO folded_messages_unpartitioned")
    op.execute("ALTER INDEX pk_folded_messages RENAME TO pk_folded_messages_unpartitioned")
    op.create_table(
        "folded_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("subscription_type", sa.String(length=100), nullable=False),
        sa.Column(
            "folded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("message_id", "day", name=op.f("pk_folded_messages")),
        postgresql_partition_by="RANGE (day)",
    )
    _partitions(
        "folded_messages", _first_day("folded_at", "folded_messages_unpartitioned", today), last
    )
    op.execute(f"""
        INSERT INTO folded_messages (message_id, day, subscription_type, folded_at)
        SELECT message_id, d.day, subscription_type, folded_at
        FROM folded_messages_unpartitioned,
             LATERAL (SELECT (folded_at AT TIME ZONE 'UTC')::date
                      UNION SELECT ((folded_at + {_HORIZON}) AT TIME ZONE 'UTC')::date) AS d(day)
    """)
    _check(
        "(SELECT DISTINCT message_id FROM folded_messages) AS f",
        "folded_messages_unpartitioned",
        "true",
    )
    op.drop_table("folded_messages_unpartitioned")

    op.create_table(
        "retention_marks",
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("removed_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("table_name", name=op.f("pk_retention_marks")),
    )


def downgrade() -> None:
    op.drop_table("retention_marks")
    op.execute("ALTER TABLE chat_messages RENAME TO chat_messages_partitioned")
    op.execute("ALTER INDEX pk_chat_messages RENAME TO pk_chat_messages_partitioned")
    op.execute(
        "ALTER INDEX ix_chat_messages_broadcaster_id_sent_at"
        " RENAME TO ix_chat_messages_partitioned_broadcaster_id_sent_at"
    )
    op.create_table(
        "chat_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("chatter_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_chat_messages")),
    )
    op.execute("""
        INSERT INTO chat_messages (message_id, broadcaster_id, chatter_id, sent_at)
        SELECT message_id, broadcaster_id, chatter_id, sent_at FROM chat_messages_partitioned
        WHERE NOT is_copy ON CONFLICT DO NOTHING
    """)
    op.create_index(
        op.f("ix_chat_messages_broadcaster_id_sent_at"),
        "chat_messages",
        ["broadcaster_id", "sent_at"],
        unique=False,
    )
    op.execute("DROP TABLE chat_messages_partitioned")
    op.execute("ALTER TABLE folded_messages RENAME TO folded_messages_partitioned")
    op.execute("ALTER INDEX pk_folded_messages RENAME TO pk_folded_messages_partitioned")
    op.create_table(
        "folded_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_type", sa.String(length=100), nullable=False),
        sa.Column(
            "folded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_folded_messages")),
    )
    op.execute("""
        INSERT INTO folded_messages (message_id, subscription_type, folded_at)
        SELECT DISTINCT ON (message_id) message_id, subscription_type, folded_at
        FROM folded_messages_partitioned ORDER BY message_id, day
    """)
    op.execute("DROP TABLE folded_messages_partitioned")
