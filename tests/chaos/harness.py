"""Processes for the chaos tests: workers and coordinators started through the real CLI, each
with its output in a log file under the test's tmp_path, killed, paused and stopped by pid
(islandsync.testing.processes does the starting, killing and stopping).

Every failure inside ``with Cluster(...)`` is re-raised with the tail of every process's log
appended, so that a red chaos test says what each process was doing.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path
from types import TracebackType

import pytest

from islandsync.store import BlobStore, open_store
from islandsync.testing.processes import Proc, Processes, child_env, islandsync_argv

from ..cluster import INTERVAL_S, LEASE_S, REPO
from .invariants import ChaosRecorder

CHAOS_DIR = Path(__file__).resolve().parent

#: Store kinds for scenarios that run on both: a local directory and fake-gcs-server.
KINDS = ["local", pytest.param("gcs", marks=pytest.mark.gcs)]
#: ... and moto's S3 server too: only the kill scenarios, whose failovers and takeovers are
#: what fencing on S3 must carry (each scenario on S3 costs ~20 s of CI's ~15 minutes).
KINDS_S3 = [*KINDS, pytest.param("s3", marks=pytest.mark.s3)]


def run_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh run URL of the given kind (``gcs`` starts the session's fake-gcs-server,
    ``s3`` the session's moto server, whose endpoint and keys child processes inherit)."""
    if kind == "local":
        return str(tmp_path / "run")
    return request.getfixturevalue("s3_url" if kind == "s3" else "gcs_url")

#: The clock-skew wrapper: the process's wall clock (``time.time`` and ``time.time_ns``) runs
#: ``offset`` seconds off; its monotonic clock is untouched (a machine's wall clock can be
#: wrong, its monotonic clock just counts).
SKEWED = (
    "import time; _t = time.time; _tn = time.time_ns; "
    "time.time = lambda: _t() + {offset!r}; "
    "time.time_ns = lambda: _tn() + {offset_ns!r}; "
    "from islandsync.cli import main; raise SystemExit(main({argv!r}))"
)


def chaos_env(**extra: str) -> dict[str, str]:
    """The environment of every process: the repository and tests/chaos (the custom fitness
    module) importable, one torch thread each (five processes share two cores here), and
    unbuffered output so that a log is complete up to the moment a process is killed."""
    return child_env(REPO, CHAOS_DIR, **extra)


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text


class Cluster:
    """The processes of one chaos scenario on one run URL.

    Use as a context manager: on the way out every process still running is stopped
    (SIGCONT, then SIGTERM, then SIGKILL after 30 s), and an exception from the body is
    re-raised with the logs attached."""

    def __init__(self, url: str, tmp_path: Path, *, env: dict[str, str] | None = None,
                 seed: int | None = None) -> None:
        self.url = url
        self.logs_dir = tmp_path / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.env = chaos_env(**(env or {}))
        self.store: BlobStore = open_store(url)
        self.processes = Processes(self.logs_dir, self.env, cwd=REPO)
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.notes: list[str] = [f"chaos seed {self.seed}"]
        self.t0 = time.monotonic()
        self.recorders: list[ChaosRecorder] = []

    @property
    def procs(self) -> dict[str, Proc]:
        """Every process started, by name."""
        return self.processes.procs

    def recorder(self, islands: int) -> ChaosRecorder:
        """A ChaosRecorder on this run, whose summary joins the logs of a failure."""
        rec = ChaosRecorder(self.store, islands)
        self.recorders.append(rec)
        return rec

    def mark(self, what: str) -> None:
        """A note with the seconds since the cluster was made, shown with the logs."""
        self.notes.append(f"{time.monotonic() - self.t0:.1f}s {what}")

    # -- starting ------------------------------------------------------------------------

    def spawn(self, name: str, role: str, argv: list[str], *,
              env: dict[str, str] | None = None) -> Proc:
        return self.processes.spawn(name, argv, role=role, env=env)

    def _command(self, cli_args: list[str], clock_offset: float | None) -> list[str]:
        if clock_offset is None:
            return islandsync_argv(*cli_args)
        code = SKEWED.format(offset=float(clock_offset),
                             offset_ns=int(clock_offset * 1_000_000_000), argv=cli_args)
        return [sys.executable, "-c", code]

    def worker(self, name: str, *extra: str, clock_offset: float | None = None,
               env: dict[str, str] | None = None, url: str | None = None) -> Proc:
        """A worker that follows the leader (``--no-coordinator``), verbose, on the CPU."""
        args = ["worker", url or self.url, "--quiet", "-v", "--no-coordinator",
                "--worker-id", name, "--device", "cpu", *extra]
        return self.spawn(name, "worker", self._command(args, clock_offset), env=env)

    def coordinator(self, name: str, *extra: str, clock_offset: float | None = None,
                    env: dict[str, str] | None = None) -> Proc:
        """A coordinator candidate with the short lease and cycle of tests/cluster.py."""
        args = ["coordinate", self.url, "--candidate-id", name, "--lease", f"{LEASE_S}s",
                "--interval", f"{INTERVAL_S}s", "--metrics-port", "-1", *extra]
        return self.spawn(name, "coordinator", self._command(args, clock_offset), env=env)

    # -- faults --------------------------------------------------------------------------

    def kill(self, name: str) -> float:
        """kill -9; returns time.monotonic() of the kill."""
        proc = self.processes.kill(name)
        self.notes.append(f"killed {name} (pid {proc.pid})")
        return proc.killed_at  # type: ignore[return-value]

    def live(self, role: str | None = None) -> list[str]:
        return self.processes.live(role)

    # -- stopping ------------------------------------------------------------------------

    def stop(self, names: list[str] | None = None, timeout: float = 30.0) -> None:
        """SIGCONT + SIGTERM, then wait; whatever is still running after ``timeout`` is
        killed (and the test then fails on its exit code)."""
        for name in self.processes.stop(names, timeout):
            self.notes.append(f"{name} ignored SIGTERM for {timeout:g} s: killed")

    def check_clean_exits(self, expected: dict[str, int] | None = None) -> None:
        """Every process we did not kill exited 0 (or its code in ``expected``), with no
        Python traceback in its output."""
        for p in self.procs.values():
            if p.killed:
                continue
            code = (expected or {}).get(p.name, 0)
            assert p.popen.returncode is not None, f"{p.name} is still running"
            assert p.popen.returncode == code, f"{p.name} exited {p.popen.returncode}, not {code}"
            assert not has_traceback(p.text()), f"{p.name} printed a traceback"

    # -- reporting -----------------------------------------------------------------------

    def logs(self, lines: int = 25) -> str:
        parts = [" | ".join(self.notes), *(r.summary() for r in self.recorders)]
        for p in self.procs.values():
            state = ("killed" if p.killed else "running" if p.running
                     else f"exit {p.popen.returncode}")
            parts.append(f"----- {p.name} ({p.role}, pid {p.pid}, {state}; {p.log}) -----\n"
                         f"{p.tail(lines)}")
        return "\n".join(parts)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.mark("leaving")
        try:
            self.stop()
        except BaseException:  # never mask the body's failure
            self.processes.kill_all()
            if exc is None:
                raise
        self.mark("stopped")
        if exc is None:
            print(" | ".join(self.notes))  # shown with -s (or -rP): where the time went
            return
        print(self.logs(lines=80))  # shown under "Captured stdout" for any failure
        if isinstance(exc, AssertionError):
            raise AssertionError(f"{exc}\n\n{self.logs()}").with_traceback(tb) from None
