"""exact chat totals per closed session span (span_chat), filled by the chatter rollup

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03 12:00:00.000000

No backfill: a session without a row reads its totals from chatter sets and raw rows, as
before, and the rollup fills the sessions that end from now on.
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "span_chat",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hour_messages", sa.BigInteger(), nullable=False),
        sa.Column("chat_messages", sa.BigInteger(), nullable=False),
        sa.Column("unique_chatters", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "broadcaster_id", "started_at", "ended_at", name=op.f("pk_span_chat")
        ),
    )


def downgrade() -> None:
    op.drop_table("span_chat")
