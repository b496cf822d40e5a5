"""Every table, as SQLAlchemy 2 models. Alembic migrations must agree with this file
(``tests/test_migrations.py`` compares them).

Column names follow PRODUCT.md's JSON fields so the API never renames. Instants are
``timestamptz``; hours are the UTC top of the hour.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Instant = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: Instant, dict[str, Any]: JSONB}


def _now() -> Any:
    return mapped_column(Instant, server_default=func.now(), nullable=False)


# -- people and channels ----------------------------------------------------------------


class TwitchUser(Base):
    """Anyone who signed in with Twitch: streamers, viewers, the bot account."""

    __tablename__ = "twitch_users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128))
    # Signed in as the bot, and its chat subscriptions may still exist at Twitch: cleared
    # once a disconnect has deleted them. Who *is* the bot is decided by the bot's tokens
    # (``schema.twitch.tokens.connected_bot_id``), never by this flag.
    is_bot: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class OAuthToken(Base):
    """A user's Twitch tokens, Fernet-encrypted; the plaintext never reaches the database.

    One row per role the user signed in as: the bot's tokens (``user:read:chat user:bot``)
    are kept apart from a streamer login's (``channel:bot``), so signing in as a streamer
    never makes anyone the bot, nor replaces the bot's tokens when both are one account.
    """

    __tablename__ = "oauth_tokens"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("twitch_users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)  # streamer or bot
    access_token: Mapped[bytes] = mapped_column(LargeBinary)
    refresh_token: Mapped[bytes] = mapped_column(LargeBinary)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    expires_at: Mapped[datetime]
    validated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (CheckConstraint("role IN ('streamer', 'bot')", name="role"),)


class Channel(Base):
    """A broadcaster we fold events for; connected channels get subscriptions."""

    __tablename__ = "channels"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str | None] = mapped_column(String(64))
    display_name: Mapped[str | None] = mapped_column(String(128))
    connected: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    connected_at: Mapped[datetime | None]
    disconnected_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()
    # The status of the channel's latest chat subscription revocation, whatever it was,
    # and when. ``chat_blocked``: that reason needs a person (the bot was banned, lost its
    # moderator status), so the sync stops re-creating chat until the streamer connects
    # again or an operator retries (``streamfold subscriptions sync --retry-blocked``).
    chat_revocation: Mapped[str | None] = mapped_column(String(64))
    chat_revoked_at: Mapped[datetime | None]
    chat_blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class LoginSession(Base):
    """A browser session; the cookie carries only its signed random id, so logging out
    (or a revoked authorization) ends it server-side."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("twitch_users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "user_id"),)


class ApiToken(Base):
    """A per-user API token for server-side frontends; only its SHA-256 is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("twitch_users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_sha256: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "user_id"),)


# -- EventSub ---------------------------------------------------------------------------


class EventSubSubscription(Base):
    __tablename__ = "eventsub_subscriptions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(16))
    condition: Mapped[dict[str, Any]]
    broadcaster_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    revoked_at: Mapped[datetime | None]

    __table_args__ = (Index(None, "broadcaster_id"),)


class FoldedMessage(Base):
    """The ledger: every EventSub message id folded, written in the fold's transaction.

    Partitioned by the UTC day of the delivery's timestamp; an id near midnight is also
    in the next day's partition, so a redelivery up to ``DEDUPE_HORIZON_SECONDS`` later
    still conflicts (``schema/partitions.py``). Kept ``LEDGER_RETENTION_DAYS``.
    """

    __tablename__ = "folded_messages"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    subscription_type: Mapped[str] = mapped_column(String(100))
    folded_at: Mapped[datetime] = _now()

    __table_args__ = ({"postgresql_partition_by": "RANGE (day)"},)


class DeadLetter(Base):
    """A signed notification that cannot be folded, kept with the reason (never its text)."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(128))
    subscription_type: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_bytes: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index(None, "message_id"),)


# -- stream sessions ----------------------------------------------------------------------


class StreamSession(Base):
    """One Twitch stream, keyed by its stream id.

    ``ended_at`` is derived (``aggregator/sessions.py``, ``session_ends``) from the facts
    kept beside it: offline events, the next session's start, and reconciliation's
    estimate.
    """

    __tablename__ = "stream_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    broadcaster_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    started_by: Mapped[str] = mapped_column(String(16))
    ended_by: Mapped[str | None] = mapped_column(String(16))
    reconcile_ended_at: Mapped[datetime | None]
    title: Mapped[str | None] = mapped_column(Text)
    game_name: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index(None, "broadcaster_id", "started_at"),
        CheckConstraint("started_by IN ('eventsub', 'reconcile')", name="started_by"),
        CheckConstraint("ended_by IN ('eventsub', 'reconcile')", name="ended_by"),
        CheckConstraint("ended_at IS NULL OR ended_at >= started_at", name="ends_after_start"),
    )


