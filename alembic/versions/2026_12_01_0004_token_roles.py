"""oauth tokens per role

A streamer login's tokens no longer share a row with the bot's: the primary key becomes
(user_id, role). Existing rows that carry the bot's scopes become the bot's; the rest are
a streamer's.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "oauth_tokens",
        sa.Column("role", sa.String(length=16), server_default="streamer", nullable=False),
    )
    op.execute(
        """UPDATE oauth_tokens t SET role = 'bot' FROM twitch_users u
           WHERE u.id = t.user_id AND u.is_bot
             AND t.scopes @> ARRAY['user:read:chat', 'user:bot']::text[]"""
    )
    op.alter_column("oauth_tokens", "role", server_default=None)
    op.drop_constraint("pk_oauth_tokens", "oauth_tokens", type_="primary")
    op.create_primary_key("pk_oauth_tokens", "oauth_tokens", ["user_id", "role"])
    op.create_check_constraint(
        op.f("ck_oauth_tokens_role"), "oauth_tokens", "role IN ('streamer', 'bot')"
    )


def downgrade() -> None:
    # One row per user again: the bot's tokens win, as the bot role is the scarcer one.
    op.execute(
        """DELETE FROM oauth_tokens t WHERE t.role = 'streamer'
           AND EXISTS (SELECT 1 FROM oauth_tokens b WHERE b.user_id = t.user_id
                       AND b.role = 'bot')"""
    )
    op.drop_constraint(op.f("ck_oauth_tokens_role"), "oauth_tokens", type_="check")
    op.drop_constraint("pk_oauth_tokens", "oauth_tokens", type_="primary")
    op.create_primary_key("pk_oauth_tokens", "oauth_tokens", ["user_id"])
    op.drop_column("oauth_tokens", "role")
