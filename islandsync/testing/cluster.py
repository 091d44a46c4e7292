"""Real islandsync processes on one run, for tests, chaos scenarios and benchmarks:
coordinators and workers started through the CLI with a short lease and cycle
(:func:`start_coordinator`, :func:`start_worker`, or a :class:`Cluster` that keeps each one's
log, kills, pauses and stops them by pid and attaches every log to a failure), and the small
fast run spec they share (:func:`cluster_spec`).

Starting, stopping and waiting are :mod:`islandsync.testing.processes`'; what the run does is
watched by :class:`islandsync.testing.recorder.Recorder`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import islandsync
from islandsync.config import spec_from_flags
from islandsync.store import BlobStore, open_store
from islandsync.testing.processes import (
    Proc,
    Processes,
    child_env,
    free_port,
    islandsync_argv,
)
from islandsync.testing.recorder import Recorder

#: The folder that holds the islandsync package being tested (the repository, in a checkout):
#: first on every child's PYTHONPATH, so that a child runs this very code.
SOURCE_ROOT = Path(islandsync.__file__).resolve().parents[1]
LEASE_S, INTERVAL_S = 3.0, 0.5


def cluster_spec(**overrides):
    base = dict(problem="rastrigin", dim=10, islands=6, pop=16, algorithm="ga",
                checkpoint_interval_s=0.3, heartbeat_interval_s=0.4, seed=3)
    base.update(overrides)
    return spec_from_flags(**base).model_copy(
        update={"assignment_poll_s": 0.2, "worker_timeout_s": 2.0, "worker_listing_s": 1.0})


def start_coordinator(url: str, candidate: str, *extra: str,
                      log: Path | None = None) -> subprocess.Popen:
    """A coordinator candidate with a short lease and cycle; its output in ``log`` if given."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        islandsync_argv("coordinate", url, "--candidate-id", candidate, "--lease", f"{LEASE_S}s",
                        "--interval", f"{INTERVAL_S}s", *extra),
        env=child_env(SOURCE_ROOT), stdout=out, stderr=subprocess.STDOUT)


def start_worker(url: str, worker_id: str, *extra: str, solo: bool = False,
                 capture: bool = False) -> subprocess.Popen:
    """A quiet worker on the CPU that follows the leader (``--no-coordinator``), or with
    ``solo`` one that places islands itself (``--solo``: no leader involved). ``capture``:
    its output (stderr within) in ``stdout``, for ``communicate()``."""
    role = "--solo" if solo else "--no-coordinator"
    return subprocess.Popen(
        islandsync_argv("worker", url, "--quiet", role, "--worker-id", worker_id,
                        "--device", "cpu", *extra),
        env=child_env(SOURCE_ROOT),
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL)


def pause_outside_store_writes(proc: subprocess.Popen, root: Path, tries: int = 100) -> None:
    """SIGSTOP ``proc``, but not inside a LocalStore write under ``root``: a process stopped
    while it holds a key's flock blocks every writer of that key until it resumes (documented
    in LocalStore). Retries (SIGCONT, a short sleep, SIGSTOP again) while it holds a lock:
    judged by /proc/locks where there is one, else by probing every lock file of the store."""
    for _ in range(tries):
        proc.send_signal(signal.SIGSTOP)
        if not _holds_store_lock(proc.pid, root):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError(f"could not pause pid {proc.pid} outside a store write")


def _holds_store_lock(pid: int, root: Path) -> bool:
    import fcntl

    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        table = None
    if table is not None:
        return any(f[1] == "FLOCK" and f[4] == str(pid)
                   for f in (line.split() for line in table.splitlines()) if len(f) > 4)
    for lock in (root / ".islandsync" / "locks").rglob("*"):
        if lock.is_file():
            with open(lock, "rb") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    return True
    return False


#: The clock-skew wrapper: the process's wall clock (``time.time`` and ``time.time_ns``) runs
#: ``offset`` seconds off; its monotonic clock is untouched (a machine's wall clock can be
#: wrong, its monotonic clock just counts).
SKEWED = (
    "import time; _t = time.time; _tn = time.time_ns; "
    "time.time = lambda: _t() + {offset!r}; "
    "time.time_ns = lambda: _tn() + {offset_ns!r}; "
    "from islandsync.cli import main; raise SystemExit(main({argv!r}))"
)


