"""search reads a narrow table of its own: login, display name, live or not, 30-day figure

``channel_search`` holds one small row per profile with what search matches and orders
by; a trigger on ``channel_profiles`` writes it only when one of those changes (a new
profile, a new login or display name, a channel going live or offline, a new 30-day
figure), not on every collector run that rewrites the live profiles. Its trigram indexes
(no pending list) and its heap stay compact, so a short prefix that shares trigrams
with many logins rechecks small, dense rows. Filled from the existing profiles. On a
server without pg_trgm the indexes are plain B-trees, as for the profiles (0005).

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-03 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOLLOW = """
CREATE FUNCTION streamfold_channel_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO channel_search (broadcaster_id, login, display_name, live,
                                recent_viewer_seconds)
    VALUES (NEW.broadcaster_id, NEW.login, NEW.display_name, NEW.live_at IS NOT NULL,
            NEW.recent_viewer_seconds)
    ON CONFLICT (broadcaster_id) DO UPDATE
        SET login = excluded.login, display_name = excluded.display_name,
            live = excluded.live, recent_viewer_seconds = excluded.recent_viewer_seconds;
    RETURN NULL;
END $$;
CREATE TRIGGER channel_search_insert AFTER INSERT ON channel_profiles
    FOR EACH ROW EXECUTE FUNCTION streamfold_channel_search();
CREATE TRIGGER channel_search_update AFTER UPDATE ON channel_profiles
    FOR EACH ROW WHEN (OLD.login IS DISTINCT FROM NEW.login
                       OR OLD.display_name IS DISTINCT FROM NEW.display_name
                       OR (OLD.live_at IS NULL) <> (NEW.live_at IS NULL)
                       OR OLD.recent_viewer_seconds <> NEW.recent_viewer_seconds)
    EXECUTE FUNCTION streamfold_channel_search();
"""
_UNFOLLOW = """
DROP TRIGGER IF EXISTS channel_search_update ON channel_profiles;
DROP TRIGGER IF EXISTS channel_search_insert ON channel_profiles;
DROP FUNCTION IF EXISTS streamfold_channel_search();
"""
_FILL = """
    INSERT INTO channel_search (broadcaster_id, login, display_name, live,
                                recent_viewer_seconds)
    SELECT broadcaster_id, login, display_name, live_at IS NOT NULL, recent_viewer_seconds
    FROM channel_profiles
    ORDER BY broadcaster_id
"""


def _has_pg_trgm() -> bool:
    installed = "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"
    return op.get_bind().scalar(sa.text(installed)) is not None


def upgrade() -> None:
    op.create_table(
        "channel_search",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("live", sa.Boolean(), nullable=False),
        sa.Column("recent_viewer_seconds", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["broadcaster_id"],
            ["channel_profiles.broadcaster_id"],
            name=op.f("fk_channel_search_broadcaster_id_channel_profiles"),
            ondelete="CASCADE",
            onupdate="CASCADE",
        ),
        sa.PrimaryKeyConstraint("broadcaster_id", name=op.f("pk_channel_search")),
    )
    # Room on each page for the next version of a row: a live channel's 30-day figure
    # grows with every rollup, and an update that changes no indexed column and fits on
    # its page is a heap-only one (no new index entries, the old version pruned in place).
    op.execute("ALTER TABLE channel_search SET (fillfactor = 70)")
    op.execute(_FILL)
    trigrams = _has_pg_trgm()
    for column in ("login", "display_name"):
        name = f"ix_channel_search_{column}_trgm"
        if trigrams:
            op.create_index(
                name,
                "channel_search",
                [column],
                postgresql_using="gin",
                postgresql_ops={column: "gin_trgm_ops"},
                postgresql_with={"fastupdate": "off"},
            )
        else:
            op.create_index(name, "channel_search", [column])
    op.execute(_FOLLOW)


def downgrade() -> None:
    op.execute(_UNFOLLOW)
    op.drop_table("channel_search")
