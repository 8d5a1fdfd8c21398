"""Suite-wide rules: `make test` fails unless the embedded integration tests really ran."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-integration",
        action="store_true",
        help="fail the run if an embedded integration test was skipped or none ran",
    )


_embedded: dict[str, int] = {"passed": 0, "skipped": 0}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    params = report.nodeid.partition("[")[2].rstrip("]").split("-")
    if "integration" not in report.keywords or "containers" in params:
        return
    if report.when == "call" and report.passed:
        _embedded["passed"] += 1
    if report.skipped:
        _embedded["skipped"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--require-integration"):
        return
    if _embedded["skipped"] or not _embedded["passed"]:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"embedded integration tests: {_embedded['passed']} passed, "
                f"{_embedded['skipped']} skipped — a suite without them is not green",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