class StreamOffline(Base):
    """A ``stream.offline`` event: when a channel went offline (the message timestamp)."""

    __tablename__ = "stream_offlines"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    broadcaster_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]

    __table_args__ = (Index(None, "broadcaster_id", "at"),)


# -- chat -------------------------------------------------------------------------------


class ChatMessage(Base):
    """One chat message's identity and coordinates (never its text).

    Keyed by Twitch's ``event.message_id`` and the UTC day of ``sent_at`` (the partition
    key): a chat message delivered twice under different EventSub ids (secret rotation)
    is still counted once, and one near midnight has a second row (``is_copy``) in the
    next day's partition for that (``schema/partitions.py``). Exact figures for windows
    that do not start or end on an hour read the partial hours from the primary rows.
    Kept ``RETENTION_DAYS``; ``retention_marks`` says from when rows are complete.
    """

    __tablename__ = "chat_messages"

    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    broadcaster_id: Mapped[str] = mapped_column(String(64))
    chatter_id: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime]
    is_copy: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        Index(None, "broadcaster_id", "sent_at", postgresql_where=text("NOT is_copy")),
        {"postgresql_partition_by": "RANGE (day)"},
    )


class ChatterHour(Base):
    """Messages per chatter per channel-hour: exact distinct chatters over any hours."""

    __tablename__ = "chatter_hours"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    chatter_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    messages: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index(None, "chatter_id", "hour"),)


class ChannelHour(Base):
    """Chat totals of one channel-hour, kept current by the fold."""

    __tablename__ = "channel_hours"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    chat_messages: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    unique_chatters: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class ChatterKey(Base):
    """A dense integer for each chatter id ever rolled up, so chatter sets are bitmaps."""

    __tablename__ = "chatter_keys"

    chatter_key: Mapped[int] = mapped_column(Integer, Identity(), primary_key=True)
    chatter_id: Mapped[str] = mapped_column(String(64), unique=True)


class ChatterSet(Base):
    """The chatters of one channel in one UTC hour, day or month (``schema/chatter_sets.py``):
    a roaring bitmap of ``chatter_keys``, and how many ``chatter_hours`` rows built it."""

    __tablename__ = "chatter_sets"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period_start: Mapped[datetime] = mapped_column(primary_key=True)
    period_end: Mapped[datetime] = mapped_column(primary_key=True)
    chatter_hours: Mapped[int] = mapped_column(Integer)
    chatters: Mapped[bytes] = mapped_column(LargeBinary)


class SpanChat(Base):
    """Exact chat totals of one closed span of a channel (a session, ``started_at`` to
    ``ended_at``), written by the rollup; ``hour_messages`` is the sum of
    ``channel_hours.chat_messages`` over the hours the span touches when the totals were
    counted, so they are current while that sum is unchanged (``aggregator/chatter_rollup.py``)."""

    __tablename__ = "span_chat"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(primary_key=True)
    ended_at: Mapped[datetime] = mapped_column(primary_key=True)
    hour_messages: Mapped[int] = mapped_column(BigInteger)
    chat_messages: Mapped[int] = mapped_column(BigInteger)
    unique_chatters: Mapped[int] = mapped_column(Integer)


class ChatGap(Base):
    """A time span in which a channel's chat may be incomplete (subscription not enabled,
    or our receiver refused deliveries); ``broadcaster_id`` NULL means every channel."""

    __tablename__ = "chat_gaps"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    broadcaster_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index(None, "broadcaster_id", "started_at"),)


# -- viewers and jobs ---------------------------------------------------------------------


class ViewerSample(Base):
    """One Helix Get Streams sample of a live channel (reconciliation and the collector).

    Partitioned by month of ``sampled_at`` (``schema/partitions.py``) and kept
    ``RETENTION_DAYS``; a statement trigger adds every inserted sample to ``viewer_hours``
    (migration 0013), which the viewer figures are read from."""

    __tablename__ = "viewer_samples"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    sampled_at: Mapped[datetime] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    viewer_count: Mapped[int] = mapped_column(Integer)
    interval_seconds: Mapped[int] = mapped_column(Integer)
    title: Mapped[str | None] = mapped_column(Text)
    game_name: Mapped[str | None] = mapped_column(Text)
    # The rest of the Get Streams entry: what the public routes show of a snapshot.
    game_id: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None]

    # BRIN: samples arrive in time order; a B-tree on time alone misled the live-now join.
    __table_args__ = (
        Index("ix_viewer_samples_sampled_at_brin", "sampled_at", postgresql_using="brin"),
        {"postgresql_partition_by": "RANGE (sampled_at)"},
    )


