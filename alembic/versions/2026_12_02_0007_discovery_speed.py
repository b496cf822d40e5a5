"""discovery speed: a BRIN on snapshot time, category tables precomputed per window

Snapshots arrive in time order, so a BRIN serves the time-range reads (the rollup,
marking who is live) at a fraction of a B-tree's size, and, unlike the B-tree it
replaces, is never picked for the live-now join: every live channel's newest snapshot
has the same poll time, and the B-tree on time alone made that join walk them all per
row instead of one primary-key probe. ``category_windows`` holds the category table of
each preset window (24h, 7d, 30d, 90d), refreshed with the daily rollup.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.drop_index("ix_viewer_samples_sampled_at", table_name="viewer_samples")
    op.create_index(
        "ix_viewer_samples_sampled_at_brin",
        "viewer_samples",
        ["sampled_at"],
        postgresql_using="brin",
    )
    op.create_table(
        "category_windows",
        sa.Column("seconds_back", sa.Integer(), nullable=False),
        sa.Column("game_id", sa.String(length=64), nullable=False),
        sa.Column("since_day", Instant, nullable=False),
        sa.Column("upto", Instant, nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("viewer_seconds", sa.BigInteger(), nullable=False),
        sa.Column("peak_viewers", sa.Integer(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seconds_back", "game_id", name=op.f("pk_category_windows")),
    )
    op.create_index(
        "ix_category_windows_rank",
        "category_windows",
        ["seconds_back", sa.text("viewer_seconds DESC"), "game_id"],
    )


def downgrade() -> None:
    op.drop_table("category_windows")
    op.drop_index("ix_viewer_samples_sampled_at_brin", table_name="viewer_samples")
    op.create_index(op.f("ix_viewer_samples_sampled_at"), "viewer_samples", ["sampled_at"])
