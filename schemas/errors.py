"""One root exception, a subclass per area; each carries the context that locates the fault."""

from __future__ import annotations

from typing import Any


class ParcoursError(Exception):
    """Root of every error parcours raises on purpose."""

    def __init__(self, message: str, **context: Any) -> None:
        self.message = message
        self.context = {k: v for k, v in context.items() if v is not None}
        super().__init__(self.__str__())

    def __str__(self) -> str:
        if not self.context:
            return self.message
        where = " ".join(f"{k}={v}" for k, v in self.context.items())
        return f"{self.message} ({where})"


class ConfigError(ParcoursError):
    """A setting is missing or invalid."""


class SchemaError(ParcoursError):
    """Bytes that do not decode, or a record that does not fit its Avro schema."""


class ValidationError(ParcoursError):
    """A touchpoint that decodes but breaks the event contract; names the field."""


class BrokerError(ParcoursError):
    """Kafka refused or lost something (delivery failure, admin failure)."""


class SinkError(ParcoursError):
    """ClickHouse refused a statement or a batch, or could not be reached: worth retrying."""


class RowsRefused(SinkError):
    """ClickHouse refused the data itself (a value it cannot parse, a violated constraint): the
    same rows would be refused again, so the sink finds them and dead-letters them instead."""


class StackError(ParcoursError):
    """The embedded stack (Tansu, workers, sink) failed to start or stop."""


class ReplayError(ParcoursError):
    """A replay could not finish."""


class QueryError(ParcoursError):
    """An analyst query from the library that does not exist or gets a bad parameter."""