class ViewerHour(Base):
    """The samples of one channel, UTC hour and stream, rolled up: kept forever, so viewer
    figures outlive the samples. Written only by the trigger on ``viewer_samples``; the
    title and category are the hour's last sample's."""

    __tablename__ = "viewer_hours"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    hour: Mapped[datetime] = mapped_column(primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    viewer_sum: Mapped[int] = mapped_column(BigInteger)
    peak_viewers: Mapped[int] = mapped_column(Integer)
    viewer_seconds: Mapped[int] = mapped_column(BigInteger)  # sum of count × interval
    first_sampled_at: Mapped[datetime]
    last_sampled_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    title: Mapped[str | None] = mapped_column(Text)
    game_name: Mapped[str | None] = mapped_column(Text)


# -- discovery ----------------------------------------------------------------------------


def _trigram_index(table: str, column: str) -> Index:
    """A pg_trgm GIN index that takes each new row version at once (``fastupdate`` off)."""
    return Index(
        f"ix_{table}_{column}_trgm",
        column,
        postgresql_using="gin",
        postgresql_ops={column: "gin_trgm_ops"},
        postgresql_with={"fastupdate": "off"},
    )


class ChannelProfile(Base):
    """A channel the collector saw (tracked, or in Twitch's top list): its Get Users
    profile and whether it is live now. Not a connection: ``channels`` says that."""

    __tablename__ = "channel_profiles"

    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    login: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128))
    profile_image_url: Mapped[str | None] = mapped_column(Text)
    broadcaster_type: Mapped[str | None] = mapped_column(String(16))
    refreshed_at: Mapped[datetime | None]  # the last Get Users answer for it
    first_seen_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime | None]  # the newest snapshot of it live
    # The snapshot that is its live state now (NULL: not live as far as we know), and
    # that snapshot's stream, copied here in the same statement that sets ``live_at`` so
    # live now reads one small row per live channel and never the snapshots.
    live_at: Mapped[datetime | None]
    live_viewers: Mapped[int | None] = mapped_column(Integer)
    live_stream_id: Mapped[str | None] = mapped_column(String(64))
    live_title: Mapped[str | None] = mapped_column(Text)
    live_game_id: Mapped[str | None] = mapped_column(String(64))
    live_game_name: Mapped[str | None] = mapped_column(Text)  # as the snapshot named it
    live_language: Mapped[str | None] = mapped_column(String(16))
    live_started_at: Mapped[datetime | None]
    live_thumbnail_url: Mapped[str | None] = mapped_column(Text)
    # Viewer-seconds of the last 30 days of the rollup (search's "recent hours watched"),
    # recomputed with the category tables each collector run.
    recent_viewer_seconds: Mapped[int] = mapped_column(
        BigInteger, server_default=text("0"), nullable=False
    )

    # The trigram indexes take each new row version at once (``fastupdate`` off): every
    # collector run rewrites the live profiles, and a pending list of them would be
    # scanned whole by every search until the next vacuum.
    __table_args__ = (
        _trigram_index("channel_profiles", "login"),
        _trigram_index("channel_profiles", "display_name"),
        Index(
            "ix_channel_profiles_live",
            "live_viewers",
            "broadcaster_id",
            postgresql_where=text("live_at IS NOT NULL"),
        ),
        # Live now by one category (its id; its name for a snapshot whose category has
        # no row) or one language, in viewer order.
        Index(
            "ix_channel_profiles_live_game",
            "live_game_id",
            "live_viewers",
            "broadcaster_id",
            postgresql_where=text("live_at IS NOT NULL"),
        ),
        Index(
            "ix_channel_profiles_live_game_name",
            text("lower(live_game_name)"),
            postgresql_where=text("live_at IS NOT NULL"),
        ),
        Index(
            "ix_channel_profiles_live_language",
            text("lower(live_language)"),
            "live_viewers",
            "broadcaster_id",
            postgresql_where=text("live_at IS NOT NULL"),
        ),
    )


