"""One async engine and sessionmaker per process, made at start-up and passed down."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

# SQLSTATEs worth retrying: serialization failure, deadlock, and the connection classes
# (08xxx), admin shutdown (57P01-03), too many connections (53300), read-only (25006).
_TRANSIENT_SQLSTATES = {"40001", "40P01", "53300", "55P03", "57P01", "57P02", "57P03", "25006"}


def create_engine(database_url: str, *, pool_size: int = 5, **kwargs: object) -> AsyncEngine:
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Hour buckets must never depend on a server's TimeZone setting.
        connect_args={"options": "-c timezone=UTC", "connect_timeout": 5},
        **kwargs,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def is_transient(exc: BaseException) -> bool:
    """True when retrying the same transaction later may succeed (outage, deadlock)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    if isinstance(exc, DBAPIError):
        state = getattr(exc.orig, "sqlstate", None) or ""
        return state in _TRANSIENT_SQLSTATES or state.startswith("08")
    return isinstance(exc, ConnectionError | TimeoutError | OSError)
