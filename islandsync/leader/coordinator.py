"""The coordinator: a lease candidate that, while leader, merges elites and places islands.

One cycle (every ``interval`` seconds): renew or watch the lease -> read heartbeats (liveness
by heartbeat generation on our monotonic clock) -> read every island's HEAD -> merge the elite
frames of islands whose HEAD moved into a new elite epoch -> compute the assignment from the
workers' rates and write it when it changed -> now and then, sweep old blobs. Every write is
made only while ``lease.is_leader`` holds, carries the term, and replaces its record by CAS on
the generation this leader last read; a CAS that fails means another leader is writing, and
this one re-reads on its next cycle instead of fighting.

numpy only: a coordinator needs no torch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from islandsync.bucket.elites import encode_elite, read_elite
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    ELITE_PREFIX,
    WORKERS_PREFIX,
    elite_key,
    island_prefix,
    parse_checkpoint_key,
    parse_elite_key,
    parse_heartbeat_key,
)
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import (
    Assignment,
    EliteHead,
    Head,
    Heartbeat,
    read_assignment,
    read_elite_head,
    read_head,
    read_record,
    write_assignment,
    write_elite_head,
)
from islandsync.bucket.run import read_spec
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError, NotFound, PreconditionFailed, StoreError
from islandsync.leader.lease import Lease
from islandsync.leader.merge import Elite, IslandElites, merge_elites
from islandsync.leader.placement import Policy, WorkerView, place
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

KEEP_ELITE_EPOCHS = 3
KEEP_CHECKPOINTS = 3
DEAD_HEARTBEAT_S = 3600.0


class Coordinator:
    """One candidate (see module doc). Drive it with :meth:`run`, or :meth:`step` in tests."""

    def __init__(
        self,
        store: BlobStore,
        *,
        candidate: str,
        spec: RunSpec | None = None,
        lease_s: float = 15.0,
        interval: float = 5.0,
        policy: Policy | None = None,
        drain_s: float = 120.0,
        housekeeping_s: float = 300.0,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.candidate = store, candidate
        self.spec = spec or read_spec(store)
        self.interval, self.drain_s, self.housekeeping_s = interval, drain_s, housekeeping_s
        self.policy = policy or Policy()
        self.metrics, self.clock = metrics, clock
        self.lease = Lease(store, candidate, lease_s=lease_s, clock=clock)
        self.top = self.spec.elite_size
        self._hurry = False
        self._acting_term = 0
        self._reset()

    def _reset(self) -> None:
        """Forget everything cached: a new term starts from what the bucket says."""
        self._heartbeats: dict[str, tuple[int, Heartbeat]] = {}
        # What we saw while leading an earlier term is stale: liveness starts over too.
        self.liveness = Liveness(self.spec.worker_timeout_s, self.clock)
        self._elites = IslandElites(self.store, self.spec)
        self._global: Elite | None = None
        self._elite_head: tuple[EliteHead, int] | None = None
        self._elite_head_generation = 0  # of an unreadable elite HEAD we will replace
        self._elite_loaded = False
        self._placed_at: dict[int, float] = {}
        self._next_housekeeping = self.clock() + min(60.0, self.housekeeping_s)
        self._orphans: set[str] = set()

    # -- driving -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, duration: float | None = None) -> None:
        """Cycle until ``stop`` is set or ``duration`` passes; gives the lease up on the way
        out so that another candidate takes over at once."""
        stop = stop or threading.Event()
        ends = None if duration is None else self.clock() + duration
        try:
            while not stop.is_set() and (ends is None or self.clock() < ends):
                started = self.clock()
                self.step()
                # Islands waiting for a worker to be seen beating: look again sooner.
                interval = min(self.interval, self.spec.heartbeat_interval_s) if self._hurry \
                    else self.interval
                stop.wait(max(0.0, interval - (self.clock() - started)))
        finally:
            self.lease.release()
            if self._acting_term:
                log.info("coordinator %s: gave up the lease (term %d)", self.candidate,
                         self._acting_term)

    def step(self) -> None:
        """One cycle. Bucket trouble is absorbed and retried next cycle: never raises for it."""
        leader = self.lease.step()
        if self.metrics is not None:
            self.metrics.set_leader(self.lease.term, leader)
            self.metrics.lease_renewal_failures(self.lease.renewal_failures)
        if not leader:
            if self._acting_term:
                log.info("coordinator %s: no longer leader (term %d)", self.candidate,
                         self._acting_term)
                self._acting_term = 0
            return
        if self.lease.term != self._acting_term:
            log.info("coordinator %s: leader, term %d", self.candidate, self.lease.term)
            self._acting_term = self.lease.term
            self._reset()
        try:
            heartbeats, alive = self._read_heartbeats()
            # Assignment before the merge: a new term's first write fences the old leader,
            # and failover waits for nothing else.
            self._assign(heartbeats, alive)
            heads = self._read_heads()
            self._merge(heads)
            if self.clock() >= self._next_housekeeping:
                self._next_housekeeping = self.clock() + self.housekeeping_s
                self._housekeeping(heads, alive)
            if self.metrics is not None:
                counts = getattr(self.store, "counts", None)
                if counts is not None:
                    self.metrics.observe_store(counts())
                self.metrics.observe_workers({w: hb.model_dump() for w, (_, hb) in heartbeats.items()},
                                             alive)
                self.metrics.observe_islands({i: {"generation": h.generation, "best": h.best,
                                                  "owner": h.owner} for i, h in heads.items()})
        except StoreError as err:
            log.warning("coordinator: bucket trouble (will retry): %s", err)

    # -- reading -------------------------------------------------------------------------

    def _read_heartbeats(self) -> tuple[dict[str, tuple[int, Heartbeat]], set[str]]:
        seen: dict[str, tuple[int, Heartbeat]] = {}
        listing = self.store.list(WORKERS_PREFIX)
        # A leader that could not read the bucket for a while must not count that time
        # against the workers (they were most likely cut off by the same outage).
        self.liveness.watched(max(2 * self.interval, self.spec.heartbeat_interval_s))
        for info in listing:
            worker = parse_heartbeat_key(info.key)
            if worker is None:
                continue
            self.liveness.observe(worker, info.generation)
            cached = self._heartbeats.get(worker)
            if cached is not None and cached[0] == info.generation:
                seen[worker] = cached
                continue
            try:
                found = read_record(self.store, info.key, Heartbeat)
            except CheckpointError as err:
                log.warning("coordinator: ignoring heartbeat %s: %s", info.key, err)
                continue
            if found is not None:
                seen[worker] = (info.generation, found[0])
        self._heartbeats = seen
        alive = {w for w, (_, hb) in seen.items()
                 if hb.state != "exited" and self.liveness.alive(w)}
        return seen, alive

    def _read_heads(self) -> dict[int, Head]:
        heads: dict[int, Head] = {}
        for island in range(self.spec.islands):
            try:
                current = read_head(self.store, island)
            except CheckpointError as err:
                log.warning("coordinator: %s", err)
                continue
            if current is not None:
                heads[island] = current[0]
        return heads

    # -- merging -------------------------------------------------------------------------

    def _load_global(self) -> None:
        """The newest readable elite epoch, falling back to older ones when it is corrupt."""
        self._elite_loaded = True
        try:
            self._elite_head = read_elite_head(self.store)
        except CheckpointError as err:
            log.warning("coordinator: %s; starting a new elite chain", err)
            info = self.store.stat(ELITE_HEAD_KEY)
            self._elite_head = None
            self._elite_head_generation = info.generation if info else 0
        keys = sorted((i.key for i in self.store.list(ELITE_PREFIX) if parse_elite_key(i.key)),
                      reverse=True)
        if self._elite_head is not None:
            keys = [self._elite_head[0].key] + [k for k in keys if k != self._elite_head[0].key]
        for key in keys:
            try:
                elite = read_elite(self.store, key)
            except (CheckpointError, NotFound) as err:
                log.warning("coordinator: elite %s unreadable: %s", key, err)
                continue
            if elite[0].shape[1:] == (self._elites.width,):
                self._global = elite  # type: ignore[assignment]
                return

    def _merge(self, heads: dict[int, Head]) -> None:
        if not self._elite_loaded:
            self._load_global()
        read = self._elites.refresh(heads)
        if read == 0 and self._global is not None:
            return
        parts = self._elites.parts() + ([self._global] if self._global is not None else [])
        if not any(p[1].shape[0] for p in parts):
            return
        t0 = time.perf_counter()
        result = merge_elites(parts, self.top)
        seconds = time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.observe_merge(seconds, result.candidates, result.duplicates)
        if self._global is not None and _same(result.elite, self._global):
            return
        self._write_elite(result.elite, result.candidates, result.duplicates)

    def _write_elite(self, elite: Elite, candidates: int, duplicates: int) -> None:
        head = self._elite_head
        gen = head[1] if head else self._elite_head_generation
        epoch = (head[0].epoch if head else 0) + 1
        for _ in range(5):  # a stale leader may have left a blob under the next name
            if not self.lease.is_leader:
                return
            try:
                self.store.put(elite_key(epoch), encode_elite(elite, epoch=epoch,
                                                              term=self._acting_term),
                               if_generation=0)
                break
            except PreconditionFailed:
                epoch += 1
        else:
            return
        best = float(elite[1][0]) if elite[1].shape[0] else None
        if best is not None and self.spec.problem.direction == "maximize":
            best = -best
        new = EliteHead(epoch=epoch, key=elite_key(epoch), term=self._acting_term,
                        size=int(elite[1].shape[0]), best=best, duplicates=duplicates,
                        candidates=candidates)
        if not self.lease.is_leader:
            return
        try:
            new_gen = write_elite_head(self.store, new, if_generation=gen)
        except PreconditionFailed:
            log.warning("coordinator: elite HEAD changed under us; re-reading next cycle")
            self._elite_loaded = False
            self._delete(elite_key(epoch))
            return
        self._elite_head, self._global = (new, new_gen), elite
        if self.metrics is not None:
            self.metrics.observe_global_best(best)
        log.info("merge: elite epoch %d (term %d): %d genomes from %d candidates, %d "
                 "duplicates dropped, best %s", epoch, self._acting_term, new.size, candidates,
                 duplicates, "-" if best is None else f"{best:.6g}")
        self._prune_elite(epoch)

    def _prune_elite(self, newest: int) -> None:
        for info in self.store.list(ELITE_PREFIX):
            epoch = parse_elite_key(info.key)
            if epoch is not None and epoch <= newest - KEEP_ELITE_EPOCHS:
                self._delete(info.key)

    # -- placing -------------------------------------------------------------------------

    def _workers(self, heartbeats: dict[str, tuple[int, Heartbeat]],
                 alive: set[str]) -> list[WorkerView]:
        views = []
        for worker in sorted(alive):
            hb = heartbeats[worker][1]
            rate = hb.rate
            cap = self.spec.islands if hb.max_islands is None else hb.max_islands
            left = hb.deadline_in_s
            draining = False
            if left is not None:
                since = self.liveness.since(worker)
                draining = left - (self.clock() - since) <= self.drain_s
            views.append(WorkerView(worker, rate, max(0, cap), draining,
                                    self.liveness.confirmed(worker)))
        return views

    def _assign(self, heartbeats: dict[str, tuple[int, Heartbeat]], alive: set[str]) -> None:
        try:
            read = read_assignment(self.store)
        except CheckpointError as err:
            log.warning("coordinator: %s; replacing it", err)
            info = self.store.stat(ASSIGNMENT_KEY)
            read = None
            gen = info.generation if info else 0
        else:
            gen = read[1] if read else 0
        previous = read[0] if read else None
        if previous is not None and previous.term > self._acting_term:
            return  # a newer leader exists; our lease step will notice soon
        current = dict(previous.islands) if previous else {}
        workers = self._workers(heartbeats, alive)
        now = self.clock()
        for island in current:  # a new term counts the minimum stay from its own start
            self._placed_at.setdefault(island, now)
        placement = place(self.spec.islands, current, workers, placed_at=self._placed_at,
                          now=now, policy=self.policy)
        self._hurry = bool(placement.unplaced) and bool(workers)
        draining = sorted(w.worker for w in workers if w.draining)
        unchanged = (previous is not None and previous.term == self._acting_term
                     and previous.islands == placement.islands
                     and sorted(previous.workers) == sorted(alive)
                     and previous.draining == draining)
        if unchanged:
            return
        new = Assignment(term=self._acting_term, epoch=(previous.epoch if previous else 0) + 1,
                         leader=self.candidate, islands=placement.islands,
                         workers=sorted(alive), draining=draining)
        if not self.lease.is_leader:
            return
        try:
            write_assignment(self.store, new, if_generation=gen)
        except PreconditionFailed:
            log.warning("coordinator: assignment changed under us; re-reading next cycle")
            return
        for island, worker in placement.islands.items():
            if current.get(island) != worker:
                self._placed_at[island] = now
        moved = {r: n for r, n in placement.moves.items() if n}
        if self.metrics is not None:
            for reason, n in moved.items():
                self.metrics.reassignment(reason, n)
        per_worker: dict[str, int] = {}
        for worker in placement.islands.values():
            per_worker[worker] = per_worker.get(worker, 0) + 1
        log.info("assignment epoch %d (term %d): %s%s%s", new.epoch, new.term,
                 ", ".join(f"{w}: {n}" for w, n in sorted(per_worker.items())) or "no workers",
                 f"; moved {moved}" if moved else "",
                 f"; unplaced {placement.unplaced}" if placement.unplaced else "")

    # -- housekeeping --------------------------------------------------------------------

    def _housekeeping(self, heads: dict[int, Head], alive: set[str]) -> None:
        """Each island keeps its last few checkpoints; blobs above HEAD (a writer that lost
        the island) go once seen twice, a housekeeping period apart, so an upload whose HEAD
        CAS is in flight is never swept; heartbeats of workers dead an hour go."""
        orphans: set[str] = set()
        for island, head in heads.items():
            keys = [(p[1], i.key) for i in self.store.list(island_prefix(island))
                    if (p := parse_checkpoint_key(i.key))]
            below = sorted((k for k in keys if k[0] <= head.generation), reverse=True)
            for _, key in below[KEEP_CHECKPOINTS:]:
                if key != head.checkpoint:
                    self._delete(key)
            orphans |= {key for g, key in keys if g > head.generation}
        for key in orphans & self._orphans:
            self._delete(key)
        self._orphans = orphans - self._orphans
        now = time.time()
        for info in self.store.list(WORKERS_PREFIX):
            worker = parse_heartbeat_key(info.key)
            if worker is not None and worker not in alive and now - info.updated.timestamp() > DEAD_HEARTBEAT_S:
                self._delete(info.key)

    def _delete(self, key: str) -> None:
        if not self.lease.is_leader:
            return
        try:
            self.store.delete(key)
        except (NotFound, StoreError):
            pass


def _same(a: Elite, b: Elite) -> bool:
    return a[2].shape == b[2].shape and bool(np.array_equal(a[2], b[2])) \
        and bool(np.array_equal(a[1], b[1]))


def start_candidate(store: BlobStore, *, candidate: str, spec: RunSpec | None = None,
                    **kwargs: Any) -> tuple[Coordinator, threading.Event, threading.Thread]:
    """A coordinator candidate in a background thread of a worker process (so a run of
    notebooks alone has a leader). Set the event and join the thread to stop it."""
    coordinator = Coordinator(store, candidate=candidate, spec=spec, **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=coordinator.run, args=(stop,), daemon=True,
                              name="islandsync-coordinator")
    thread.start()
    return coordinator, stop, thread


__all__ = ["Coordinator", "start_candidate"]
