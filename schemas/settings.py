"""The one place that reads the environment (prefix ``PARCOURS_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from parcours.schemas.errors import ConfigError
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of parcours. Frozen: copy with ``settings.model_copy(update=...)``."""

    model_config = SettingsConfigDict(env_prefix="PARCOURS_", frozen=True, extra="forbid")

    data_dir: Path = Field(
        Path(".parcours"), description="Embedded stack state, logs and chDB data."
    )
    kafka_bootstrap: str | None = Field(
        None, description="host:port of a Kafka cluster; unset = start the embedded Tansu broker."
    )
    kafka_security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_SSL, ...")
    kafka_sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256, ...")
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    clickhouse_url: str | None = Field(
        None,
        description="chdb:///path or http(s)://host:port; unset = chDB in DATA_DIR/clickhouse.",
    )
    clickhouse_user: str = "default"
    clickhouse_password: SecretStr = SecretStr("")
    clickhouse_database: str = "parcours"
    schema_registry_url: str | None = Field(
        None, description="Confluent Schema Registry; unset = single-object encoding."
    )
    schema_registry_user: str | None = None
    schema_registry_password: SecretStr | None = None
    topic_prefix: str = Field(
        "", description="Prepended to every topic name (test isolation, tenancy)."
    )
    app_id: str = Field("parcours", description="Faust app id = consumer group of the workers.")
    partitions: int = Field(
        4, ge=1, le=1024, description="Partitions per topic when parcours creates them."
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes the embedded stack starts.")
    sink_batch_size: int = Field(5000, ge=1)
    sink_flush_seconds: float = Field(0.5, gt=0)
    sink_max_backoff_seconds: float = Field(30.0, gt=0)
    rebalance_timeout_seconds: float = Field(
        3.0, gt=0, description="Low on Tansu: its group join waits for the full rebalance timeout."
    )
    session_timeout_seconds: float = Field(6.0, gt=0)
    allowed_lateness_seconds: float = Field(
        600.0, ge=0, description="Events this far behind the watermark still count as on time."
    )
    session_idle_seconds: float = Field(1800.0, gt=0, description="Inactivity that ends a session.")
    journey_idle_seconds: float = Field(
        7 * 86400.0, gt=0, description="Inactivity that expires an open journey."
    )
    watermark_idle_seconds: float = Field(
        30.0,
        gt=0,
        description="A silent input partition stops holding the watermark back after this (live mode).",
    )
    log_level: str = Field("WARNING", description="DEBUG, INFO, WARNING, ERROR")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return level

    @field_validator("clickhouse_url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("chdb://", "http://", "https://")):
            raise ValueError("must start with chdb://, http:// or https://")
        return value

    @property
    def chdb_path(self) -> Path | None:
        """Directory chDB opens, or None when a ClickHouse server is configured."""
        if self.clickhouse_url is None:
            return self.data_dir / "clickhouse"
        if self.clickhouse_url.startswith("chdb://"):
            return Path(self.clickhouse_url.removeprefix("chdb://"))
        return None

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (plus explicit overrides); a bad value is a ConfigError naming it."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"PARCOURS_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``PARCOURS_*`` variables that recreate ``settings`` in a child process."""
    env = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"PARCOURS_{name.upper()}"] = str(value)
    return env
