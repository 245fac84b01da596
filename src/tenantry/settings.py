"""Every environment variable Tenantry reads, typed, in one place.

Values come from the environment first, then from a `.env` file in the working
directory. `load_settings()` turns pydantic's validation errors into one
`ConfigError` line per bad variable, naming it and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

StorageProvider = Literal["local", "s3", "cloudflare-r2"]


class ConfigError(Exception):
    """The configuration cannot start the service; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- service -------------------------------------------------------------
    data_dir: Path = Field(
        Path("./data"),
        validation_alias="TENANTRY_DATA_DIR",
        description="Where the embedded defaults keep their files (SQLite, generated keys).",
    )
    host: str = Field("127.0.0.1", validation_alias="TENANTRY_HOST")
    port: int = Field(5000, ge=1, le=65535, validation_alias="TENANTRY_PORT")
    admin_token: SecretStr | None = Field(None, validation_alias="TENANTRY_ADMIN_TOKEN")
    secret_key: SecretStr | None = Field(None, validation_alias="TENANTRY_SECRET_KEY")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="TENANTRY_LOG_LEVEL"
    )
    metrics_public: bool = Field(False, validation_alias="TENANTRY_METRICS_PUBLIC")
    auto_migrate: bool = Field(True, validation_alias="TENANTRY_AUTO_MIGRATE")

    # --- database ------------------------------------------------------------
    database_url: str | None = Field(None, validation_alias="DATABASE_URL")

    # --- redis ---------------------------------------------------------------
    redis_url: str | None = Field(None, validation_alias="REDIS_URL")
    redis_host: str | None = Field(None, validation_alias="REDIS_HOST")
    redis_port: int = Field(6379, ge=1, le=65535, validation_alias="REDIS_PORT")
    redis_password: SecretStr | None = Field(None, validation_alias="REDIS_PASSWORD")

    # --- jobs ----------------------------------------------------------------
    enable_job_queues: bool = Field(True, validation_alias="ENABLE_JOB_QUEUES")

    # --- storage -------------------------------------------------------------
    storage_provider: StorageProvider = Field("local", validation_alias="STORAGE_PROVIDER")
    upload_dir: Path = Field(Path("./uploads"), validation_alias="UPLOAD_DIR")
    cdn_base_url: str | None = Field(None, validation_alias="CDN_BASE_URL")
    aws_s3_bucket: str | None = Field(None, validation_alias="AWS_S3_BUCKET")
    aws_region: str = Field("us-east-1", validation_alias="AWS_REGION")
    aws_access_key_id: str | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    aws_secret_access_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias="AWS_ENDPOINT_URL",
        description="An S3-compatible endpoint instead of AWS (MinIO, SeaweedFS).",
    )
    cloudflare_account_id: str | None = Field(None, validation_alias="CLOUDFLARE_ACCOUNT_ID")
    cloudflare_r2_bucket: str | None = Field(None, validation_alias="CLOUDFLARE_R2_BUCKET")
    cloudflare_r2_access_key_id: str | None = Field(
        None, validation_alias="CLOUDFLARE_R2_ACCESS_KEY_ID"
    )
    cloudflare_r2_secret_access_key: SecretStr | None = Field(
        None, validation_alias="CLOUDFLARE_R2_SECRET_ACCESS_KEY"
    )

    @model_validator(mode="after")
    def _provider_has_credentials(self) -> Settings:
        required = {
            "s3": ("AWS_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "cloudflare-r2": (
                "CLOUDFLARE_ACCOUNT_ID",
                "CLOUDFLARE_R2_BUCKET",
                "CLOUDFLARE_R2_ACCESS_KEY_ID",
                "CLOUDFLARE_R2_SECRET_ACCESS_KEY",
            ),
        }.get(self.storage_provider, ())
        missing = [name for name in required if not getattr(self, name.lower())]
        if missing:
            raise ValueError(
                f"STORAGE_PROVIDER={self.storage_provider} needs {', '.join(missing)} to be set"
            )
        return self

    # --- derived values ------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        """The async SQLAlchemy URL: the given one with its async driver, or embedded SQLite."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'tenantry.db').as_posix()}"
        return async_database_url(url)

    @property
    def effective_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.redis_host:
            password = self.redis_password.get_secret_value() if self.redis_password else ""
            auth = f":{quote(password, safe='')}@" if password else ""
            return f"redis://{auth}{self.redis_host}:{self.redis_port}/0"
        return None

    @property
    def uses_embedded_database(self) -> bool:
        return self.effective_database_url.startswith("sqlite")


def async_database_url(url: str) -> str:
    """Map the URLs people write (postgres://, sqlite:///) to SQLAlchemy's async drivers."""
    for prefix, driver in (
        ("postgres://", "postgresql+psycopg://"),
        ("postgresql://", "postgresql+psycopg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(prefix):
            return driver + url[len(prefix) :]
    return url


def sync_database_url(url: str) -> str:
    """The same database through a synchronous driver (Alembic, the CLI)."""
    return async_database_url(url).replace("sqlite+aiosqlite://", "sqlite://", 1)


def _env_name(loc: tuple[int | str, ...]) -> str:
    if not loc:
        return ""
    field = Settings.model_fields.get(str(loc[0]))
    alias = field.validation_alias if field else None
    return str(alias) if isinstance(alias, str) else str(loc[0]).upper()


def load_settings(**overrides: object) -> Settings:
    """Build the settings, or raise `ConfigError` with one line per invalid variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = _env_name(error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if name:
                given = error.get("input")
                shown = f" (got {given!r})" if isinstance(given, str | int) else ""
                lines.append(f"{name}: {message}{shown}")
            else:
                lines.append(message)
        raise ConfigError("; ".join(lines)) from None
