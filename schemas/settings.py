"""The one place that reads the environment (prefix ``PARCOURS_``)."""

from __future__ import annotations

from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parcours.schemas.errors import ConfigError
from parcours.schemas.sdk import Channel, Guard
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MESSAGING_CHANNELS = ("email", "sms", "push")


def parse_quiet_hours(text: str) -> tuple[time, time] | None:
    """``"21:00-08:00"`` → (21:00, 08:00); ``""`` → no quiet hours. ValueError names the problem."""
    if not text.strip():
        return None
    start, sep, end = text.partition("-")
    try:
        if not sep:
            raise ValueError("no '-' between start and end")
        window = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not HH:MM-HH:MM ({exc})") from None
    if window[0] == window[1]:
        raise ValueError(f"{text!r} starts and ends at the same time")
    return window


def parse_write_keys(text: str) -> dict[str, str]:
    """``"web:k1,pos:k2"`` → {"k1": "web", "k2": "pos"}; ValueError names the bad entry (never
    the key itself: it is a secret)."""
    keys: dict[str, str] = {}
    for n, entry in enumerate((e.strip() for e in text.split(",")), start=1):
        if not entry:
            continue
        source, sep, key = (part.strip() for part in entry.partition(":"))
        if not sep or not source or not key:
            raise ValueError(f"entry {n} is not source:key")
        if key in keys:
            raise ValueError(f"entry {n} repeats the key of source {keys[key]!r}")
        keys[key] = source
    return keys


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
    state_store: Literal["memory://", "rocksdb://"] = Field(
        "memory://",
        description="Where workers keep their tables: memory (rebuilt from the changelogs at "
        "every start) or RocksDB on disk (a restart reads only the changelogs' tail).",
    )
    state_dir: Path | None = Field(
        None,
        description="A worker's own table directory; it must outlive the worker for RocksDB to "
        "pay off (one per worker, e.g. a StatefulSet volume). Default: a fresh one under "
        "data_dir.",
    )
    state_cache_mb: int = Field(
        64, ge=8, description="RocksDB block cache per table partition, MiB."
    )
    changelog_tombstones: bool = Field(
        True,
        description="Delete table keys with Kafka tombstones (null values). The embedded stack "
        "turns this off: Tansu 0.6 neither returns null-value records nor counts them in its high "
        "watermark, so a worker restoring a table would stop short of the changelog's end; a "
        "deleted key is then written as JSON null.",
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=10,
        le=1500,
        description="How long workers and sink let the broker hold an empty fetch: each hop "
        "can add up to this much latency on a broker that polls (Tansu).",
    )
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
    # Detection rules (README: Detections). Channel lists are comma-separated.
    pivot_failure_window_seconds: float = Field(
        1800.0, ge=0, description="A failure this close before a switch makes it failure-driven."
    )
    cart_abandon_seconds: float = Field(
        3600.0, gt=0, description="No purchase this long after the last cart change: abandoned."
    )
    checkout_abandon_seconds: float = Field(
        1800.0, gt=0, description="No purchase this long after checkout_started: abandoned."
    )
    contact_abandon_seconds: float = Field(
        86400.0, gt=0, description="No resolved contact this long after a failed one: abandoned."
    )
    assisted_channels: str = Field(
        "phone,live_chat,store,video", description="A pivot onto one of these sends a hand-off."
    )
    handoff_history: int = Field(5, ge=1, le=100, description="Touchpoints a hand-off shows.")
    followup_channels: str = Field(
        "email,sms,push",
        description="Channels a follow-up may use; equal consent times go to the first listed.",
    )
    followup_delay_seconds: float = Field(0.0, ge=0, description="From deadline to send_at.")
    followup_ttl_seconds: float = Field(
        86400.0, gt=0, description="From send_at to expires_at: after it, do not send."
    )
    frequency_cap_seconds: float = Field(
        86400.0, ge=0, description="At most one follow-up per kind per customer in this window."
    )
    quiet_hours: str = Field(
        "21:00-08:00", description="HH:MM-HH:MM local time that holds follow-ups; empty = none."
    )
    default_timezone: str = Field("UTC", description="IANA zone when a customer has none.")
    recovery_window_seconds: float = Field(
        7 * 86400.0, gt=0, description="A purchase this soon after send_at recovers the drop-off."
    )
    log_level: str = Field("WARNING", description="DEBUG, INFO, WARNING, ERROR")
    # Faults and hostile input (README: Faults and hostile input).
    broker_lost_seconds: float = Field(
        30.0,
        gt=0,
        description="A worker or sink whose broker has not answered for this long exits (code 75).",
    )
    max_event_bytes: int = Field(
        262_144,
        ge=1024,
        # Below librdkafka's message.max.bytes (1,000,000): the records that carry an event
        # further (resolved, stitched, the profile's changelog) are larger than the event.
        le=900_000,
        description="Largest touchpoint, as its JSON document and as its Avro encoding.",
    )
    pii_policy: Literal["redact", "reject"] = Field(
        "redact",
        description="E-mail addresses and phone numbers outside the *_sha256 identities: "
        "replaced by their sha256 (redact) or the event refused (reject).",
    )
    metrics_host: str = Field(
        "127.0.0.1", description="Address /metrics, /healthz, /readyz listen on (0.0.0.0 in a pod)."
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Their port; 0 = a free one, written to DATA_DIR/endpoints."
    )
    liveness_seconds: float = Field(
        60.0, gt=0, description="/healthz fails once the main loop has been silent this long."
    )
    # The HTTP collector and profile API (README: Sending events over HTTP).
    collector_port: int = Field(
        0, ge=0, le=65535, description="Port of `parcours collect` on 127.0.0.1; 0 = a free one."
    )
    collector_host: str = Field("127.0.0.1", description="Interface the collector listens on.")
    collector_keys: SecretStr = Field(
        SecretStr(""), description="Write keys, source:key,source:key; the source is recorded."
    )
    profile_keys: SecretStr = Field(
        SecretStr(""), description="Read keys of the profile API, comma-separated."
    )
    collector_max_events: int = Field(500, ge=1, description="Events per request at most (413).")
    collector_max_bytes: int = Field(
        1_000_000, ge=1024, description="Request body at most, after gzip is undone (413)."
    )
    collector_queue_messages: int = Field(
        100_000, ge=1, description="Producer queue; a batch that does not fit gets 429."
    )
    collector_ack_timeout_seconds: float = Field(
        30.0, gt=0, description="Kafka acknowledgement wait before a 503."
    )
    collector_cors_origins: str = Field(
        "*", description="Origins browsers may post from, comma-separated; * = any."
    )

    @field_validator("assisted_channels", "followup_channels")
    @classmethod
    def _known_channels(cls, value: str) -> str:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in Channel.__members__]
        if unknown:
            raise ValueError(f"unknown channel(s) {', '.join(unknown)}")
        if not names:
            raise ValueError("must name at least one channel")
        return ",".join(names)

    @field_validator("followup_channels")
    @classmethod
    def _messaging_channels(cls, value: str) -> str:
        other = [name for name in value.split(",") if name not in MESSAGING_CHANNELS]
        if other:
            raise ValueError(f"{', '.join(other)} cannot carry a follow-up (email, sms, push can)")
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_window(cls, value: str) -> str:
        parse_quiet_hours(value)
        return value

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @field_validator("collector_keys")
    @classmethod
    def _source_keys(cls, value: SecretStr) -> SecretStr:
        parse_write_keys(value.get_secret_value())
        return value

    @property
    def write_keys(self) -> dict[str, str]:
        """Write key → the source it stands for."""
        return parse_write_keys(self.collector_keys.get_secret_value())

    @property
    def read_keys(self) -> frozenset[str]:
        keys = self.profile_keys.get_secret_value().split(",")
        return frozenset(key.strip() for key in keys if key.strip())

    @property
    def quiet_window(self) -> tuple[time, time] | None:
        return parse_quiet_hours(self.quiet_hours)

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

    @property
    def guard(self) -> Guard:
        """What the SDK checks beyond the contract: the size limit and the PII policy."""
        return Guard(max_event_bytes=self.max_event_bytes, pii_policy=self.pii_policy)


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
