from __future__ import annotations

from pathlib import Path

import pytest
from parcours.schemas.errors import ConfigError
from parcours.schemas.settings import load_settings, settings_env


def test_defaults_describe_the_embedded_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARCOURS_KAFKA_BOOTSTRAP", raising=False)
    monkeypatch.delenv("PARCOURS_CLICKHOUSE_URL", raising=False)
    settings = load_settings(data_dir=Path("/tmp/x"))
    assert settings.kafka_bootstrap is None
    assert settings.chdb_path == Path("/tmp/x/clickhouse")


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARCOURS_KAFKA_BOOTSTRAP", "kafka-1:9092")
    monkeypatch.setenv("PARCOURS_CLICKHOUSE_URL", "https://ch.example.com:8443")
    monkeypatch.setenv("PARCOURS_CLICKHOUSE_PASSWORD", "s3cret")
    settings = load_settings()
    assert settings.kafka_bootstrap == "kafka-1:9092"
    assert settings.chdb_path is None
    assert "s3cret" not in repr(settings)
    assert settings.clickhouse_password.get_secret_value() == "s3cret"


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.partitions = 8  # type: ignore[misc]


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("PARCOURS_PARTITIONS", "0", "PARCOURS_PARTITIONS"),
        (
            "PARCOURS_CLICKHOUSE_URL",
            "mysql://x",
            "PARCOURS_CLICKHOUSE_URL: Value error, must start with chdb://",
        ),
        ("PARCOURS_LOG_LEVEL", "LOUD", "PARCOURS_LOG_LEVEL"),
        (
            "PARCOURS_PII_POLICY",
            "ignore",
            "PARCOURS_PII_POLICY: Input should be 'redact' or 'reject'",
        ),
        ("PARCOURS_MAX_EVENT_BYTES", "2000000", "PARCOURS_MAX_EVENT_BYTES"),
        ("PARCOURS_BROKER_LOST_SECONDS", "0", "PARCOURS_BROKER_LOST_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_settings_env_recreates_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = load_settings(kafka_bootstrap="b:1", partitions=3, topic_prefix="t-")
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


def test_the_guard_follows_the_settings() -> None:
    guard = load_settings(max_event_bytes=4096, pii_policy="reject").guard
    assert (guard.max_event_bytes, guard.pii_policy) == (4096, "reject")


def test_collector_keys_map_each_key_to_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARCOURS_COLLECTOR_KEYS", "web:k-web, store-tills:k-pos")
    monkeypatch.setenv("PARCOURS_PROFILE_KEYS", "agent-1,agent-2")
    settings = load_settings()
    assert settings.write_keys == {"k-web": "web", "k-pos": "store-tills"}
    assert settings.read_keys == {"agent-1", "agent-2"}
    assert "k-web" not in repr(settings)  # a secret


@pytest.mark.parametrize(
    "value, problem",
    [("web", "entry 1 is not source:key"), ("web:a,pos:a", "entry 2 repeats the key")],
)
def test_bad_collector_keys_are_named_without_the_key(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"PARCOURS_COLLECTOR_KEYS: .*{problem}") as caught:
        load_settings(collector_keys=value)
    assert ":a" not in str(caught.value)
