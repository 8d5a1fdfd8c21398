"""Child processes that cannot outlive their parent (Linux PR_SET_PDEATHSIG) and stop in order."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1


def _die_with_parent(sig: int, parent_pid: int) -> Callable[[], None]:
    """Runs in the child between fork and exec. The kernel sends ``sig`` when the thread that
    forked it ends, so children are started from the main thread; a parent that died before
    the prctl is caught by the pid check. Workers and sink also watch their parent's pid
    (``--parent-pid``, schemas/watchdog.py), which bounds a graceful stop that hangs."""

    def preexec() -> None:
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)
        except OSError:  # not Linux: the stack's own cleanup still stops the child
            return
        if os.getppid() != parent_pid:
            os.kill(os.getpid(), sig)

    return preexec


class Child:
    """One supervised process with its output in ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        death_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                preexec_fn=_die_with_parent(death_signal, os.getpid()),
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait()

    def stop(self, grace: float = 15.0) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, grace)
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines)


def log_tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log ("" if there is none yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def parcours_argv(*args: str) -> list[str]:
    """Run a parcours subcommand with the same interpreter as this process."""
    return [sys.executable, "-m", "parcours.deploy.cli", *args]


def child_env(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARCOURS_")}
    return env | dict(overrides)
