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
from typing import Any, TypeVar

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
    landed,
    read_assignment,
    read_elite_head,
    read_head,
    read_record,
    stamp,
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
T = TypeVar("T")

KEEP_ELITE_EPOCHS = 3
#: Checkpoints at or below an island's HEAD that HEAD's lineage does not name, kept as a last
#: resort for a reader whose whole lineage is unreadable (newest first).
KEEP_FALLBACKS = 2
DEAD_HEARTBEAT_S = 3600.0
#: Distinct unexpected errors logged with a traceback; past this, one line each.
MAX_LOGGED_ERRORS = 64


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
        self._logged: set[tuple[str, str, str]] = set()
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
        """One cycle. Never raises: bucket trouble is retried next cycle, and an unexpected
        error (a bug, or input nothing foresaw) skips only the phase it happened in, logged
        with its traceback the first time, so the leader loop stays alive either way."""
        try:
            leader = self.lease.step()
        except Exception as err:  # noqa: BLE001 - a dead leader thread is worse than any error
            self._unexpected("lease", err)
            return
        if self.metrics is not None:
            self._guard("metrics", self._observe_lease)
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
            read = self._guard("heartbeats", self._read_heartbeats)
            if read is not None:
                # Assignment before the merge: a new term's first write fences the old
                # leader, and failover waits for nothing else.
                self._guard("assignment", self._assign, *read)
            heads = self._guard("heads", self._read_heads)
            if heads is not None:
                self._guard("merge", self._merge, heads)
                if read is not None and self.clock() >= self._next_housekeeping:
                    self._next_housekeeping = self.clock() + self.housekeeping_s
                    self._guard("housekeeping", self._housekeeping, heads, read[1])
                if read is not None and self.metrics is not None:
                    self._guard("metrics", self._observe, read[0], read[1], heads)
        except StoreError as err:
            log.warning("coordinator: bucket trouble (will retry): %s", err)

    def _guard(self, phase: str, fn: Callable[..., T], *args: Any) -> T | None:
        """``fn(*args)``, or None when it raised anything but StoreError (which the cycle
        handles as a whole: the bucket is unreachable, so every phase would fail alike)."""
        try:
            return fn(*args)
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - see step()
            self._unexpected(phase, err)
            return None

    def _unexpected(self, phase: str, err: Exception) -> None:
        sig = (phase, type(err).__name__, str(err)[:200])
        if sig in self._logged:
            log.warning("coordinator: %s failed again (%s); skipped this cycle", phase,
                        type(err).__name__)
            return
        if len(self._logged) < MAX_LOGGED_ERRORS:
            self._logged.add(sig)
        log.exception("coordinator: unexpected error in %s (skipped this cycle; the leader "
                      "carries on)", phase)

    def _observe_lease(self) -> None:
        self.metrics.set_leader(self.lease.term, self.lease.is_leader)
        self.metrics.lease_renewal_failures(self.lease.renewal_failures)

    def _observe(self, heartbeats: dict[str, tuple[int, Heartbeat]], alive: set[str],
                 heads: dict[int, Head]) -> None:
        counts = getattr(self.store, "counts", None)
        if counts is not None:
            self.metrics.observe_store(counts())
        self.metrics.observe_workers({w: hb.model_dump() for w, (_, hb) in heartbeats.items()},
                                     alive)
        self.metrics.observe_islands({i: {"generation": h.generation, "best": h.best,
                                          "owner": h.owner} for i, h in heads.items()})

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
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - one bad record skips that worker only
                log.warning("coordinator: ignoring heartbeat %s: %s", info.key, _brief(err))
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
            except StoreError:
                raise
            except Exception as err:  # noqa: BLE001 - one bad record skips that island only
                log.warning("coordinator: island %d skipped: %s", island, _brief(err))
                continue
            if current is not None:
                heads[island] = current[0]
        return heads

    # -- merging -------------------------------------------------------------------------

    def _load_global(self) -> None:
        """The newest readable elite epoch, falling back to older ones when it is corrupt.
        Marked loaded only once done: a StoreError on the way leaves it unloaded, and the
        merge waits, because merging without the previous global elite loses its best."""
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
                elite = read_elite(self.store, key, width=self._elites.width,
                                   max_size=self.top, kind=self.spec.problem.genome.kind)
            except (CheckpointError, NotFound) as err:
                log.warning("coordinator: elite %s unreadable: %s", key, err)
                continue
            self._global = elite  # type: ignore[assignment]
            break
        self._elite_loaded = True

    def _merge(self, heads: dict[int, Head]) -> None:
        if not self._elite_loaded:
            try:
                self._load_global()
            except StoreError as err:
                log.warning("coordinator: cannot read the global elite (%s); no merge this "
                            "cycle", err)
                return
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
        new = stamp(EliteHead(epoch=epoch, key=elite_key(epoch), term=self._acting_term,
                              size=int(elite[1].shape[0]), best=best, duplicates=duplicates,
                              candidates=candidates))
        if not self.lease.is_leader:
            return
        try:
            new_gen = write_elite_head(self.store, new, if_generation=gen)
        except PreconditionFailed:
            # A retried write whose first attempt landed fails its own precondition: then
            # HEAD names our epoch, which must not be deleted.
            landed_gen = landed(self.store, ELITE_HEAD_KEY, new, EliteHead)
            if landed_gen is None:
                log.warning("coordinator: elite HEAD changed under us; re-reading next cycle")
                self._elite_loaded = False
                self._delete(elite_key(epoch))
                return
            new_gen = landed_gen
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
        new = stamp(Assignment(term=self._acting_term,
                               epoch=(previous.epoch if previous else 0) + 1,
                               leader=self.candidate, islands=placement.islands,
                               workers=sorted(alive), draining=draining))
        if not self.lease.is_leader:
            return
        try:
            write_assignment(self.store, new, if_generation=gen)
        except PreconditionFailed:
            if landed(self.store, ASSIGNMENT_KEY, new, Assignment) is None:
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
        """Sweep old blobs, never one that a HEAD names. Each island keeps every checkpoint
        on HEAD's lineage, and of the others at or below HEAD the :data:`KEEP_FALLBACKS`
        newest (a reader's last resort); an orphan of a killed owner must not push the real
        lineage out. Blobs above HEAD (a writer that lost the island) go once seen twice, a
        housekeeping period apart, so an upload whose HEAD CAS is in flight is never swept.
        Heartbeats of workers dead an hour go."""
        named = {key for head in heads.values() for key in head.lineage()}
        orphans: set[str] = set()
        for island, head in heads.items():
            keys = sorted(((p[1], i.key) for i in self.store.list(island_prefix(island))
                           if (p := parse_checkpoint_key(i.key)) and p[0] == island),
                          reverse=True)
            fallbacks = [k for g, k in keys if g <= head.generation and k not in named]
            for key in fallbacks[KEEP_FALLBACKS:]:
                self._delete(key)
            orphans |= {k for g, k in keys if g > head.generation and k not in named}
        for key in orphans & self._orphans:
            self._delete(key)
        self._orphans = orphans - self._orphans
        now = time.time()
        for info in self.store.list(WORKERS_PREFIX):
            worker = parse_heartbeat_key(info.key)
            if worker is not None and worker not in alive \
                    and now - info.updated.timestamp() > DEAD_HEARTBEAT_S:
                self._delete(info.key)

    def _delete(self, key: str) -> None:
        if not self.lease.is_leader:
            return
        try:
            self.store.delete(key)
        except (NotFound, StoreError):
            pass


def _brief(err: Exception) -> str:
    return str(err) if isinstance(err, CheckpointError) else f"{type(err).__name__}: {err}"


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
