"""Every knob Parley has, read once from the environment (and `.env`) by pydantic-settings.

Nothing else in the code base reads ``os.environ``: components receive a `Settings` instance. The
table in the README lists each variable with its default; keep the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from parley.accounts.issuer_config import (
    DEFAULT_ALGORITHMS,
    IssuerConfig,
    IssuerConfigError,
    resolve_issuers,
)

MIN_SECRET_LENGTH = 32
_JWT_SECRET_FILE = "jwt_secret"
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
DEFAULT_MCP_ALLOWED_HOSTS = tuple(
    host + suffix for host in _LOOPBACK_HOSTS for suffix in ("", ":*")
)
DEFAULT_MCP_ALLOWED_ORIGINS = tuple(f"http://{host}" for host in DEFAULT_MCP_ALLOWED_HOSTS)


class SettingsError(ValueError):
    """The configuration cannot be used (for example, production without a JWT secret)."""


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


class Settings(BaseSettings):
    """Parley's configuration. Field names match the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    environment: Literal["development", "production"] = "development"
    data_dir: Path = Field(default=Path("./data"), validation_alias="PARLEY_DATA_DIR")
    database_url: str | None = None
    redis_url: str | None = None

    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)

    jwt_secret: SecretStr | None = None
    access_token_ttl_seconds: int = Field(default=900, ge=10)
    refresh_token_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    # A caller read lately is served from memory this long (see parley.accounts.caller_cache).
    auth_cache_seconds: float = Field(default=2.0, ge=0, le=60)
    # External issuers (docs/api.md "External identity providers"): bearer JWTs signed by an
    # issuer's keys (its JWKS), accepted like Parley's own access tokens. The keys are kept this
    # long, refetched at most once a cool-down (an unknown `kid` asks again, never more often).
    auth_issuer: str | None = None
    auth_jwks_url: str | None = None
    auth_audience: Annotated[list[str], NoDecode] = Field(default_factory=list)
    auth_algorithms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALGORITHMS)
    )
    auth_issuers_file: Path | None = None
    auth_clock_skew_seconds: int = Field(default=60, ge=0, le=300)
    auth_jwks_cache_seconds: float = Field(default=600.0, ge=30, le=86_400)
    auth_jwks_cooldown_seconds: float = Field(default=30.0, ge=1, le=3600)

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # How long `parley serve` keeps an idle keep-alive connection open. Longer than clients' and
    # load balancers' own idle timeouts (httpx 5 s, AWS ALB 60 s), so that a client never sends a
    # request on a connection the server is closing at that moment (the client sees a reset).
    http_keep_alive_seconds: int = Field(default=75, ge=1)
    # The proxies whose X-Forwarded-For and X-Forwarded-Proto `parley serve` believes (uvicorn's
    # `forwarded_allow_ips` and its default: addresses, networks, or `*` for any);
    # `--forwarded-allow-ips` overrides it. The client address is what sign-in limits count by.
    forwarded_allow_ips: str = "127.0.0.1,::1"

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] | None = None

    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "parley"

    rate_limit_login_per_minute: int = Field(default=10, ge=1)
    rate_limit_chat_per_minute: int = Field(default=30, ge=1)
    rate_limit_v1_per_minute: int = Field(default=60, ge=1)

    # Budgets (README "Usage and budgets"): the monthly budget of users without their own (None:
    # unlimited); what a request reserves while it runs (its prompt plus this many output tokens
    # when it names no `max_tokens`), and how long a reservation whose request never settled it
    # (its worker died) holds before the sweep releases it. A worker serves a user's `/v1` holds
    # from a lease of this many calls' estimates (0: every call holds on its own), taken for new
    # calls during this many seconds (see parley.usage.leases).
    # The same bounds as an admin's budget (a user's column) and a call's `max_tokens`.
    default_monthly_budget_usd: Decimal | None = Field(
        default=None, ge=0, max_digits=14, decimal_places=6
    )
    budget_reserve_output_tokens: int = Field(default=1024, ge=0, le=1_000_000)
    budget_reservation_ttl_seconds: int = Field(default=3600, ge=60)
    budget_lease_calls: int = Field(default=32, ge=0, le=10_000)
    budget_lease_seconds: float = Field(default=10.0, gt=0, le=300)
    # A /v1 call's usage record (and its settle) is written with the others that end within
    # this many milliseconds, after its response (this worker's usage reads wait for it).
    usage_write_delay_ms: int = Field(default=100, ge=0, le=5000)

    # The streaming turn: steps per reply (model calls), how often a growing reply is saved, the
    # heartbeat that tells a live reply from one whose worker died, and how long a finished
    # reply's events stay available for resumes and idempotent retries.
    agent_max_steps: int = Field(default=8, ge=1, le=50)
    stream_save_interval_ms: int = Field(default=500, ge=50, le=60_000)
    generation_heartbeat_seconds: float = Field(default=5.0, gt=0)
    generation_stale_seconds: float = Field(default=30.0, gt=0)
    stream_retention_seconds: int = Field(default=300, ge=1)
    # How often freed C-heap memory is given back to the OS (0: never; see parley.core.memory).
    memory_trim_interval_seconds: float = Field(default=60.0, ge=0)

    # Background jobs (docs/operations.md "Workers"): `parley serve` runs a worker in-process
    # unless WORKER_IN_PROCESS is false; a worker runs this many jobs at once. A running job's
    # lease is renewed every third of JOB_LEASE_SECONDS; a job whose worker died is taken again
    # once its lease has expired. Without PostgreSQL's LISTEN/NOTIFY (or another process's
    # enqueues on SQLite) a worker looks for due jobs every JOB_POLL_SECONDS. At SIGTERM a
    # worker lets its jobs finish for WORKER_SHUTDOWN_SECONDS, then puts the rest back in the
    # queue. Finished jobs are deleted after JOB_RETENTION_DAYS.
    worker_in_process: bool = True
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    job_lease_seconds: float = Field(default=30.0, ge=3, le=3600)
    job_poll_seconds: float = Field(default=1.0, ge=0.05, le=60)
    worker_shutdown_seconds: float = Field(default=20.0, ge=0, le=3600)
    job_retention_days: int = Field(default=7, ge=1, le=3650)

    # Events (docs/events.md): delivered events are kept this long (the feed resumes within it).
    events_retention_days: int = Field(default=7, ge=1, le=3650)
    # The audit log's lines are kept this long; 0 keeps them for good.
    audit_retention_days: int = Field(default=365, ge=0, le=36500)
    # Where the relay delivers events and the consumers read them: `none` (consumer jobs on
    # this database), `redis://`, `nats://`, `amqp://`, `kafka://host:port` or `dapr` (the
    # sidecar at DAPR_HTTP_ENDPOINT, pub/sub component DAPR_PUBSUB_NAME).
    events_broker: str = "none"
    events_topic: str = Field(
        default="parley.events",
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    )
    dapr_http_endpoint: str = "http://127.0.0.1:3500"
    dapr_pubsub_name: str = Field(
        default="pubsub", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
    )
    # Sent to the sidecar as `dapr-api-token` (the sidecar's DAPR_API_TOKEN).
    dapr_api_token: SecretStr | None = None
    # What the sidecar must send on its deliveries (its APP_API_TOKEN); unset: loopback only.
    dapr_app_api_token: SecretStr | None = None

    # Files and knowledge (docs/knowledge.md). Stored bytes live under PARLEY_DATA_DIR/files.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, le=10 * 1024**3)
    user_storage_quota_bytes: int = Field(default=1024**3, ge=1024, le=10 * 1024**4)
    extraction_max_pages: int = Field(default=2000, ge=1, le=100_000)
    extraction_max_chars: int = Field(default=5_000_000, ge=1000, le=100_000_000)
    extraction_timeout_seconds: float = Field(default=300.0, ge=5, le=3600)
    # Files are read in child processes (`parley.knowledge.extractor`): how many at once, and
    # each one's address-space cap (0: none).
    extraction_processes: int = Field(default=2, ge=1, le=64)
    extraction_memory_bytes: int = Field(default=2 * 1024**3, ge=0, le=1024**4)

    # The address the server listens on: `parley serve --host` sets it for its workers. Unset
    # (the app built some other way) counts as loopback, where the MCP allowlists' defaults apply.
    serve_host: str | None = Field(default=None, validation_alias="PARLEY_SERVE_HOST")

    # MCP server (/mcp). The Host and Origin values its DNS-rebinding protection accepts (`name:*`
    # allows any port): when unset, the loopback names while the server listens on loopback, and
    # any otherwise (as the SDK's own `streamable_http_app` does); bearer auth is required anyway.
    mcp_allowed_hosts: Annotated[list[str] | None, NoDecode] = None
    mcp_allowed_origins: Annotated[list[str] | None, NoDecode] = None
    # Stateless (the default), every request stands alone and any worker serves it. Otherwise
    # sessions live in the memory of the worker that opened them, capped per user and in all,
    # and end after this long without a request in flight.
    mcp_stateless: bool = True
    mcp_max_sessions: int = Field(default=1000, ge=1)
    mcp_max_sessions_per_user: int = Field(default=10, ge=1)
    mcp_session_idle_seconds: float = Field(default=600.0, gt=0, le=86_400)

    # Model providers and the catalog (README "Models and providers"). A provider counts as
    # configured when its key is set (the OpenAI-compatible one also by its base URL alone, as
    # local servers need no key); an empty `*_MODELS` means "ask the server" at start-up.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    anthropic_api_key: SecretStr | None = None
    anthropic_base_url: str | None = None
    anthropic_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    gemini_api_key: SecretStr | None = None
    gemini_base_url: str | None = None
    gemini_models: Annotated[list[str], NoDecode] = Field(default_factory=list)
    models_file: Path | None = Field(default=None, validation_alias="PARLEY_MODELS_FILE")
    default_model: str | None = None
    # How long a worker serves the catalog from memory before reading it again (its own changes
    # are seen at once; another worker's within this).
    catalog_cache_seconds: float = Field(default=5.0, ge=0, le=3600)
    # A catalog id that answers a chat turn when its model fails (after the provider's retries).
    fallback_model: str | None = None
    offline_model_delay_ms: int = Field(default=20, ge=0, le=10_000)
    provider_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    provider_read_timeout_seconds: float = Field(default=120.0, gt=0)
    provider_max_retries: int = Field(default=2, ge=0, le=10)
    # Embeddings (docs/configuration.md "Embeddings"): the catalog id of the embedding model the
    # knowledge base uses (start-up checks it against the providers and the models file), and the
    # CPU threads of the offline embedder (`offline:embed`).
    embedding_model: str = Field(default="offline:embed", max_length=200)
    embedding_threads: int = Field(default=1, ge=1, le=64)

    _split_origins = field_validator("cors_origins", mode="before")(_split_commas)
    _split_auth_lists = field_validator("auth_audience", "auth_algorithms", mode="before")(
        _split_commas
    )
    _split_model_lists = field_validator(
        "openai_models", "anthropic_models", "gemini_models", mode="before"
    )(_split_commas)

    @field_validator("mcp_allowed_hosts", "mcp_allowed_origins", mode="before")
    @classmethod
    def _split_mcp_lists(cls, value: object) -> object:
        value = _split_commas(value)
        return value or None  # an empty list is no allowlist at all: the default applies

    @field_validator("embedding_model")
    @classmethod
    def _check_embedding_model(cls, value: str) -> str:
        value = value.strip()
        provider, _, name = value.partition(":")
        if provider == "offline" and value != "offline:embed":
            raise ValueError(f"{value} is not an embedding model; the offline one is offline:embed")
        if provider == "anthropic":
            raise ValueError("Anthropic offers no embedding models")
        if provider not in ("offline", "openai", "gemini") or not name or name != name.split()[0]:
            raise ValueError(
                "must be the catalog id of an embedding model: offline:embed, openai:<model> "
                "or gemini:<model>"
            )
        return value

    @field_validator("events_broker")
    @classmethod
    def _check_events_broker(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("none", "dapr"):
            return value.lower()
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in ("redis", "rediss", "nats", "tls", "amqp", "amqps", "kafka"):
            raise ValueError(
                "EVENTS_BROKER is none, dapr, or a redis://, nats://, amqp:// or kafka:// URL"
            )
        return value

    @field_validator("extraction_memory_bytes")
    @classmethod
    def _check_extraction_memory(cls, value: int) -> int:
        # Below this a reader's child cannot even import pypdf and python-docx.
        if 0 < value < 256 * 1024**2:
            raise ValueError("must be 0 (no cap) or at least 268435456 (256 MiB)")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_budget_lease(self) -> Settings:
        # The sweep releases reservations older than the TTL: a lease still serving calls then
        # would hold nothing in the database.
        if self.budget_lease_seconds * 2 > self.budget_reservation_ttl_seconds:
            raise SettingsError(
                "BUDGET_LEASE_SECONDS must be at most half of BUDGET_RESERVATION_TTL_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _check_issuers(self) -> Settings:
        try:
            self.__dict__["external_issuers"] = self._resolve_issuers()
        except IssuerConfigError as exc:
            raise SettingsError(str(exc)) from exc
        return self

    def _resolve_issuers(self) -> tuple[IssuerConfig, ...]:
        return resolve_issuers(
            issuer=self.auth_issuer,
            jwks_url=self.auth_jwks_url,
            audience=self.auth_audience,
            algorithms=self.auth_algorithms,
            issuers_file=self.auth_issuers_file,
            production=self.environment == "production",
        )

    @cached_property
    def external_issuers(self) -> tuple[IssuerConfig, ...]:
        """The external issuers whose JWTs are accepted, checked at start-up (the validator
        above fills this in, so that a bad issuers file stops the start)."""
        return self._resolve_issuers()

    @model_validator(mode="after")
    def _check_production(self) -> Settings:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if len(secret) < MIN_SECRET_LENGTH:
                raise SettingsError(
                    "ENVIRONMENT=production requires JWT_SECRET of at least "
                    f"{MIN_SECRET_LENGTH} characters (generate one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
        return self

    @property
    def is_production(self) -> bool:
        """Whether the strict production rules apply."""
        return self.environment == "production"

    @property
    def effective_database_url(self) -> str:
        """`DATABASE_URL`, or a SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'parley.db').resolve()}"

    @property
    def serves_loopback_only(self) -> bool:
        """Whether the server listens on a loopback address only (`PARLEY_SERVE_HOST` unset
        counts as loopback: an app built without `parley serve` keeps the strict defaults)."""
        if self.serve_host is None:
            return True
        name = self.serve_host.strip().strip("[]").lower()
        if name == "localhost":
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False  # a host name other than localhost, resolved by the server

    @property
    def effective_mcp_allowed_hosts(self) -> list[str] | None:
        """The `Host` values `/mcp` accepts; None accepts any."""
        if self.mcp_allowed_hosts is not None:
            return self.mcp_allowed_hosts
        return list(DEFAULT_MCP_ALLOWED_HOSTS) if self.serves_loopback_only else None

    @property
    def effective_mcp_allowed_origins(self) -> list[str] | None:
        """The `Origin` values `/mcp` accepts (a request without one is not checked); None
        accepts any."""
        if self.mcp_allowed_origins is not None:
            return self.mcp_allowed_origins
        return list(DEFAULT_MCP_ALLOWED_ORIGINS) if self.serves_loopback_only else None

    @property
    def effective_log_format(self) -> Literal["json", "console"]:
        """JSON logs in production, readable lines in development, unless `LOG_FORMAT` says."""
        if self.log_format:
            return self.log_format
        return "json" if self.is_production else "console"

    @cached_property
    def jwt_key(self) -> str:
        """The key that signs tokens.

        `JWT_SECRET` when set; in development, a secret generated once and kept in the data
        directory so that tokens survive restarts. Production never generates one (the validator
        above refuses to start without it).
        """
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        path = self.data_dir / _JWT_SECRET_FILE
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            if path.exists():
                stored = path.read_text(encoding="utf-8").strip()
                if len(stored) >= MIN_SECRET_LENGTH:
                    return stored
                path.unlink(missing_ok=True)  # a damaged or too short secret: start afresh
            generated = secrets.token_urlsafe(48)
            # Written whole, private, under a name of its own, then linked into place: the link
            # fails if the file exists, so of several workers starting at once exactly one
            # secret wins, and no reader ever sees a half-written file.
            draft = self.data_dir / f".{_JWT_SECRET_FILE}.{secrets.token_hex(8)}"
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(generated + "\n")
            try:
                os.link(draft, path)
            except FileExistsError:
                continue  # another worker won: read its secret
            finally:
                draft.unlink(missing_ok=True)
            return generated
        raise SettingsError(f"cannot keep a secret in {path}; set JWT_SECRET")

    def ensure_data_dir(self) -> None:
        """Create the data directory (SQLite file, secrets) if it does not exist."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
