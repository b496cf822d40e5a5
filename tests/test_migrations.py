"""Migrations and models agree, and the migrations run both ways."""

from __future__ import annotations

import psycopg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from alembic import command
from schema.tables import Base
from streamfold.migrate import alembic_config
from tests.conftest import _libpq


def test_models_match_the_migrated_schema(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_upgrade_again(database_url: str) -> None:
    config = alembic_config(database_url)
    command.downgrade(config, "base")
    with psycopg.connect(_libpq(database_url)) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert [t for (t,) in tables] == ["alembic_version"]
    command.upgrade(config, "head")
    engine = create_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_existing_tokens_get_the_role_their_scopes_show(database_url: str) -> None:
    """Before per-role tokens, a former bot's streamer login shared the bot's row: only
    a row that still carries the bot's scopes becomes the bot's."""
    config = alembic_config(database_url)
    command.downgrade(config, "0003")
    with psycopg.connect(_libpq(database_url)) as conn:
        conn.execute(
            """INSERT INTO twitch_users (id, login, display_name, is_bot) VALUES
               ('1', 'bot', 'Bot', true), ('2', 'former', 'Former', true),
               ('3', 'streamer', 'Streamer', false)"""
        )
        conn.execute(
            """INSERT INTO oauth_tokens (user_id, access_token, refresh_token, scopes, expires_at)
               VALUES ('1', 'a', 'r', '{user:read:chat,user:bot}', now()),
                      ('2', 'a', 'r', '{channel:bot}', now()),
                      ('3', 'a', 'r', '{channel:bot}', now())"""
        )
    command.upgrade(config, "head")
    with psycopg.connect(_libpq(database_url)) as conn:
        roles = conn.execute("SELECT user_id, role FROM oauth_tokens ORDER BY 1").fetchall()
    assert roles == [("1", "bot"), ("2", "streamer"), ("3", "streamer")]
