"""follows and the live-status outbox

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "follows",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("follower_kind", sa.String(length=8), nullable=False),
        sa.Column("follower_id", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.CheckConstraint(
            "follower_kind IN ('user', 'guild')", name=op.f("ck_follows_follower_kind")
        ),
        sa.ForeignKeyConstraint(
            ["broadcaster_id"],
            ["channels.broadcaster_id"],
            name=op.f("fk_follows_broadcaster_id_channels"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "broadcaster_id", "follower_kind", "follower_id", name=op.f("pk_follows")
        ),
    )
    op.create_index(
        op.f("ix_follows_follower_kind_follower_id"),
        "follows",
        ["follower_kind", "follower_id"],
    )
    op.create_table(
        "live_outbox",
        sa.Column("seq", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("game_name", sa.Text(), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column(
            "changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("announced", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_live_outbox")),
    )
    op.create_index(
        op.f("ix_live_outbox_broadcaster_id_seq"), "live_outbox", ["broadcaster_id", "seq"]
    )
    op.create_index(
        "ix_live_outbox_unpublished",
        "live_outbox",
        ["seq"],
        postgresql_where=sa.text("published_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("live_outbox")
    op.drop_table("follows")
