"""Starting the embedded broker."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from parcours.deploy import stack

pytestmark = pytest.mark.integration


def test_a_broker_port_taken_before_tansu_binds_it_is_replaced_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports: Iterator[int] = iter([taken, stack.free_port()])
        monkeypatch.setattr(stack, "free_port", lambda: next(ports))

        tansu, bootstrap = stack.start_tansu(tmp_path)
        try:
            assert bootstrap != f"127.0.0.1:{taken}"
            metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10)
            assert metadata.brokers  # a broker answers there
        finally:
            tansu.stop()
