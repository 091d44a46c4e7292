"""Many workers and leaders on one bucket as threads of this process, for the leader at
scale (``benchmarks/scale.py``) and any test that needs a large cluster on a small machine:
:class:`ThreadCluster`, real :class:`~islandsync.leader.coordinator.Coordinator` candidates
and :class:`SimWorker` s that run the real worker bucket side (``BucketLink``, ``Uploader``)
with a stand-in engine (no torch: islands "evolve" by counters, snapshots are small random
populations), each role on its own :class:`TappedStore` over one local store.

Processes running the CLI are :class:`islandsync.testing.cluster.Cluster`'s.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from islandsync.bucket.checkpoints import IslandSnapshot
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.records import read_assignment, read_head, read_lease
from islandsync.bucket.run import init_run
from islandsync.config import spec_from_flags, spec_hash
from islandsync.config.cadence import Cadence
from islandsync.errors import StoreError
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.store.base import BlobStore
from islandsync.store.counting import CountingStore
from islandsync.worker.bucket_thread import BucketLink
from islandsync.worker.uploader import Uploader

T = TypeVar("T")


# -- one role's store: latency, counts, a log of writes --------------------------------------

class WriteLog:
    """Every write's (key, time.monotonic()) from every role: the per-object write rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)

    def add(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.times[key].append(now)

    def max_per_second(self, since: float = 0.0, until: float = float("inf"),
                       keys: Any = None) -> tuple[int, str | None]:
        """The most writes one object took within any one second, and which object (20 ms
        of timer jitter forgiven: writes paced exactly a second apart count as one a second)."""
        worst, where = 0, None
        with self._lock:
            items = [(k, [t for t in v if since <= t <= until]) for k, v in self.times.items()
                     if keys is None or keys(k)]
        for key, ts in items:
            lo = 0
            for hi in range(len(ts)):
                while ts[hi] - ts[lo] >= 0.98:
                    lo += 1
                if hi - lo + 1 > worst:
                    worst, where = hi - lo + 1, key
        return worst, where


class TappedStore(CountingStore):
    """One role's view of the shared store: CountingStore's latency first, then counted, plus
    a log of the writes and ``dead``, which makes every call fail, as a killed process's calls
    would never reach the bucket."""

    def __init__(self, inner: BlobStore, latency: float, log: WriteLog) -> None:
        super().__init__(inner, latency_s=latency)
        self.log = log
        self.dead = False

    def snapshot(self) -> dict[str, int]:
        return self.by_operation()

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        if self.dead:
            raise StoreError("killed")

        def call() -> T:
            if self.dead:  # killed while this call slept its latency
                raise StoreError("killed")
            if op == "put":
                self.log.add(key)
            return fn()

        return super()._call(op, key, call)


# -- a simulated worker: the real bucket side, a stand-in engine ----------------------------

class SimWorker:
    """BucketLink and Uploader as a real worker runs them; islands advance by counters and
    checkpoint every ``checkpoint_interval_s`` (the first one at a random offset, as workers
    that joined at different times would)."""

    def __init__(self, store: TappedStore, spec: Any, worker_id: str,
                 rng: np.random.Generator) -> None:
        self.store, self.spec, self.worker_id = store, spec, worker_id
        self.rng = rng
        self.pop, self.dim = spec.algorithm.pop, spec.problem.genome.width
        self.hosted: dict[int, list[int]] = {}  # island -> [generation, evals]
        self.lock = threading.Lock()
        self.lost: list[int] = []
        self.stop = threading.Event()
        self.uploader = Uploader(store, owner=worker_id, tag=worker_id,
                                 elite=min(spec.elite_size, self.pop),
                                 meta={"spec_hash": spec_hash(spec),
                                       "direction": spec.problem.direction},
                                 to_user=lambda s: float(s) if np.isfinite(s) else None,
                                 on_lost=self._on_lost)
        self.link = BucketLink(store, spec, worker_id=worker_id, solo=False,
                               max_islands=spec.islands, stats=self._stats,
                               hosted=self._hosted)
        self.thread = threading.Thread(target=self._loop, name=f"sim-{worker_id}", daemon=True)
        self.next_checkpoint = time.monotonic() + rng.uniform(0, spec.checkpoint_interval_s)

    def _hosted(self) -> set[int]:
        with self.lock:
            return set(self.hosted)

    def _on_lost(self, island: int) -> None:
        with self.lock:
            self.lost.append(island)

    def _stats(self) -> dict[str, Any]:
        with self.lock:
            islands = sorted(self.hosted)
            evals = sum(e for _, e in self.hosted.values())
        return {"platform": "sim", "islands": islands, "rate": 1000.0, "evaluations": evals,
                "max_islands": self.spec.islands, "store": self.store.counts()}

    def start(self) -> None:
        self.link.start()
        self.thread.start()

    def kill(self) -> None:
        self.store.dead = True
        self.stop.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.link._stop.set()  # no final checkpoints: the run ends with the benchmark
        self.uploader.close(timeout=5)

    def _snapshot(self, island: int) -> IslandSnapshot:
        generation, evals = self.hosted[island]
        genomes = self.rng.uniform(-5, 5, (self.pop, self.dim)).astype(np.float32)
        scores = (10.0 / (1 + generation) + self.rng.random(self.pop)).astype(np.float32)
        return IslandSnapshot(island, generation, evals, 0, {
            "genomes": genomes, "scores": scores, "ids": genome_ids_numpy(genomes),
            "origin": np.full(self.pop, island, np.int64)})

    def _loop(self) -> None:
        tick = 0.25
        while not self.stop.wait(tick):
            inbox = self.link.take()
            with self.lock:
                for island in self.lost:
                    self.hosted.pop(island, None)
                self.lost = []
                for claim in inbox.claims:
                    snap = claim.snapshot
                    resumed = None
                    if snap is not None and claim.snapshot_key is not None:
                        resumed = (snap.generation, claim.snapshot_key)
                    self.uploader.adopt(claim.island, claim.head_generation, claim.keys,
                                        resumed, claim.lineage)
                    self.hosted[claim.island] = [snap.generation if snap else 0,
                                                 snap.evals if snap else 0]
                    self.link.claimed(claim.island)
                release = sorted(inbox.release & set(self.hosted))
                for island in release:
                    self.uploader.submit(self._snapshot(island), release=True)
                    del self.hosted[island]
                for state in self.hosted.values():
                    state[0] += 1
                    state[1] += self.pop
                if time.monotonic() >= self.next_checkpoint:
                    self.next_checkpoint += self.spec.checkpoint_interval_s
                    for island in self.hosted:
                        self.uploader.submit(self._snapshot(island))
            if inbox.finished is not None:
                return


# -- the cluster -------------------------------------------------------------------------------

@dataclass
class ThreadCluster:
    """Coordinators (real :class:`Coordinator` objects) and :class:`SimWorker` s as threads
    on one local run, every role on a :class:`TappedStore` of its own over the one store
    (latency, counts, a shared :class:`WriteLog`); kills by :meth:`TappedStore` 's ``dead``.
    ``cycles`` keeps each candidate's cycle times when it led (time.monotonic(), seconds)."""

    root: Path
    workers: int
    islands: int
    cadence: Cadence
    latency: float = 0.0
    stop_criterion: bool = True
    log: WriteLog = field(default_factory=WriteLog)

    def __post_init__(self) -> None:
        c = self.cadence
        spec = spec_from_flags(problem="rastrigin", dim=8, islands=self.islands, pop=8,
                               algorithm="ga", checkpoint_interval_s=c.checkpoint_s,
                               heartbeat_interval_s=c.heartbeat_s, seed=1, elite_size=16)
        # A budget no one reaches: followers then judge a stop criterion, the case in which
        # they used to read every island's HEAD at every poll.
        stop = {"max_evals": 10**15} if self.stop_criterion else {}
        self.spec = spec.model_copy(update={
            "assignment_poll_s": c.poll_s, "worker_timeout_s": c.worker_timeout_s,
            "stop": spec.stop.model_copy(update=stop)})
        self.raw = LocalStore(self.root)
        init_run(self.raw, self.spec)
        self.rng = np.random.default_rng(7)
        self.sims: list[SimWorker] = []
        self.coords: dict[str, tuple[Coordinator, TappedStore, threading.Event,
                                     threading.Thread]] = {}
        self.cycles: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def tap(self) -> TappedStore:
        return TappedStore(self.raw, self.latency, self.log)

    def start_coordinator(self, name: str) -> None:
        tap = self.tap()
        c = Coordinator(tap, candidate=name, spec=self.spec, settings=LeaderSettings(
            lease_s=self.cadence.lease_s, cycle_s=self.cadence.cycle_s))
        step = c.step

        def timed() -> None:  # the cycle as run() calls it, timed when this one led it
            t0 = time.perf_counter()
            step()
            # Still acting for a term at the end: it led this cycle, even when its lease
            # lapsed during it (as the old leader's did, in every cycle past ~128 islands).
            if c.lease.is_leader or getattr(c, "_acting_term", 0):
                self.cycles[name].append((time.monotonic(), time.perf_counter() - t0))

        c.step = timed  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=c.run, args=(stop,), name=f"coord-{name}", daemon=True)
        thread.start()
        self.coords[name] = (c, tap, stop, thread)

    def start_workers(self) -> None:
        for n in range(self.workers):
            sim = SimWorker(self.tap(), self.spec, f"w{n:03d}", np.random.default_rng(n))
            self.sims.append(sim)
            sim.start()

    def kill_coordinator(self, name: str) -> None:
        _, tap, stop, _ = self.coords[name]
        tap.dead = True
        stop.set()

    def close(self) -> None:
        for _, tap, stop, _ in self.coords.values():
            stop.set()
        for sim in self.sims:
            sim.stop.set()
        for sim in self.sims:
            sim.close()
        for _, _, _, thread in self.coords.values():
            thread.join(timeout=30)

    # what the bucket says, read without latency or counting

    def lease(self) -> tuple[int, str | None]:
        try:
            found = read_lease(self.raw)
        except Exception:  # noqa: BLE001 - mid-write garbage reads as no lease
            return 0, None
        return (found[0].term, found[0].holder) if found else (0, None)

    def assignment_term(self) -> int:
        found = read_assignment(self.raw)
        return found[0].term if found else 0

    def owners(self) -> dict[int, str | None]:
        out = {}
        for i in range(self.islands):
            found = read_head(self.raw, i)
            out[i] = found[0].owner if found and not found[0].released else None
        return out


__all__ = ["SimWorker", "TappedStore", "ThreadCluster", "WriteLog"]
