"""discovery: channel profiles, categories, daily category rollup, snapshot columns

Viewer samples become the five-minute snapshots of every live channel streamfold polls
(tracked ones by reconciliation, Twitch's top list by the collector); ``pg_trgm`` gives
channel search its typo-tolerant trigram indexes. A server without the contrib package
(the embedded PostgreSQL of the local run has none) gets the same two functions and the
``%`` operator written in SQL, with plain indexes under the same names: search answers the
same, by scanning, which is what a local run's few channels need.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Instant = sa.DateTime(timezone=True)


# pg_trgm's similarity in plain SQL: each word (runs of letters and digits, lower-cased)
# padded with two spaces before and one after, its distinct three-letter pieces, and the
# share of pieces two strings have in common (PostgreSQL's contrib/pg_trgm, trgm_op.c).
_SQL_TRIGRAMS = """
CREATE FUNCTION streamfold_trigrams(t text) RETURNS text[] LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(w, i, 3)), '{}')
    FROM (SELECT '  ' || word || ' ' AS w
          FROM regexp_split_to_table(lower(t), '[^[:alnum:]]+') AS word
          WHERE word <> '') words,
         generate_series(1, length(w) - 2) AS i
$$;
CREATE FUNCTION similarity(a text, b text) RETURNS real LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN cardinality(x.ta) + cardinality(x.tb) = 0 THEN 0::real ELSE (
        SELECT count(*) FROM unnest(x.ta) g WHERE g = ANY (x.tb)
    )::real / (cardinality(x.ta) + cardinality(x.tb) - (
        SELECT count(*) FROM unnest(x.ta) g WHERE g = ANY (x.tb)
    ))::real END
    FROM (SELECT streamfold_trigrams(a) AS ta, streamfold_trigrams(b) AS tb) x
$$;
CREATE FUNCTION show_limit() RETURNS real LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('pg_trgm.similarity_threshold', true), ''), '0.3')::real
$$;
CREATE FUNCTION streamfold_similar(a text, b text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT similarity(a, b) >= show_limit()
$$;
CREATE OPERATOR % (LEFTARG = text, RIGHTARG = text, FUNCTION = streamfold_similar);
"""
_DROP_SQL_TRIGRAMS = """
DROP OPERATOR IF EXISTS % (text, text);
DROP FUNCTION IF EXISTS streamfold_similar(text, text);
DROP FUNCTION IF EXISTS show_limit();
DROP FUNCTION IF EXISTS similarity(text, text);
DROP FUNCTION IF EXISTS streamfold_trigrams(text);
"""


def _has_pg_trgm() -> bool:
    available = "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"
    return op.get_bind().scalar(sa.text(available)) is not None


def _search_index(name: str, column: str, trigrams: bool) -> None:
    if trigrams:
        op.create_index(
            name,
            "channel_profiles",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "gin_trgm_ops"},
        )
    else:
        op.create_index(name, "channel_profiles", [column])


def upgrade() -> None:
    trigrams = _has_pg_trgm()
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm" if trigrams else _SQL_TRIGRAMS)
    op.add_column("viewer_samples", sa.Column("game_id", sa.String(length=64), nullable=True))
    op.add_column("viewer_samples", sa.Column("language", sa.String(length=16), nullable=True))
    op.add_column("viewer_samples", sa.Column("thumbnail_url", sa.Text(), nullable=True))
    op.add_column("viewer_samples", sa.Column("started_at", Instant, nullable=True))
    op.create_index(op.f("ix_viewer_samples_sampled_at"), "viewer_samples", ["sampled_at"])

    op.create_table(
        "channel_profiles",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("profile_image_url", sa.Text(), nullable=True),
        sa.Column("broadcaster_type", sa.String(length=16), nullable=True),
        sa.Column("refreshed_at", Instant, nullable=True),
        sa.Column("first_seen_at", Instant, server_default=sa.text("now()"), nullable=False),
        sa.Column("last_seen_at", Instant, nullable=True),
        sa.Column("live_at", Instant, nullable=True),
        sa.Column("live_viewers", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("broadcaster_id", name=op.f("pk_channel_profiles")),
    )
    _search_index("ix_channel_profiles_login_trgm", "login", trigrams)
    _search_index("ix_channel_profiles_display_name_trgm", "display_name", trigrams)
    op.create_index(
        "ix_channel_profiles_live",
        "channel_profiles",
        ["live_viewers", "broadcaster_id"],
        postgresql_where=sa.text("live_at IS NOT NULL"),
    )
    op.create_table(
        "categories",
        sa.Column("game_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("updated_at", Instant, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("game_id", name=op.f("pk_categories")),
    )
    op.create_table(
        "category_days",
        sa.Column("day", Instant, nullable=False),
        sa.Column("game_id", sa.String(length=64), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("samples", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.BigInteger(), nullable=False),
        sa.Column("viewer_seconds", sa.BigInteger(), nullable=False),
        sa.Column("viewer_sum", sa.BigInteger(), nullable=False),
        sa.Column("peak_viewers", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "game_id", "broadcaster_id", name=op.f("pk_category_days")),
    )
    op.create_index(
        op.f("ix_category_days_broadcaster_id_day"), "category_days", ["broadcaster_id", "day"]
    )
    op.create_table(
        "rollup_marks",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("upto", Instant, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_marks")),
    )


def downgrade() -> None:
    op.drop_table("rollup_marks")
    op.drop_table("category_days")
    op.drop_table("categories")
    op.drop_table("channel_profiles")
    op.drop_index(op.f("ix_viewer_samples_sampled_at"), table_name="viewer_samples")
    for column in ("started_at", "thumbnail_url", "language", "game_id"):
        op.drop_column("viewer_samples", column)
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
    op.execute(_DROP_SQL_TRIGRAMS)
