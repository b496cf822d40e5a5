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


# Server-side bounds on every connection of the web and the workers. The slowest request
# query measured (a 90-day summary of the busiest channel) takes under 0.1 s and a fold
# batch well under a second, so a statement past a minute is stuck, not slow. A
# transaction left idle past two minutes is a holder that went away (or waits on a
# client): PostgreSQL ends its session so its locks and pooled connection come back.
STATEMENT_TIMEOUT_SECONDS = 60.0
IDLE_IN_TRANSACTION_TIMEOUT_SECONDS = 120.0


def create_engine(
    database_url: str,
    *,
    pool_size: int = 5,
    statement_timeout: float | None = STATEMENT_TIMEOUT_SECONDS,
    idle_in_transaction_timeout: float | None = IDLE_IN_TRANSACTION_TIMEOUT_SECONDS,
    **kwargs: object,
) -> AsyncEngine:
    """``None`` for a timeout leaves the server's setting (bulk loads in the benchmarks)."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Logged tracebacks must not carry bound values (tokens, ids, chat text).
        hide_parameters=True,
        connect_args={
            "options": _options(statement_timeout, idle_in_transaction_timeout),
            "connect_timeout": 5,
        },
        **kwargs,
    )


def _options(statement_timeout: float | None, idle_timeout: float | None) -> str:
    # Hour buckets must never depend on a server's TimeZone setting.
    options = ["-c timezone=UTC"]
    if statement_timeout is not None:
        options.append(f"-c statement_timeout={int(statement_timeout * 1000)}")
    if idle_timeout is not None:
        options.append(f"-c idle_in_transaction_session_timeout={int(idle_timeout * 1000)}")
    return " ".join(options)


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
