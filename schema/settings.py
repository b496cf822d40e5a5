"""The one settings object, read from the environment once at process start.

Deep code never reads ``os.environ``: processes build ``Settings()`` and pass it down;
tests build their own ``Settings(...)``.
"""

from __future__ import annotations

from functools import cached_property
from ipaddress import ip_address
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schema.errors import ConfigurationError

_PSYCOPG_SCHEMES = ("postgres://", "postgresql://", "postgresql+psycopg://")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    database_url: str | None = None
    redis_url: str | None = None
    twitch_client_id: str | None = None
    twitch_client_secret: SecretStr | None = None
    eventsub_secret: SecretStr | None = None
    eventsub_secret_previous: SecretStr | None = None
    public_base_url: str | None = None
    token_encryption_keys: SecretStr | None = None
    session_secret: SecretStr | None = None
    twitch_api_base: str = "https://api.twitch.tv/helix"
    twitch_auth_base: str = "https://id.twitch.tv/oauth2"
    reconcile_interval_seconds: int = Field(default=300, ge=10, le=86_400)
    port: int = Field(default=8000, ge=1, le=65_535)
    collect_top_streams: int = Field(default=100, ge=0, le=1_000)
    public_rate_limit: int = Field(default=120, ge=1, le=100_000)
    live_batch_seconds: float = Field(default=1.0, ge=0, le=60)

    # Operational knobs beyond PRODUCT.md's table; defaults are what production wants.
    log_format: Literal["json", "console"] = "json"
    queue_name: str = "arq:queue"
    # Fold queue shards: the receiver routes each channel's deliveries to one, and each
    # shard is folded by one worker at a time (the one holding its lease), so workers
    # never contend on a channel's rows. Receiver and workers must agree; set it to a
    # few times the most workers you will run. Lower it only once the dropped shards'
    # queues are empty (``streamfold status``): nothing polls a shard beyond it.
    fold_shards: int = Field(default=1, ge=1, le=1_024)
    # A worker renews its shard leases every third of this; a dead worker's shards move
    # to the others after at most this long.
    fold_shard_lease_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    operator_user_ids: str = ""
    # The one Twitch account whose chat subscriptions read every channel (role=bot).
    # Required unless PUBLIC_BASE_URL is a loopback address (a local run), where the
    # first account to connect as bot is it, until its authorization ends.
    bot_user_id: str | None = None
    # Ensure the app-wide user.authorization.revoke subscription when the receiver starts.
    eventsub_ensure_at_startup: bool = True
    # Answer challenges for subscriptions streamfold did not create (the Twitch CLI's
    # verify-subscription invents them). Only `streamfold dev` turns this on.
    eventsub_accept_any_challenge: bool = False
    # Origins of frontends allowed to call /api/* with credentials (comma-separated).
    cors_allowed_origins: str = ""
    # Reconciliation closes a session on Helix's word only once it is this old: Helix
    # lists a new stream about a minute late (PROTOCOL.md 6.6).
    reconcile_grace_seconds: int = Field(default=600, ge=0, le=86_400)
    # Peers (addresses, comma-separated) whose X-Forwarded-For names the client of the
    # public routes' rate limit; empty: the connecting address is the client.
    trusted_proxies: str = ""
    # Connections per pool: the web has one, each arq worker of a process one of its own
    # (as many again may overflow briefly).
    database_pool_size: int = Field(default=5, ge=1, le=100)
    redis_max_connections: int = Field(default=64, ge=4, le=10_000)
    # SIGTERM: the web finishes requests in flight for this long; a worker lets running
    # jobs finish for this long, then cancels the rest (arq puts them back on the queue).
    web_shutdown_grace_seconds: int = Field(default=20, ge=1, le=600)
    worker_shutdown_grace_seconds: int = Field(default=20, ge=0, le=600)
    # The worker serves Prometheus metrics on this port (0: not at all).
    worker_metrics_port: int = Field(default=9100, ge=0, le=65_535)
    # Put before the live-status pub/sub channel names (stream.follow, streams.online, ...)
    # when deployments share one Redis; empty: the exact names the tracker format uses.
    live_channel_prefix: str = Field(default="", max_length=64)
    # How many channels one signed-in user may follow (POST /api/follows answers 422 past it).
    follow_limit: int = Field(default=100, ge=0, le=10_000)
    # Raw rows (per-message chat rows, job runs) are kept this many days, the message-id
    # ledger this many (it only has to outlast a queue wait plus Twitch's redeliveries);
    # aggregates are kept forever (README "Data lifecycle").
    retention_days: int = Field(default=90, ge=1, le=36_500)
    ledger_retention_days: int = Field(default=7, ge=1, le=36_500)
    # Two deliveries of one id (or two of one chat message) are recognised as one while
    # their timestamps are less than this apart; at most a day (schema/partitions.py).
    dedupe_horizon_seconds: int = Field(default=3600, ge=1, le=86_400)

    @field_validator("database_url")
    @classmethod
    def _psycopg_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        for scheme in _PSYCOPG_SCHEMES:
            if value.startswith(scheme):
                return "postgresql+psycopg://" + value[len(scheme) :]
        raise ValueError("must start with postgres://, postgresql:// or postgresql+psycopg://")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("eventsub_secret", "eventsub_secret_previous")
    @classmethod
    def _eventsub_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value() == "":
            return None
        secret = value.get_secret_value()
        # Twitch refuses a subscription whose secret is not 10-100 ASCII characters.
        if not secret.isascii() or not 10 <= len(secret) <= 100:
            raise ValueError("must be 10 to 100 ASCII characters")
        return value

    @field_validator("token_encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or value.get_secret_value().strip() == "":
            return None
        for key in value.get_secret_value().split(","):
            try:
                Fernet(key.strip())
            except ValueError as exc:
                raise ValueError("each comma-separated key must be a Fernet key") from exc
        return value

    @field_validator("cors_allowed_origins")
    @classmethod
    def _cors_origins(cls, value: str) -> str:
        for origin in (o.strip() for o in value.split(",") if o.strip()):
            # Credentials are allowed: a wildcard would let any site read a user's data.
            if origin == "*" or not origin.startswith(("http://", "https://")):
                raise ValueError("list exact origins like https://app.example; '*' is refused")
        return value

    @field_validator("public_base_url", "twitch_api_base", "twitch_auth_base")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("bot_user_id")
    @classmethod
    def _bot_user_id(cls, value: str | None) -> str | None:
        if value is None or value.strip() == "":
            return None
        return value.strip()

    @model_validator(mode="after")
    def _default_public_url(self) -> Settings:
        if self.public_base_url is None:
            object.__setattr__(self, "public_base_url", f"http://127.0.0.1:{self.port}")
        return self

    @model_validator(mode="after")
    def _bot_named_when_public(self) -> Settings:
        # Every channel's chat subscription names the bot: on a reachable deployment the
        # role must not go to whichever account signs in as bot first.
        if self.bot_user_id is None and not self.is_local:
            raise ValueError(
                "BOT_USER_ID is required when PUBLIC_BASE_URL is not a loopback address "
                "(set it to the Twitch user id of the chat bot account)"
            )
        return self

    @property
    def is_local(self) -> bool:
        """PUBLIC_BASE_URL is this machine only (``streamfold dev``, tests): Twitch could
        not deliver webhooks here, so this is no deployment anyone else can reach."""
        host = urlsplit(self.public_base_url or "").hostname or ""
        if host == "localhost":
            return True
        try:
            return ip_address(host).is_loopback
        except ValueError:
            return False

    # -- derived values -------------------------------------------------------------

    @cached_property
    def eventsub_secrets(self) -> tuple[bytes, ...]:
        """Secrets a notification may be signed with: current first, then the previous."""
        secrets = [
            s.get_secret_value().encode("ascii")
            for s in (self.eventsub_secret, self.eventsub_secret_previous)
            if s is not None
        ]
        return tuple(secrets)

    @property
    def callback_url(self) -> str:
        return f"{self.public_base_url}/eventsub/callback"

    @property
    def oauth_redirect_url(self) -> str:
        return f"{self.public_base_url}/auth/twitch/callback"

    @cached_property
    def fernet_keys(self) -> tuple[str, ...]:
        if self.token_encryption_keys is None:
            return ()
        return tuple(k.strip() for k in self.token_encryption_keys.get_secret_value().split(","))

    @cached_property
    def cors_origins(self) -> tuple[str, ...]:
        return tuple(
            o.strip().rstrip("/") for o in self.cors_allowed_origins.split(",") if o.strip()
        )

    @cached_property
    def operator_ids(self) -> frozenset[str]:
        return frozenset(i.strip() for i in self.operator_user_ids.split(",") if i.strip())

    @property
    def trusted_proxy_addresses(self) -> frozenset[str]:
        return frozenset(a.strip() for a in self.trusted_proxies.split(",") if a.strip())

    def require(self, *names: str) -> None:
        """Fail with one clear message naming every missing variable a process needs."""
        missing = [n.upper() for n in names if getattr(self, n) is None]
        if missing:
            raise ConfigurationError(f"missing environment variable(s): {', '.join(missing)}")


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment, turning validation errors into one message."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