def cluster_env(*pythonpath: str | os.PathLike[str], **extra: str) -> dict[str, str]:
    """The environment of every process of a :class:`Cluster`: this islandsync and then
    ``pythonpath`` (a custom fitness module's folder) importable, one torch thread each (several
    processes share a few cores), and unbuffered output so that a log is complete up to the
    moment a process is killed."""
    return child_env(SOURCE_ROOT, *pythonpath, **extra)


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text


class Cluster:
    """The processes of one chaos scenario on one run URL.

    Use as a context manager: on the way out every process still running is stopped
    (SIGCONT, then SIGTERM, then SIGKILL after 30 s), and an exception from the body is
    re-raised with the logs attached."""

    def __init__(self, url: str, tmp_path: Path, *, env: dict[str, str] | None = None,
                 seed: int | None = None,
                 pythonpath: tuple[str | os.PathLike[str], ...] = (),
                 new_session: bool = False) -> None:
        self.url = url
        self.logs_dir = tmp_path / "logs"
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.env = cluster_env(*pythonpath, **(env or {}))
        self.store: BlobStore = open_store(url)
        # new_session: a Ctrl-C in the terminal reaches the caller only, which then stops
        # every process itself (a benchmark run by hand).
        self.processes = Processes(self.logs_dir, self.env, cwd=SOURCE_ROOT,
                                   new_session=new_session)
        #: coordinator name -> the port of its /metrics (those started with one)
        self.metrics_ports: dict[str, int] = {}
        self.seed = random.randrange(1 << 30) if seed is None else seed
        self.rng = random.Random(self.seed)
        self.notes: list[str] = [f"chaos seed {self.seed}"]
        self.t0 = time.monotonic()
        self.recorders: list[Recorder] = []

    @property
    def procs(self) -> dict[str, Proc]:
        """Every process started, by name."""
        return self.processes.procs

    def recorder(self, islands: int) -> Recorder:
        """A Recorder on this run, whose summary joins the logs of a failure."""
        rec = Recorder(self.store, islands)
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
                    env: dict[str, str] | None = None, lease_s: float | None = LEASE_S,
                    interval_s: float | None = INTERVAL_S, metrics: bool = False) -> Proc:
        """A coordinator candidate with the short lease and cycle of :data:`LEASE_S`,
        :data:`INTERVAL_S` (None: the run's own, run.json's cadence); ``metrics``: serving
        /metrics on a free port, kept in :attr:`metrics_ports`."""
        timing = [*(["--lease", f"{lease_s}s"] if lease_s is not None else []),
                  *(["--interval", f"{interval_s}s"] if interval_s is not None else [])]
        port = free_port() if metrics else -1
        args = ["coordinate", self.url, "--candidate-id", name, *timing,
                "--metrics-port", str(port), *extra]
        proc = self.spawn(name, "coordinator", self._command(args, clock_offset), env=env)
        if metrics:
            self.metrics_ports[name] = port
        return proc

    # -- faults --------------------------------------------------------------------------

    def kill(self, name: str) -> float:
        """kill -9; returns time.monotonic() of the kill."""
        proc = self.processes.kill(name)
        self.notes.append(f"killed {name} (pid {proc.pid})")
        return proc.killed_at  # type: ignore[return-value]

    def live(self, role: str | None = None) -> list[str]:
        return self.processes.live(role)

    def check_running(self) -> None:
        """Raise (with its log's tail) if a process we did not kill has exited: a benchmark's
        wait must not go on measuring a cluster that lost a member by itself."""
        for p in self.procs.values():
            if not p.killed and not p.running:
                raise AssertionError(f"{p.name} exited with {p.popen.returncode}; log tail:\n"
                                     f"{p.tail(40)}")

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


__all__ = [
    "INTERVAL_S", "LEASE_S", "SKEWED", "SOURCE_ROOT", "Cluster", "cluster_env", "cluster_spec",
    "has_traceback", "pause_outside_store_writes", "start_coordinator", "start_worker",
]