class ChannelSearch(Base):
    """What search matches and orders by, one narrow row per profile: written by a
    trigger on ``channel_profiles`` (migration 0012) only when the login, the display
    name, being live or the 30-day figure changes, so this heap stays small and dense
    while the collector rewrites the live profiles every run."""

    __tablename__ = "channel_search"

    broadcaster_id: Mapped[str] = mapped_column(
        ForeignKey("channel_profiles.broadcaster_id", ondelete="CASCADE", onupdate="CASCADE"),
        primary_key=True,
    )
    login: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128))
    live: Mapped[bool]  # the profile's ``live_at IS NOT NULL``
    recent_viewer_seconds: Mapped[int] = mapped_column(BigInteger)  # the profile's

    __table_args__ = (
        _trigram_index("channel_search", "login"),
        _trigram_index("channel_search", "display_name"),
    )


class Category(Base):
    """A Twitch category by id, with the newest name a snapshot reported (renames follow)."""

    __tablename__ = "categories"

    game_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = _now()

    # Live now's ``game`` filter by name (case-insensitive).
    __table_args__ = (Index("ix_categories_name_lower", text("lower(name)")),)


class CategoryDay(Base):
    """The daily rollup of snapshots per UTC day, category and channel: the category
    statistics read whole days from here instead of every snapshot."""

    __tablename__ = "category_days"

    day: Mapped[datetime] = mapped_column(primary_key=True)
    game_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # '' if none
    broadcaster_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    samples: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[int] = mapped_column(BigInteger)  # live time the samples stand for
    viewer_seconds: Mapped[int] = mapped_column(BigInteger)
    viewer_sum: Mapped[int] = mapped_column(BigInteger)
    peak_viewers: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index(None, "broadcaster_id", "day"),)


class CategoryWindow(Base):
    """The category table of one preset window (``seconds_back``), as of the rollup's
    mark ``upto``, over whole UTC days from ``since_day``: refreshed with the rollup, so
    the public table reads at most a few hundred rows instead of a month of rollup."""

    __tablename__ = "category_windows"

    seconds_back: Mapped[int] = mapped_column(Integer, primary_key=True)
    game_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    since_day: Mapped[datetime]
    upto: Mapped[datetime]
    seconds: Mapped[int] = mapped_column(BigInteger)
    viewer_seconds: Mapped[int] = mapped_column(BigInteger)
    peak_viewers: Mapped[int] = mapped_column(Integer)
    channels: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_category_windows_rank", "seconds_back", text("viewer_seconds DESC"), "game_id"),
    )


class RollupMark(Base):
    """How far a rollup has read its source: rows up to ``upto`` are in it."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    upto: Mapped[datetime]


class JobRun(Base):
    """One run of a periodic job (reconciliation, token upkeep) and what it did."""

    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(None, "job", "started_at"),
        CheckConstraint("outcome IN ('running', 'success', 'failed', 'skipped')", name="outcome"),
    )


class RetentionMark(Base):
    """What retention removed from a raw table: its rows older than ``removed_before``
    may be gone (``aggregator/retention.py``), so reads that need them degrade."""

    __tablename__ = "retention_marks"

    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    removed_before: Mapped[datetime]
    updated_at: Mapped[datetime] = _now()


# -- follows and live status ----------------------------------------------------------------


class Follow(Base):
    """Someone who wants to know when a channel goes live: a signed-in user (``user``, a
    ``twitch_users`` id) or an outside group following over Redis (``guild``, its id).
    A channel with a follow is tracked: it gets stream.online/offline subscriptions."""

    __tablename__ = "follows"

    broadcaster_id: Mapped[str] = mapped_column(
        ForeignKey("channels.broadcaster_id", ondelete="CASCADE"), primary_key=True
    )
    follower_kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    follower_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        Index(None, "follower_kind", "follower_id"),
        CheckConstraint("follower_kind IN ('user', 'guild')", name="follower_kind"),
    )


class LiveChange(Base):
    """The outbox of live status: one row per folded change of a channel's live state
    (a session opened, closed, replaced), written in the fold's own transaction and
    published on Redis after commit (``aggregator/live_publisher.py``). ``seq`` is the
    SSE event id. ``announced``: part of a published message (false when a later change
    of the same batch superseded it, or it repeated what was last published)."""

    __tablename__ = "live_outbox"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    broadcaster_id: Mapped[str] = mapped_column(String(64))
    online: Mapped[bool] = mapped_column(Boolean)
    stream_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime | None]
    title: Mapped[str | None] = mapped_column(Text)
    game_name: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # eventsub | reconcile
    changed_at: Mapped[datetime] = _now()
    published_at: Mapped[datetime | None]
    announced: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    __table_args__ = (
        Index(None, "broadcaster_id", "seq"),
        Index("ix_live_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
    )
