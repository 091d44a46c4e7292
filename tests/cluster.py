"""Real processes for multi-process tests: coordinators and workers started through the CLI,
and a recorder that watches the leader's term-stamped records as they are written.

Starting, stopping and waiting are islandsync.testing.processes' (shared with the chaos
harness and the benchmarks); ``stop_all`` and ``wait_for`` are re-exported from there."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from islandsync.bucket.elites import read_elite
from islandsync.bucket.records import read_assignment, read_elite_head, read_head
from islandsync.config import spec_from_flags
from islandsync.errors import IslandSyncError
from islandsync.store import BlobStore
from islandsync.testing.processes import child_env, islandsync_argv, stop_all, wait_for

REPO = Path(__file__).resolve().parents[1]
LEASE_S, INTERVAL_S = 3.0, 0.5


def cluster_spec(**overrides):
    base = dict(problem="rastrigin", dim=10, islands=6, pop=16, algorithm="ga",
                checkpoint_interval_s=0.3, heartbeat_interval_s=0.4, seed=3)
    base.update(overrides)
    return spec_from_flags(**base).model_copy(
        update={"assignment_poll_s": 0.2, "worker_timeout_s": 2.0})


def load_benchmark(name: str):
    """A script of benchmarks/ (not a package) imported by path, registered in sys.modules
    (dataclasses need their module there) under ``<name>_bench``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_bench",
                                                  REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def start_coordinator(url: str, candidate: str, *extra: str,
                      log: Path | None = None) -> subprocess.Popen:
    """A coordinator candidate with a short lease and cycle; its output in ``log`` if given."""
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - lives with the process
    return subprocess.Popen(
        islandsync_argv("coordinate", url, "--candidate-id", candidate, "--lease", f"{LEASE_S}s",
                        "--interval", f"{INTERVAL_S}s", *extra),
        env=child_env(REPO), stdout=out, stderr=subprocess.STDOUT)


def start_worker(url: str, worker_id: str, *extra: str) -> subprocess.Popen:
    """A quiet worker on the CPU that follows the leader (``--no-coordinator``)."""
    return subprocess.Popen(
        islandsync_argv("worker", url, "--quiet", "--no-coordinator", "--worker-id", worker_id,
                        "--device", "cpu", *extra),
        env=child_env(REPO), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


__all__ = [
    "INTERVAL_S", "LEASE_S", "REPO", "Recorder", "Seen", "cluster_spec", "heads",
    "load_benchmark", "pause_outside_store_writes", "start_coordinator", "start_worker",
    "stop_all", "wait_for",
]


def heads(store: BlobStore, n: int) -> dict[int, object]:
    out = {}
    for i in range(n):
        current = read_head(store, i)
        if current is not None:
            out[i] = current[0]
    return out


@dataclass
class Seen:
    at: float  # time.monotonic() of the first read that saw it
    kind: str  # "assignment" or "elite"
    epoch: int
    term: int
    leader: str | None
    islands: dict[int, str] = field(default_factory=dict)
    ids: tuple[int, ...] = ()
    best_score: float | None = None


class Recorder:
    """Polls assignment.json and elite/HEAD.json and keeps every distinct version seen."""

    def __init__(self, store: BlobStore, every: float = 0.05) -> None:
        self.store, self.every = store, every
        self.seen: list[Seen] = []
        self._gens: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except IslandSyncError:
                pass  # a half-visible blob or an outage: look again
            self._stop.wait(self.every)

    def _poll(self) -> None:
        now = time.monotonic()
        a = read_assignment(self.store)
        if a is not None and self._gens.get("a") != a[1]:
            self._gens["a"] = a[1]
            self.seen.append(Seen(now, "assignment", a[0].epoch, a[0].term, a[0].leader,
                                  dict(a[0].islands)))
        e = read_elite_head(self.store)
        if e is not None and self._gens.get("e") != e[1]:
            self._gens["e"] = e[1]
            _, scores, ids, _ = read_elite(self.store, e[0].key)
            self.seen.append(Seen(now, "elite", e[0].epoch, e[0].term, None, {},
                                  tuple(int(i) for i in ids),
                                  float(scores[0]) if len(scores) else None))

    def assignments(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "assignment"]

    def elites(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "elite"]

    def check_single_leader_per_term(self) -> None:
        """Exactly one leader per term, and terms never go back as epochs go forward."""
        leaders: dict[int, set[str]] = {}
        for s in self.assignments():
            leaders.setdefault(s.term, set()).add(s.leader or "?")
        assert all(len(v) == 1 for v in leaders.values()), leaders
        for kind in (self.assignments(), self.elites()):
            for a, b in zip(kind, kind[1:]):
                assert b.epoch > a.epoch, (a, b)
                assert b.term >= a.term, (a, b)

    def check_elites(self) -> None:
        """No elite holds a duplicate id, and the global best never gets worse."""
        best = float("inf")
        for s in self.elites():
            assert len(set(s.ids)) == len(s.ids), f"duplicate ids in elite epoch {s.epoch}"
            if s.best_score is not None:
                assert s.best_score <= best + 1e-6, f"best regressed at epoch {s.epoch}"
                best = min(best, s.best_score)


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
