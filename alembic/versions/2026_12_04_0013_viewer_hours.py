"""viewer samples rolled up by hour (kept forever) and partitioned by month (removed)

``viewer_hours`` holds, per channel, UTC hour and stream, what the viewer figures are
computed from: the number of samples, their sum and peak, the viewer-seconds they stand
for, the first and last sample time, the stream's start, and the title and category of
the hour's last sample. A statement trigger on ``viewer_samples`` adds every inserted
sample (one grouped upsert per statement, whoever writes the samples), so the rollup can
never miss one. ``viewer_samples`` is renamed, recreated partitioned by month of
``sampled_at`` with a default partition, and its rows copied over in one statement
through the trigger, which fills the rollup; the migration stops if a row is missing.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 12:00:00.000000
"""

# ruff: noqa: S608 - table names and dates are this file's constants

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)
# Months from two back to two ahead, as the retention job keeps them made
# (``schema/partitions.py``), and any older month with rows, up to 400 days back.
_AROUND = timedelta(days=62)
_DAYS_BACK = 400
_COLUMNS = (
    "broadcaster_id, sampled_at, stream_id, viewer_count, interval_seconds, title, game_name,"
    " game_id, language, thumbnail_url, started_at"
)

# The title and category of a group are its last sample's; NULL start times are ignored
# by least(). Groups are upserted in key order, so two writers never deadlock here.
ROLLUP = """
CREATE FUNCTION streamfold_viewer_hours() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO viewer_hours AS h
        (broadcaster_id, hour, stream_id, samples, viewer_sum, peak_viewers, viewer_seconds,
         first_sampled_at, last_sampled_at, started_at, title, game_name)
    SELECT broadcaster_id, date_trunc('hour', sampled_at, 'UTC'), stream_id, count(*),
           sum(viewer_count), max(viewer_count), sum(viewer_count::bigint * interval_seconds),
           min(sampled_at), max(sampled_at), min(started_at),
           (array_agg(title ORDER BY sampled_at DESC))[1],
           (array_agg(game_name ORDER BY sampled_at DESC))[1]
    FROM added
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (broadcaster_id, hour, stream_id) DO UPDATE
        SET samples = h.samples + excluded.samples,
            viewer_sum = h.viewer_sum + excluded.viewer_sum,
            peak_viewers = greatest(h.peak_viewers, excluded.peak_viewers),
            viewer_seconds = h.viewer_seconds + excluded.viewer_seconds,
            first_sampled_at = least(h.first_sampled_at, excluded.first_sampled_at),
            last_sampled_at = greatest(h.last_sampled_at, excluded.last_sampled_at),
            started_at = least(h.started_at, excluded.started_at),
            title = CASE WHEN excluded.last_sampled_at > h.last_sampled_at
                         THEN excluded.title ELSE h.title END,
            game_name = CASE WHEN excluded.last_sampled_at > h.last_sampled_at
                             THEN excluded.game_name ELSE h.game_name END;
    RETURN NULL;
END $$;
CREATE TRIGGER viewer_hours_rollup AFTER INSERT ON viewer_samples
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION streamfold_viewer_hours();
"""


def _month(d: date) -> date:
    return d.replace(day=1)


def _next_month(d: date) -> date:
    return (d.replace(day=28) + timedelta(days=4)).replace(day=1)


def _bound(d: date) -> str:
    return f"'{d.isoformat()}T00:00:00+00:00'"


def _months(first: date, last: date) -> None:
    op.execute("CREATE TABLE viewer_samples_default PARTITION OF viewer_samples DEFAULT")
    month = _month(first)
    while month <= last:
        op.execute(
            f"CREATE TABLE viewer_samples_p{month:%Y%m} PARTITION OF viewer_samples"
            f" FOR VALUES FROM ({_bound(month)}) TO ({_bound(_next_month(month))})"
        )
        month = _next_month(month)


def _create_samples(partitioned: bool) -> None:
    op.create_table(
        "viewer_samples",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("sampled_at", Instant, nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("viewer_count", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("game_name", sa.Text(), nullable=True),
        sa.Column("game_id", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("thumbnail_url", sa.Text(), nullable=True),
        sa.Column("started_at", Instant, nullable=True),
        sa.PrimaryKeyConstraint("broadcaster_id", "sampled_at", name=op.f("pk_viewer_samples")),
        **({"postgresql_partition_by": "RANGE (sampled_at)"} if partitioned else {}),
    )
    op.create_index(
        "ix_viewer_samples_sampled_at_brin",
        "viewer_samples",
        ["sampled_at"],
        unique=False,
        postgresql_using="brin",
    )


def _rename_old(suffix: str) -> str:
    old = f"viewer_samples_{suffix}"
    op.execute(f"ALTER TABLE viewer_samples RENAME TO {old}")
    op.execute(f"ALTER INDEX pk_viewer_samples RENAME TO pk_{old}")
    op.execute(f"ALTER INDEX ix_viewer_samples_sampled_at_brin RENAME TO ix_{old}_sampled_at_brin")
    return old


def _copy(old: str) -> None:
    op.execute(f"INSERT INTO viewer_samples ({_COLUMNS}) SELECT {_COLUMNS} FROM {old}")
    bind = op.get_bind()
    before = bind.scalar(sa.text(f"SELECT count(*) FROM {old}"))
    after = bind.scalar(sa.text("SELECT count(*) FROM viewer_samples"))
    if before != after:
        raise RuntimeError(f"viewer_samples: {before} rows before, {after} after")
    op.execute(f"DROP TABLE {old}")


def upgrade() -> None:
    op.create_table(
        "viewer_hours",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("hour", Instant, nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("viewer_sum", sa.BigInteger(), nullable=False),
        sa.Column("peak_viewers", sa.Integer(), nullable=False),
        sa.Column("viewer_seconds", sa.BigInteger(), nullable=False),
        sa.Column("first_sampled_at", Instant, nullable=False),
        sa.Column("last_sampled_at", Instant, nullable=False),
        sa.Column("started_at", Instant, nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("game_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint(
            "broadcaster_id", "hour", "stream_id", name=op.f("pk_viewer_hours")
        ),
    )
    old = _rename_old("unpartitioned")
    _create_samples(partitioned=True)
    today = datetime.now(UTC).date()
    oldest = op.get_bind().scalar(sa.text(f"SELECT min(sampled_at) FROM {old}"))
    first = today - _AROUND
    if oldest is not None:
        first = min(oldest.astimezone(UTC).date(), first)
    first = max(first, today - timedelta(days=_DAYS_BACK))
    last = today + _AROUND
    _months(first, last)
    op.execute(ROLLUP)
    _copy(old)
    added = op.get_bind().scalar(sa.text("SELECT coalesce(sum(samples), 0) FROM viewer_hours"))
    copied = op.get_bind().scalar(sa.text("SELECT count(*) FROM viewer_samples"))
    if added != copied:
        raise RuntimeError(f"viewer_hours: {added} samples rolled up, {copied} copied")


def downgrade() -> None:
    old = _rename_old("partitioned")
    _create_samples(partitioned=False)
    _copy(old)
    op.execute("DROP FUNCTION streamfold_viewer_hours()")
    op.drop_table("viewer_hours")
