"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 13:26:27.249990
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel_hours",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chat_messages", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("unique_chatters", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("broadcaster_id", "hour", name=op.f("pk_channel_hours")),
    )
    op.create_table(
        "channels",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=True),
        sa.Column("display_name", sa.String(length=128), nullable=True),
        sa.Column("connected", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disconnected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("broadcaster_id", name=op.f("pk_channels")),
    )
    op.create_table(
        "chat_gaps",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_gaps")),
    )
    op.create_index(
        op.f("ix_chat_gaps_broadcaster_id_started_at"),
        "chat_gaps",
        ["broadcaster_id", "started_at"],
        unique=False,
    )
    op.create_table(
        "chat_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("chatter_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_chat_messages")),
    )
    op.create_index(
        op.f("ix_chat_messages_broadcaster_id_sent_at"),
        "chat_messages",
        ["broadcaster_id", "sent_at"],
        unique=False,
    )
    op.create_table(
        "chatter_hours",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("chatter_id", sa.String(length=64), nullable=False),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "broadcaster_id", "hour", "chatter_id", name=op.f("pk_chatter_hours")
        ),
    )
    op.create_index(
        op.f("ix_chatter_hours_chatter_id_hour"),
        "chatter_hours",
        ["chatter_id", "hour"],
        unique=False,
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_type", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("body_bytes", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
    )
    op.create_index(
        op.f("ix_dead_letters_message_id"), "dead_letters", ["message_id"], unique=False
    )
    op.create_table(
        "eventsub_subscriptions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=16), nullable=False),
        sa.Column("condition", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_eventsub_subscriptions")),
    )
    op.create_index(
        op.f("ix_eventsub_subscriptions_broadcaster_id"),
        "eventsub_subscriptions",
        ["broadcaster_id"],
        unique=False,
    )
    op.create_table(
        "folded_messages",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("subscription_type", sa.String(length=100), nullable=False),
        sa.Column(
            "folded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_folded_messages")),
    )
    op.create_table(
        "job_runs",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "counts",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'"),
            nullable=False,
        ),
        sa.Column("error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "outcome IN ('running', 'success', 'failed', 'skipped')",
            name=op.f("ck_job_runs_outcome"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
    )
    op.create_index(
        op.f("ix_job_runs_job_started_at"), "job_runs", ["job", "started_at"], unique=False
    )
    op.create_table(
        "stream_offlines",
        sa.Column("message_id", sa.String(length=128), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_stream_offlines")),
    )
    op.create_index(
        op.f("ix_stream_offlines_broadcaster_id_at"),
        "stream_offlines",
        ["broadcaster_id", "at"],
        unique=False,
    )
    op.create_table(
        "stream_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_by", sa.String(length=16), nullable=False),
        sa.Column("ended_by", sa.String(length=16), nullable=True),
        sa.Column("reconcile_ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("game_name", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "ended_by IN ('eventsub', 'reconcile')", name=op.f("ck_stream_sessions_ended_by")
        ),
        sa.CheckConstraint(
            "started_by IN ('eventsub', 'reconcile')", name=op.f("ck_stream_sessions_started_by")
        ),
        sa.CheckConstraint(
            "ended_at IS NULL OR ended_at >= started_at",
            name=op.f("ck_stream_sessions_ends_after_start"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stream_sessions")),
    )
    op.create_index(
        op.f("ix_stream_sessions_broadcaster_id_started_at"),
        "stream_sessions",
        ["broadcaster_id", "started_at"],
        unique=False,
    )
    op.create_table(
        "twitch_users",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=128), nullable=False),
        sa.Column("is_bot", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_twitch_users")),
    )
    op.create_table(
        "viewer_samples",
        sa.Column("broadcaster_id", sa.String(length=64), nullable=False),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stream_id", sa.String(length=64), nullable=False),
        sa.Column("viewer_count", sa.Integer(), nullable=False),
        sa.Column("interval_seconds", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("game_name", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("broadcaster_id", "sampled_at", name=op.f("pk_viewer_samples")),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_sha256", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["twitch_users.id"],
            name=op.f("fk_api_tokens_user_id_twitch_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_tokens_token_sha256")),
    )
    op.create_index(op.f("ix_api_tokens_user_id"), "api_tokens", ["user_id"], unique=False)
    op.create_table(
        "oauth_tokens",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=False),
        sa.Column(
            "scopes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["twitch_users.id"],
            name=op.f("fk_oauth_tokens_user_id_twitch_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_oauth_tokens")),
    )


def downgrade() -> None:
    op.drop_table("oauth_tokens")
    op.drop_index(op.f("ix_api_tokens_user_id"), table_name="api_tokens")
    op.drop_table("api_tokens")
    op.drop_table("viewer_samples")
    op.drop_table("twitch_users")
    op.drop_index(
        op.f("ix_stream_sessions_broadcaster_id_started_at"), table_name="stream_sessions"
    )
    op.drop_table("stream_sessions")
    op.drop_index(op.f("ix_stream_offlines_broadcaster_id_at"), table_name="stream_offlines")
    op.drop_table("stream_offlines")
    op.drop_index(op.f("ix_job_runs_job_started_at"), table_name="job_runs")
    op.drop_table("job_runs")
    op.drop_table("folded_messages")
    op.drop_index(
        op.f("ix_eventsub_subscriptions_broadcaster_id"), table_name="eventsub_subscriptions"
    )
    op.drop_table("eventsub_subscriptions")
    op.drop_index(op.f("ix_dead_letters_message_id"), table_name="dead_letters")
    op.drop_table("dead_letters")
    op.drop_index(op.f("ix_chatter_hours_chatter_id_hour"), table_name="chatter_hours")
    op.drop_table("chatter_hours")
    op.drop_index(op.f("ix_chat_messages_broadcaster_id_sent_at"), table_name="chat_messages")
    op.drop_table("chat_messages")
    op.drop_index(op.f("ix_chat_gaps_broadcaster_id_started_at"), table_name="chat_gaps")
    op.drop_table("chat_gaps")
    op.drop_table("channels")
    op.drop_table("channel_hours")
