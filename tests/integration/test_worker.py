"""`parcours worker` as an operator starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from parcours.deploy.stack import Stack
from parcours.schemas import topics
from parcours.schemas.kafka import client_config

pytestmark = pytest.mark.integration


def test_a_worker_refuses_topics_with_different_partition_counts(stack: Stack) -> None:
    prefix = f"mixed{uuid.uuid4().hex[:6]}."
    admin = AdminClient(client_config(stack.settings))
    wanted = [
        NewTopic(prefix + name, 2 if name == topics.JOURNEYS else 4, 1) for name in topics.ALL
    ]
    for future in admin.create_topics(wanted, operation_timeout=10).values():
        future.result()
    done = _worker(stack, "mixed", PARCOURS_TOPIC_PREFIX=prefix)
    assert done.returncode == 1
    assert "parcours topics must all have the same partition count" in done.stderr
    assert f"{prefix}journeys=2" in done.stderr
    assert f"{prefix}touchpoints=4" in done.stderr


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("PARCOURS_QUIET_HOURS", "25:00-08:00", "is not HH:MM-HH:MM"),
        ("PARCOURS_FOLLOWUP_CHANNELS", "email,fax", "unknown channel(s) fax"),
        ("PARCOURS_FOLLOWUP_CHANNELS", "email,phone", "phone cannot carry a follow-up"),
        ("PARCOURS_DEFAULT_TIMEZONE", "Mars/Olympus", "is not an IANA time zone"),
        ("PARCOURS_CART_ABANDON_SECONDS", "-60", "greater than 0"),
    ],
)
def test_a_worker_refuses_a_bad_rule_at_start_up(
    stack: Stack, variable: str, value: str, complaint: str
) -> None:
    done = _worker(stack, "bad-rule", **{variable: value})
    assert done.returncode == 1
    said = " ".join(done.stderr.split())  # the console wraps long lines
    assert f"{variable}:" in said and complaint in said, said


def _worker(stack: Stack, data_dir: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """``parcours worker`` on the stack's broker with ``variables`` set; it must exit by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")} | {
        "PARCOURS_KAFKA_BOOTSTRAP": stack.settings.kafka_bootstrap or "",
        "PARCOURS_DATA_DIR": str(stack.settings.data_dir / data_dir),
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-m", "parcours.deploy.cli", "worker"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
