"""Twitch users and their OAuth tokens, encrypted at rest with MultiFernet.

``TOKEN_ENCRYPTION_KEYS`` is a comma-separated list: the first key encrypts, every key
decrypts, so a new key goes first and the old ones stay until ``rotate_token_keys`` has
re-encrypted every row. The plaintext never reaches the database or a log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from schema.errors import ConfigurationError
from schema.settings import Settings
from schema.twitch.models import UserTokens

# Twitch omits expires_in in one refresh example; assume its usual few hours.
DEFAULT_LIFETIME = timedelta(hours=4)

# What a token pair was granted for: a streamer login's and the bot's are separate rows,
# so a streamer login never counts as (or overwrites) the bot's authorization.
TokenRole = Literal["streamer", "bot"]


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ConfigurationError("TOKEN_ENCRYPTION_KEYS is required to store Twitch tokens")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenCipher:
        return cls(settings.fernet_keys)

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored token cannot be decrypted with TOKEN_ENCRYPTION_KEYS "
                "(was a key removed before rotate-token-keys ran?)"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        return self._fernet.rotate(ciphertext)


@dataclass(frozen=True, slots=True)
class StoredTokens:
    user_id: str
    role: TokenRole
    access_token: str
    refresh_token: str
    scopes: tuple[str, ...]
    expires_at: datetime
    validated_at: datetime | None


_UPSERT_USER = text("""
    INSERT INTO twitch_users (id, login, display_name, is_bot)
    VALUES (:id, :login, :name, :is_bot)
    ON CONFLICT (id) DO UPDATE
        SET login = excluded.login, display_name = excluded.display_name,
            is_bot = twitch_users.is_bot OR excluded.is_bot, updated_at = now()
""")

_UPSERT_TOKENS = text("""
    INSERT INTO oauth_tokens (user_id, role, access_token, refresh_token, scopes, expires_at,
                              validated_at, updated_at)
    VALUES (:user_id, :role, :access, :refresh, :scopes, :expires_at, :validated_at, now())
    ON CONFLICT (user_id, role) DO UPDATE
        SET access_token = excluded.access_token, refresh_token = excluded.refresh_token,
            scopes = excluded.scopes, expires_at = excluded.expires_at,
            validated_at = coalesce(excluded.validated_at, oauth_tokens.validated_at),
            updated_at = now()
""")


async def store_user(
    session: AsyncSession, user_id: str, login: str, display_name: str, *, is_bot: bool = False
) -> None:
    await session.execute(
        _UPSERT_USER, {"id": user_id, "login": login, "name": display_name, "is_bot": is_bot}
    )


async def store_tokens(
    session: AsyncSession,
    cipher: TokenCipher,
    user_id: str,
    tokens: UserTokens,
    *,
    role: TokenRole,
    now: datetime,
    validated: bool = False,
) -> None:
    """Store a token pair, replacing the old one in one statement: Twitch may rotate the
    refresh token on every refresh (PROTOCOL.md 5.5), so half an update would lose it."""
    lifetime = (
        timedelta(seconds=tokens.expires_in) if tokens.expires_in is not None else DEFAULT_LIFETIME
    )
    await session.execute(
        _UPSERT_TOKENS,
        {
            "user_id": user_id,
            "role": role,
            "access": cipher.encrypt(tokens.access_token),
            "refresh": cipher.encrypt(tokens.refresh_token),
            "scopes": list(tokens.scopes),
            "expires_at": now + lifetime,
            "validated_at": now if validated else None,
        },
    )


async def load_tokens(
    session: AsyncSession, cipher: TokenCipher, user_id: str, role: TokenRole
) -> StoredTokens | None:
    row = (
        await session.execute(
            text("""SELECT user_id, role, access_token, refresh_token, scopes, expires_at,
                           validated_at
                    FROM oauth_tokens WHERE user_id = :u AND role = :r"""),
            {"u": user_id, "r": role},
        )
    ).first()
    if row is None:
        return None
    return StoredTokens(
        user_id=row.user_id,
        role=row.role,
        access_token=cipher.decrypt(row.access_token),
        refresh_token=cipher.decrypt(row.refresh_token),
        scopes=tuple(row.scopes or ()),
        expires_at=row.expires_at,
        validated_at=row.validated_at,
    )


async def mark_validated(
    session: AsyncSession, user_id: str, role: TokenRole, at: datetime
) -> None:
    await session.execute(
        text("UPDATE oauth_tokens SET validated_at = :at WHERE user_id = :u AND role = :r"),
        {"u": user_id, "r": role, "at": at},
    )


async def purge_tokens(session: AsyncSession, user_id: str, role: TokenRole | None = None) -> None:
    """Forget the user's tokens of ``role``, or of every role: an authorization that ended
    at Twitch (revoked, refresh refused) ends all of them, the bot role with them."""
    if role is None:
        await session.execute(text("DELETE FROM oauth_tokens WHERE user_id = :u"), {"u": user_id})
        return
    await session.execute(
        text("DELETE FROM oauth_tokens WHERE user_id = :u AND role = :r"),
        {"u": user_id, "r": role},
    )


async def connected_bot_id(session: AsyncSession, bot_user_id: str | None) -> str | None:
    """The bot account chat subscriptions name as ``user_id``: the account holding the
    bot's tokens, and only ``bot_user_id`` when that is configured (``BOT_USER_ID``). A
    streamer login's tokens never count, and the role ends with the bot's tokens. Unset
    (a local run), the earliest to connect wins should two ever hold bot tokens, so the
    choice never flips on a token refresh."""
    if bot_user_id is not None:
        held = await session.scalar(
            text("SELECT user_id FROM oauth_tokens WHERE user_id = :u AND role = 'bot'"),
            {"u": bot_user_id},
        )
        return None if held is None else str(held)
    return (
        await session.execute(
            text("""SELECT u.id FROM twitch_users u
                    JOIN oauth_tokens t ON t.user_id = u.id AND t.role = 'bot'
                    ORDER BY u.created_at, u.id LIMIT 1""")
        )
    ).scalar()


async def token_roles(session: AsyncSession, user_id: str) -> list[TokenRole]:
    """The roles the user holds tokens for, streamer first."""
    rows = await session.execute(
        text("SELECT role FROM oauth_tokens WHERE user_id = :u ORDER BY role DESC"),
        {"u": user_id},
    )
    return list(rows.scalars())


async def rotate_token_keys(session: AsyncSession, cipher: TokenCipher) -> int:
    """Re-encrypt every stored token with the first key; returns the rows rewritten."""
    rows = (
        await session.execute(
            text("SELECT user_id, role, access_token, refresh_token FROM oauth_tokens FOR UPDATE")
        )
    ).all()
    for row in rows:
        try:
            access, refresh = cipher.rotate(row.access_token), cipher.rotate(row.refresh_token)
        except InvalidToken:
            raise ConfigurationError(
                f"tokens of user {row.user_id} match none of TOKEN_ENCRYPTION_KEYS"
            ) from None
        await session.execute(
            text("""UPDATE oauth_tokens SET access_token = :a, refresh_token = :r
                    WHERE user_id = :u AND role = :role"""),
            {"a": access, "r": refresh, "u": row.user_id, "role": row.role},
        )
    return len(rows)
