"""Every knob Parley has, read once from the environment (and `.env`) by pydantic-settings.

Nothing else in the code base reads ``os.environ``: components receive a `Settings` instance. The
table in the README lists each variable with its default; keep the two in step.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIN_SECRET_LENGTH = 32
_JWT_SECRET_FILE = "jwt_secret"


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

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] | None = None

    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "parley"

    rate_limit_login_per_minute: int = Field(default=10, ge=1)
    rate_limit_chat_per_minute: int = Field(default=30, ge=1)

    _split_origins = field_validator("cors_origins", mode="before")(_split_commas)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

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
        if path.exists():
            stored = path.read_text(encoding="utf-8").strip()
            if len(stored) >= MIN_SECRET_LENGTH:
                return stored
        self.data_dir.mkdir(parents=True, exist_ok=True)
        generated = secrets.token_urlsafe(48)
        path.write_text(generated + "\n", encoding="utf-8")
        path.chmod(0o600)
        return generated

    def ensure_data_dir(self) -> None:
        """Create the data directory (SQLite file, secrets) if it does not exist."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
