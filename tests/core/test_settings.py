"""Settings (CONTRACT.md section 7): defaults, environment parsing, production strictness, and the
development JWT secret kept in the data directory so that tokens survive restarts."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from parley.settings import MIN_SECRET_LENGTH, Settings
from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings

PARLEY_VARIABLES = (
    "PARLEY_DATA_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "ENVIRONMENT",
    "JWT_SECRET",
    "CORS_ORIGINS",
    "MAX_BODY_BYTES",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "RATE_LIMIT_LOGIN_PER_MINUTE",
    "RATE_LIMIT_CHAT_PER_MINUTE",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No Parley variable in the environment, and the working directory a fresh one."""
    for name in PARLEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_defaults(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = Settings(_env_file=None)
    assert settings.environment == "development"
    assert not settings.is_production
    assert settings.data_dir == Path("data")
    expected_db = (tmp_path / "data" / "parley.db").resolve()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{expected_db}"
    assert settings.redis_url is None
    assert settings.cors_origins == []
    assert settings.max_body_bytes == 10 * 1024 * 1024
    assert settings.log_level == "INFO"
    assert settings.effective_log_format == "console"
    assert settings.otel_exporter_otlp_endpoint is None
    assert settings.otel_service_name == "parley"


def test_environment_variables_are_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("PARLEY_DATA_DIR", str(tmp_path / "elsewhere"))
    clean_env.setenv("DATABASE_URL", "postgresql+asyncpg://u@db.example/parley")
    clean_env.setenv("REDIS_URL", "redis://127.0.0.1:6379/3")
    clean_env.setenv("MAX_BODY_BYTES", "4096")
    clean_env.setenv("RATE_LIMIT_LOGIN_PER_MINUTE", "7")
    clean_env.setenv("OTEL_SERVICE_NAME", "parley-eu")
    settings = Settings(_env_file=None)
    assert settings.data_dir == tmp_path / "elsewhere"
    assert settings.effective_database_url == "postgresql+asyncpg://u@db.example/parley"
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert settings.max_body_bytes == 4096
    assert settings.rate_limit_login_per_minute == 7
    assert settings.otel_service_name == "parley-eu"


def test_dotenv_file_is_read(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LOG_FORMAT=json\nMAX_BODY_BYTES=2048\n", encoding="utf-8")
    settings = Settings()
    assert settings.effective_log_format == "json"
    assert settings.max_body_bytes == 2048


def test_cors_origins_are_comma_separated(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("CORS_ORIGINS", "https://a.example, https://b.example,")
    assert Settings(_env_file=None).cors_origins == ["https://a.example", "https://b.example"]


def test_log_level_is_case_insensitive(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOG_LEVEL", "debug")
    assert Settings(_env_file=None).log_level == "DEBUG"
    clean_env.setenv("LOG_LEVEL", "Warning")
    assert Settings(_env_file=None).log_level == "WARNING"
    clean_env.setenv("LOG_LEVEL", "loud")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


@pytest.mark.parametrize("value", ["0", "-5", "lots"])
def test_bad_numbers_are_refused(clean_env: pytest.MonkeyPatch, value: str) -> None:
    clean_env.setenv("MAX_BODY_BYTES", value)
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(_env_file=None)


def test_production_without_a_secret_refuses_to_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="requires JWT_SECRET") as caught:
        Settings(_env_file=None)
    assert f"at least {MIN_SECRET_LENGTH} characters" in str(caught.value)


def test_production_with_a_short_secret_refuses_to_start(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("JWT_SECRET", "x" * (MIN_SECRET_LENGTH - 1))
    with pytest.raises(ValidationError, match="requires JWT_SECRET"):
        Settings(_env_file=None)


def test_production_with_a_good_secret_starts_and_never_writes_one(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = "p" * MIN_SECRET_LENGTH
    clean_env.setenv("ENVIRONMENT", "production")
    clean_env.setenv("JWT_SECRET", secret)
    clean_env.setenv("PARLEY_DATA_DIR", str(tmp_path / "prod-data"))
    settings = Settings(_env_file=None)
    assert settings.is_production
    assert settings.jwt_key == secret
    assert settings.effective_log_format == "json"
    assert not (tmp_path / "prod-data" / "jwt_secret").exists()
    assert secret not in repr(settings)


def test_unknown_environment_is_refused(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="environment"):
        Settings(_env_file=None)


def test_development_secret_is_generated_once_and_kept(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "dev-data"
    first = Settings(_env_file=None, data_dir=data_dir).jwt_key
    secret_file = data_dir / "jwt_secret"
    assert secret_file.read_text(encoding="utf-8").strip() == first
    assert len(first) >= MIN_SECRET_LENGTH
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert Settings(_env_file=None, data_dir=data_dir).jwt_key == first
    assert Settings(_env_file=None, data_dir=tmp_path / "other").jwt_key != first


def test_too_short_stored_secret_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("short\n", encoding="utf-8")
    key = Settings(_env_file=None, data_dir=tmp_path).jwt_key
    assert key != "short"
    assert len(key) >= MIN_SECRET_LENGTH


async def test_tokens_survive_a_restart_with_the_generated_secret(
    database_url: str, tmp_path: Path
) -> None:
    def restartable() -> Settings:
        return make_settings(database_url, tmp_path, jwt_secret=None)

    async with running_app(restartable()) as (_, http):
        registered = await http.post(
            "/api/auth/register",
            json={"email": "restart@example.com", "password": "survives restarts"},
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["data"]["tokens"]["access_token"]

    async with running_app(restartable()) as (_, http):
        me = await http.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.text
    assert me.json()["data"]["email"] == "restart@example.com"

    # A different data directory means a different secret: the old token is refused there.
    elsewhere = make_settings(database_url, tmp_path / "fresh", jwt_secret=None)
    async with running_app(elsewhere) as (_, http):
        refused = await http.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401


def test_workers_starting_at_once_agree_on_the_generated_secret(tmp_path: Path) -> None:
    import threading

    keys: list[str] = []
    barrier = threading.Barrier(8)

    def start_worker() -> None:
        settings = Settings(_env_file=None, data_dir=tmp_path, jwt_secret=None)
        barrier.wait()
        keys.append(settings.jwt_key)

    threads = [threading.Thread(target=start_worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert (tmp_path / "jwt_secret").stat().st_mode & 0o777 == 0o600


def test_a_budget_lease_must_end_well_before_the_sweep(clean_env: pytest.MonkeyPatch) -> None:
    """The sweep would release a lease still serving calls: then they would hold nothing."""
    clean_env.setenv("BUDGET_RESERVATION_TTL_SECONDS", "60")
    clean_env.setenv("BUDGET_LEASE_SECONDS", "31")
    with pytest.raises(ValidationError, match="BUDGET_LEASE_SECONDS must be at most half"):
        Settings(_env_file=None)
    clean_env.setenv("BUDGET_LEASE_SECONDS", "30")
    assert Settings(_env_file=None).budget_lease_seconds == 30
