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


class StateError(ParcoursError):
    """A stage's table lacks what its state refers to (names the table and the key)."""


class StackError(ParcoursError):
    """The embedded stack (Tansu, workers, sink) failed to start or stop."""


class ReplayError(ParcoursError):
    """A replay could not finish."""


class QueryError(ParcoursError):
    """An analyst query from the library that does not exist or gets a bad parameter."""


class CollectorError(ParcoursError):
    """The HTTP collector cannot take a batch now; ``retry_after`` says when to try again."""

    status = 503

    def __init__(self, message: str, *, retry_after: int = 1, **context: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **context)


class QueueFull(CollectorError):
    """The producer's queue has no room for the batch: the sender goes faster than Kafka takes."""

    status = 429


class NotAcknowledged(CollectorError):
    """Kafka did not acknowledge every event of a batch in time (or refused one)."""


class RequestError(ParcoursError):
    """An HTTP request refused as a whole; ``status`` says why (400 malformed, 413 too large)."""

    def __init__(self, status: int, message: str, **context: Any) -> None:
        self.status = status
        super().__init__(message, **context)
