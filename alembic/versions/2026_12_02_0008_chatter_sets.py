"""chatter keys and per hour, day and month chatter sets, backfilled from chatter_hours

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 12:00:00.000000
"""

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pyroaring import BitMap

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chatter_keys",
        sa.Column("chatter_key", sa.Integer(), sa.Identity(), nullable=False),
        sa.Column("chatter_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("chatter_key", name=op.f("pk_chatter_keys")),
        sa.UniqueConstraint("chatter_id", name=op.f("uq_chatter_keys_chatter_id")),
    )
    op.create_table(
        "chatter_sets",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chatter_hours", sa.Integer(), nullable=False),
        sa.Column("chatters", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint(
            "broadcaster_id", "period_start", "period_end", name=op.f("pk_chatter_sets")
        ),
    )
    _backfill()


# The backfill is a frozen copy of what aggregator/chatter_rollup.py does, one month of
# chatter-hours at a time, so the migration keeps working when that module changes.
_KEYS = "INSERT INTO chatter_keys (chatter_id) SELECT DISTINCT chatter_id FROM chatter_hours"
_MONTHS = """SELECT DISTINCT date_trunc('month', hour, 'UTC') AS m FROM chatter_hours
             WHERE hour < date_trunc('hour', now(), 'UTC') ORDER BY 1"""
_HOURS = """SELECT h.broadcaster_id, h.hour, array_agg(k.chatter_key) AS keys
            FROM chatter_hours h JOIN chatter_keys k USING (chatter_id)
            WHERE h.hour >= :since AND h.hour < :until
              AND h.hour < date_trunc('hour', now(), 'UTC')
            GROUP BY 1, 2"""
_SAVE = """INSERT INTO chatter_sets VALUES (:b, :start, :end, :n, :blob)"""


def _month_end(m: datetime) -> datetime:
    return (m.replace(day=28) + timedelta(days=4)).replace(day=1)


def _backfill() -> None:
    bind = op.get_bind()
    bind.execute(sa.text(_KEYS + " ORDER BY chatter_id"))
    cutoff = bind.execute(sa.text("SELECT date_trunc('hour', now(), 'UTC')")).scalar_one()
    for (at,) in bind.execute(sa.text(_MONTHS)).all():
        month = at.astimezone(UTC)
        end = _month_end(month)
        sets: dict[tuple[str, datetime, datetime], list[Any]] = defaultdict(lambda: [BitMap(), 0])
        rows = bind.execute(sa.text(_HOURS), {"since": month, "until": end}).all()
        for b, at, keys in rows:
            hour = at.astimezone(UTC)
            day = hour.replace(hour=0)
            for period in (
                (b, hour, hour + timedelta(hours=1)),
                (b, day, day + timedelta(days=1)),
                (b, month, end),
            ):
                if period[2] <= cutoff:  # only periods that are over
                    sets[period][0].update(keys)
                    sets[period][1] += len(keys)
        saved = []
        for (b, start, stop), (bitmap, n) in sets.items():
            bitmap.run_optimize()
            saved.append({"b": b, "start": start, "end": stop, "n": n, "blob": bitmap.serialize()})
        if saved:
            bind.execute(sa.text(_SAVE), saved)


def downgrade() -> None:
    op.drop_table("chatter_sets")
    op.drop_table("chatter_keys")
