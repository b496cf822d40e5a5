"""live now on the profile row; search's recent hours precomputed

Each live profile carries its newest snapshot's stream (id, title, category id and name,
language, started_at, thumbnail), written in the same statement that sets ``live_at``,
with partial indexes by category and by language in viewer order: live now reads one
small row per live channel and never probes the snapshots. ``recent_viewer_seconds``
holds each channel's last 30 days of the rollup, refreshed with the category tables, so
search orders its candidates without summing the rollup per request. Existing live
profiles are filled from the snapshot ``live_at`` points at (one without it is not live).
The trigram indexes stop deferring new entries to a pending list (``fastupdate``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)

_LIVE_COLUMNS = (
    ("live_stream_id", sa.String(length=64)),
    ("live_title", sa.Text()),
    ("live_game_id", sa.String(length=64)),
    ("live_game_name", sa.Text()),
    ("live_language", sa.String(length=16)),
    ("live_started_at", Instant),
    ("live_thumbnail_url", sa.Text()),
)
_LIVE = sa.text("live_at IS NOT NULL")

_BACKFILL_LIVE = """
    UPDATE channel_profiles p
    SET live_stream_id = v.stream_id, live_title = v.title, live_game_id = v.game_id,
        live_game_name = v.game_name, live_language = v.language,
        live_started_at = v.started_at, live_thumbnail_url = v.thumbnail_url
    FROM viewer_samples v
    WHERE v.broadcaster_id = p.broadcaster_id AND v.sampled_at = p.live_at
"""
_NOT_LIVE_WITHOUT_SNAPSHOT = """
    UPDATE channel_profiles SET live_at = NULL, live_viewers = NULL
    WHERE live_at IS NOT NULL AND live_stream_id IS NULL
"""
_BACKFILL_RECENT = """
    UPDATE channel_profiles p SET recent_viewer_seconds = d.total
    FROM (SELECT broadcaster_id, sum(viewer_seconds) AS total FROM category_days
          WHERE day >= now() - interval '30 days' GROUP BY broadcaster_id) d
    WHERE d.broadcaster_id = p.broadcaster_id
"""


# GIN's pending list takes new entries cheaply and is read whole by every scan until a
# vacuum merges it: each collector run rewrites every live profile (new row versions,
# new entries), so search would read thousands of pending entries. Off: entries go
# into the index at once (a few per row, a few thousand rows a run).
_TRIGRAM_INDEXES = ("ix_channel_profiles_login_trgm", "ix_channel_profiles_display_name_trgm")


def _trigram_gin() -> bool:
    """pg_trgm's GIN indexes, or the plain B-trees of a server without it (0005)."""
    installed = "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"
    return op.get_bind().scalar(sa.text(installed)) is not None


def upgrade() -> None:
    if _trigram_gin():
        for index in _TRIGRAM_INDEXES:
            op.execute(f"ALTER INDEX {index} SET (fastupdate = off)")
            op.execute(f"SELECT gin_clean_pending_list('{index}'::regclass)")
    for name, kind in _LIVE_COLUMNS:
        op.add_column("channel_profiles", sa.Column(name, kind, nullable=True))
    op.add_column(
        "channel_profiles",
        sa.Column(
            "recent_viewer_seconds", sa.BigInteger(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.execute(_BACKFILL_LIVE)
    op.execute(_NOT_LIVE_WITHOUT_SNAPSHOT)
    op.execute(_BACKFILL_RECENT)
    op.create_index(
        "ix_channel_profiles_live_game",
        "channel_profiles",
        ["live_game_id", "live_viewers", "broadcaster_id"],
        postgresql_where=_LIVE,
    )
    op.create_index(
        "ix_channel_profiles_live_game_name",
        "channel_profiles",
        [sa.text("lower(live_game_name)")],
        postgresql_where=_LIVE,
    )
    op.create_index(
        "ix_channel_profiles_live_language",
        "channel_profiles",
        [sa.text("lower(live_language)"), "live_viewers", "broadcaster_id"],
        postgresql_where=_LIVE,
    )
    op.create_index("ix_categories_name_lower", "categories", [sa.text("lower(name)")])


def downgrade() -> None:
    if _trigram_gin():
        for index in _TRIGRAM_INDEXES:
            op.execute(f"ALTER INDEX {index} RESET (fastupdate)")
    op.drop_index("ix_categories_name_lower", table_name="categories")
    op.drop_index("ix_channel_profiles_live_language", table_name="channel_profiles")
    op.drop_index("ix_channel_profiles_live_game_name", table_name="channel_profiles")
    op.drop_index("ix_channel_profiles_live_game", table_name="channel_profiles")
    op.drop_column("channel_profiles", "recent_viewer_seconds")
    for name, _ in reversed(_LIVE_COLUMNS):
        op.drop_column("channel_profiles", name)
