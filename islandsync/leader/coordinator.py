"""The coordinator: a lease candidate that, while leader, merges elites and places islands.

The lease is renewed (or watched) on a thread of its own (:class:`LeaseKeeper`), on the
lease's schedule, so a slow cycle never costs the lease; a leader whose lease lapses or moves
to a new term mid-cycle stops acting before its next phase.

One cycle (every ``interval`` seconds): read heartbeats (liveness by heartbeat generation on
our monotonic clock; only changed ones are read) -> compute the assignment from the workers'
rates and write it when it changed (with the run's totals) -> one listing of ``islands/``,
then only the HEADs that moved (:class:`~islandsync.bucket.heads.HeadWatch`) -> merge the
elite frames of islands whose HEAD moved into a new elite epoch -> the run's stop decision
-> the ``after_merge`` hooks -> now and then, sweep old blobs. Reads go out several at a time,
so a cycle costs a few round trips whatever the number of islands. Every write is made only
while ``lease.is_leader`` holds, carries the term, and replaces its record by CAS on the
generation this leader last read; a CAS that fails means another leader is writing, and this
one re-reads on its next cycle instead of fighting. No record is written more than once a
second (a GCS limit per object name), and bucket trouble backs the cycle off.

numpy only: a coordinator needs no torch.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from islandsync.bucket.heads import DEFAULT_READERS, HeadView, HeadWatch, read_concurrently
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    FINISHED_KEY,
    WORKER_ID_RE,
)
from islandsync.bucket.records import (
    Assignment,
    EliteHead,
    Finished,
    Head,
    Heartbeat,
    read_assignment,
    read_finished,
    read_lease,
    stamp,
    write_fenced,
    write_record,
)
from islandsync.bucket.run import read_spec
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError, NotFound, PreconditionFailed, StoreError
from islandsync.leader.elite_chain import EliteChain
from islandsync.leader.heartbeats import HeartbeatWatch
from islandsync.leader.lease import Lease, LeaseKeeper
from islandsync.leader.placement import Policy, WorkerView, place
from islandsync.leader.housekeeping import KEEP_FALLBACKS, sweep
from islandsync.leader.totals import run_totals, stop_reason
from islandsync.store import BlobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Distinct unexpected errors logged with a traceback; past this, one line each.
MAX_LOGGED_ERRORS = 64
#: GCS allows about one write a second to one object name (429 beyond): the leader writes
#: assignment.json and elite/HEAD.json at most this often, whatever its interval.
MIN_WRITE_GAP_S = 1.0
#: An assignment whose placement is unchanged is rewritten for the run's totals alone at most
#: this often: followers read it on every change, and the stop decision does not wait for it
#: (the leader writes finished.json itself).
TOTALS_EVERY_S = 30.0
#: Cycles after bucket trouble wait up to this many intervals (doubling): a bucket answering
#: 429 gets breathing room, and the lease is kept on its own thread meanwhile.
MAX_BACKOFF = 4


@dataclass
class Cycle:
    """What one cycle has read so far, for the phases after it (and ``after_merge`` hooks)."""

    heartbeats: dict[str, tuple[Any, Heartbeat]] | None = None
    alive: set[str] | None = None
    view: HeadView | None = None
    totals: tuple[int, float | None] | None = None  # (evaluations, best) of the run
    extra: dict[str, Any] = field(default_factory=dict)


class Coordinator:
    """One candidate (see module doc). Drive it with :meth:`run`, or :meth:`step` in tests."""

    def __init__(
        self,
        store: BlobStore,
        *,
        candidate: str,
        spec: RunSpec | None = None,
        lease_s: float | None = None,
        interval: float | None = None,
        policy: Policy | None = None,
        drain_s: float = 120.0,
        housekeeping_s: float = 300.0,
        metrics: Any = None,
        clock: Callable[[], float] = time.monotonic,
        readers: int = DEFAULT_READERS,
    ) -> None:
        self.store, self.candidate = store, candidate
        self.spec = spec or read_spec(store)
        # The run's cadence (run.json) unless the caller (a coordinator flag) says otherwise.
        lease_s, interval = lease_s or self.spec.lease_s, interval or self.spec.leader_cycle_s
        self.interval, self.drain_s, self.housekeeping_s = interval, drain_s, housekeeping_s
        self.policy = policy or Policy()
        self.metrics, self.clock = metrics, clock
        self.lease = Lease(store, candidate, lease_s=lease_s, clock=clock)
        self.top = self.spec.elite_size
        self.readers = readers
        #: Phases run after the merge while leading, each given the :class:`Cycle`; an error
        #: in one skips it only (StoreError: the rest of the cycle). For e.g. a run history.
        self.after_merge: list[tuple[str, Callable[[Cycle], None]]] = []
        self._hurry = False
        self._acting_term = 0
        self._trouble = 0  # cycles in a row that met bucket trouble
        self._cycle_s = 0.0  # how long the last whole cycle took (our clock)
        self._keeper: LeaseKeeper | None = None
        self._wake = threading.Event()
        self._last_write: dict[str, float] = {}  # key -> time.monotonic() of our last write
        self._logged: set[tuple[str, str, str]] = set()
        self._finished_look_at = float("-inf")  # our clock: when done() reads it next
        #: The run's stop reason once this candidate has seen finished.json (``run`` with
        #: ``until_finished`` looks for it), else None.
        self.finish_reason: str | None = None
        self._finish_seen_at = 0.0
        self._alive: set[str] = set()  # the workers the last cycle found alive, leading
        self._reset()

    def _reset(self) -> None:
        """Forget everything cached: a new term starts from what the bucket says."""
        # What we saw while leading an earlier term is stale: liveness starts over too.
        self._workers_watch = HeartbeatWatch(
            self.store, self.spec.worker_timeout_s, clock=self.clock, readers=self.readers,
            listing_s=self.spec.worker_listing_s, waiting_s=self.spec.heartbeat_interval_s)
        self.liveness = self._workers_watch.liveness
        self._chain = EliteChain(self.store, self.spec, leading=self._leading,
                                 paced=self._paced, delete=self._delete, metrics=self.metrics,
                                 readers=self.readers, forged=self._forged)
        self._placed_at: dict[int, float] = {}
        self._next_housekeeping = self.clock() + min(60.0, self.housekeeping_s)
        self._orphans: set[str] = set()
        self._heads = HeadWatch(self.store, self.spec.islands, readers=self.readers,
                                what="coordinator")
        self._view: HeadView | None = None
        self._last_heads: dict[int, Head] | None = None  # as the last merge round read them
        self._next_merge, self._unplaced = float("-inf"), False  # our clock
        self._totals: tuple[int, float | None] | None = None
        self._totals_at = float("-inf")  # our clock, when an assignment last carried them
        self._finished = False
        self._assigned: Assignment | None = None  # what this term last wrote

    # -- driving -------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None, duration: float | None = None, *,
            until_finished: bool = False) -> None:
        """Cycle until ``stop`` is set or ``duration`` passes (or, ``until_finished``, the run
        is finished: see :meth:`done`); gives the lease up on the way out so that another
        candidate takes over at once. The lease is kept by a thread of its own meanwhile,
        which wakes this loop when leadership is won or lost."""
        stop = stop or threading.Event()
        ends = None if duration is None else self.clock() + duration
        try:
            while not stop.is_set() and (ends is None or self.clock() < ends):
                if self._keeper is None or not self._keeper.alive:
                    if self._keeper is not None:
                        log.error("coordinator %s: the lease thread died; restarting it",
                                  self.candidate)
                    self._keeper = LeaseKeeper(
                        self.lease, stop=stop, on_change=self._wake.set,
                        watch_s=min(self.interval, self.lease.lease_s / 3)).start()
                started = self.clock()
                self.step()
                if until_finished and self.done():
                    break
                # Islands waiting for a worker to be seen beating: look again sooner.
                interval = min(self.interval, self.spec.heartbeat_interval_s) if self._hurry \
                    else self.interval
                wait = interval - (self.clock() - started)
                if self._trouble:
                    wait = interval * min(MAX_BACKOFF, 2 ** (self._trouble - 1))
                elif (death := self._next_death()) is not None:
                    # Look again the moment a silent worker's timeout runs out, not up to
                    # an interval later: its islands move that much sooner.
                    wait = min(wait, death - self.clock() + 0.05)
                self._wake.wait(max(0.0, wait))
                self._wake.clear()
        finally:
            if self._keeper is not None:
                self._keeper.stop()
                self._keeper = None
            self.lease.release()
            if self._acting_term:
                log.info("coordinator %s: gave up the lease (term %d)", self.candidate,
                         self._acting_term)

    def done(self) -> bool:
        """The run is finished (a valid ``finished.json``, whoever wrote it) and this
        candidate has nothing left to do for it: a follower at once; the leader once no
        worker is alive (their final checkpoints, written before their last heartbeat, are
        merged by then), or a worker timeout after it saw the decision."""
        if self.finish_reason is None:
            # At most once a merge interval: a stop decision can wait that long, the budget not.
            if self.clock() < self._finished_look_at:
                return False
            self._finished_look_at = self.clock() + self.spec.merge_interval_s
            try:
                found = read_finished(self.store)
            except (CheckpointError, StoreError):
                return False  # only a valid record stops a run; trouble: look next cycle
            if found is None:
                return False
            self.finish_reason, self._finish_seen_at = found[0].reason, self.clock()
            log.info("coordinator %s: the run is finished (%s)", self.candidate,
                     self.finish_reason)
        return (not self._acting_term or not self._alive
                or self.clock() - self._finish_seen_at >= self.spec.worker_timeout_s)

    @property
    def _elite_head(self) -> tuple[EliteHead, Any] | None:
        return self._chain.head

    def _next_death(self) -> float | None:
        return self._workers_watch.next_death() if self._acting_term else None

    def _leading(self) -> bool:
        """Still the leader of the term this cycle acts for: checked before every phase (the
        lease thread may have lost the lease, or lost and won it again, meanwhile)."""
        return self.lease.is_leader and self.lease.term == self._acting_term

    def step(self) -> None:
        """One cycle. Never raises: bucket trouble is retried next cycle, and an unexpected
        error (a bug, or input nothing foresaw) skips only the phase it happened in, logged
        with its traceback the first time, so the leader loop stays alive either way.
        Without a lease thread (tests drive ``step`` alone) the lease is stepped here."""
        if self._keeper is None or not self._keeper.alive:
            try:
                self.lease.step()
            except Exception as err:  # noqa: BLE001 - a dead leader thread is worse than any error
                self._unexpected("lease", err)
                return
        leader = self.lease.is_leader
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
        cycle, started = Cycle(), self.clock()
        try:
            self._cycle(cycle)
            self._trouble = 0
            self._cycle_s = self.clock() - started
        except StoreError as err:
            self._trouble += 1
            log.warning("coordinator: bucket trouble (will retry): %s", err)

    def _cycle(self, cycle: Cycle) -> None:
        """The phases of a cycle, in order; each starts only while still leading."""
        read = self._guard("heartbeats", self._read_heartbeats)
        if read is not None:
            cycle.heartbeats, cycle.alive = read
            self._alive = read[1]
            # Assignment before the merge: a new term's first write fences the old
            # leader, and failover waits for nothing else.
            if self._leading():
                self._guard("assignment", self._assign, *read)
        if not self._leading():
            return
        # HEADs and merge every merge_interval_s (0: each cycle); in between, as last read.
        fresh = self.clock() >= self._next_merge or self._last_heads is None
        heads = self._guard("heads", self._read_heads) if fresh else self._last_heads
        if heads is None or not self._leading():
            return
        cycle.view, cycle.totals = self._view, self._totals
        if fresh:
            self._next_merge = self.clock() + self.spec.merge_interval_s
            self._last_heads = heads
            self._guard("merge", self._merge, heads)
            cycle.totals = self._guard("totals", self._decide, heads)
        for name, hook in list(self.after_merge):
            if not self._leading():
                return
            self._guard(name, hook, cycle)
        if read is not None and fresh and self.clock() >= self._next_housekeeping \
                and self._leading():  # from a fresh listing only
            self._next_housekeeping = self.clock() + self.housekeeping_s
            self._guard("housekeeping", self._housekeeping, heads, read[1])
        if read is not None and self.metrics is not None:
            self._guard("metrics", self._observe, read[0], read[1], heads)

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
        if (counts := getattr(self.store, "counts", None)) is not None:
            self.metrics.observe_store(counts())  # a standby's watching costs operations too

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

    def _read_heartbeats(self) -> tuple[dict[str, tuple[Any, Heartbeat]], set[str]]:
        # A leader that could not read the bucket for a while must not count that time
        # against the workers (they were most likely cut off by the same outage). A long
        # cycle is no outage: without its length here, cycles longer than the limit would
        # restart every clock each time, and no worker would ever be found dead.
        return self._workers_watch.look(
            max(2 * self.interval, self.spec.heartbeat_interval_s) + self._cycle_s,
            waiting=self._unplaced)

    def _read_heads(self) -> dict[int, Head]:
        """Every island's HEAD: one listing, then only the HEADs that moved (see
        :mod:`islandsync.bucket.heads`). A HEAD that met bucket trouble is served as last
        read, and is not fresh (housekeeping leaves its island alone)."""
        view = self._heads.look()
        if view.failed:
            log.warning("coordinator: %d island HEAD(s) unreadable this cycle (bucket "
                        "trouble); using the last ones read", view.failed)
        self._view = view
        return view.heads

    # -- merging -------------------------------------------------------------------------

    def _merge(self, heads: dict[int, Head]) -> None:
        self._chain.merge(heads, self._acting_term)

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
        garbage = read is None and gen != 0
        if previous is not None and previous.term > self._acting_term:
            if not self._forged(previous.term, ASSIGNMENT_KEY):
                return  # a newer leader exists; our lease step will notice soon
            previous, garbage = None, True
        if previous is None:
            # Unreadable or forged: carry on from our own last assignment of this term (so
            # nothing moves for it), replacing the blob by CAS on its generation.
            previous = self._assigned
        current = dict(previous.islands) if previous else {}
        workers = self._workers(heartbeats, alive)
        now = self.clock()
        for island in current:  # a new term counts the minimum stay from its own start
            self._placed_at.setdefault(island, now)
        placement = place(self.spec.islands, current, workers, placed_at=self._placed_at,
                          now=now, policy=self.policy)
        self._hurry = bool(placement.unplaced) and bool(workers)
        self._unplaced = bool(placement.unplaced)
        draining = sorted(w.worker for w in workers if w.draining)
        # The run's totals as of the last cycle's HEADs (a new term's first assignment
        # carries its predecessor's until then).
        totals = self._totals or ((previous.evaluations, previous.best) if previous
                                  else (None, None))
        unchanged = (previous is not None and previous.term == self._acting_term
                     and previous.islands == placement.islands
                     and sorted(previous.workers) == sorted(alive)
                     and previous.draining == draining)
        stale_totals = previous is not None and totals != (previous.evaluations, previous.best) \
            and (previous.evaluations is None or now - self._totals_at >= TOTALS_EVERY_S)
        if unchanged and not stale_totals and not garbage:
            return
        new = stamp(Assignment(term=self._acting_term,
                               epoch=(previous.epoch if previous else 0) + 1,
                               leader=self.candidate, islands=placement.islands,
                               workers=sorted(alive), draining=draining,
                               evaluations=totals[0], best=totals[1]))
        with self._paced(ASSIGNMENT_KEY):
            if not self._leading():
                return
            # Read back by nonce after a lost reply or our own resent write's 412.
            if write_fenced(self.store, ASSIGNMENT_KEY, new, Assignment,
                            if_generation=gen) is None:
                log.warning("coordinator: assignment changed under us; re-reading next cycle")
                return
        self._totals_at = now
        self._assigned = new
        if unchanged:
            return  # the run's totals only
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

    def _forged(self, term: int, key: str) -> bool:
        """A record of ``term`` above the one we lead: True when the lease still names us in
        our term, so no lease vouches for ``term`` (a forged record, to be replaced); False
        when the lease moved on (we are deposed) or cannot be read (wait for our renewal)."""
        try:
            lease = read_lease(self.store)
        except CheckpointError:
            return False
        if lease is None or lease[0].holder != self.candidate \
                or lease[0].term != self._acting_term:
            return False
        log.warning("coordinator: %s carries term %d, above the lease's %d: no lease vouches "
                    "for it; replacing it", key, term, self._acting_term)
        return True

    # -- the run's totals and its stop decision --------------------------------------------

    def _decide(self, heads: dict[int, Head]) -> tuple[int, float | None]:
        """The run's totals from the HEADs (and the global elite's best), kept for the next
        assignment; when a stop criterion is met, the leader records the stop decision
        (``finished.json``, create-only, which every worker already polls), so no follower
        needs to read every island's HEAD to judge it."""
        elite = self._elite_head
        evaluations, best = run_totals(heads.values(), self.spec,
                                       elite[0].best if elite is not None else None)
        self._totals = (evaluations, best)
        reason = stop_reason(self.spec, evaluations, best)
        if reason is not None and not self._finished and self._leading():
            record = Finished(reason=reason, evals=evaluations, best=best,
                              by=self.candidate if WORKER_ID_RE.match(self.candidate) else None)
            try:
                write_record(self.store, FINISHED_KEY, record, if_generation=0)
                log.info("coordinator: the run is finished (%s): %d evaluations, best %s",
                         reason, evaluations, best)
            except PreconditionFailed:
                pass  # already decided, by a worker or an earlier term: first writer wins
            self._finished = True
        return self._totals

    @contextlib.contextmanager
    def _paced(self, key: str) -> Iterator[None]:
        """Wait until :data:`MIN_WRITE_GAP_S` has passed since our last write to ``key``
        ended, then write in the ``with`` block (real time: the limit is the bucket's).
        Callers check the lease inside the block, after the wait."""
        last = self._last_write.get(key)
        if last is not None:
            gap = MIN_WRITE_GAP_S - (time.monotonic() - last)
            if gap > 0:
                time.sleep(gap)
        try:
            yield
        finally:
            self._last_write[key] = time.monotonic()

    # -- housekeeping --------------------------------------------------------------------

    def _housekeeping(self, heads: dict[int, Head], alive: set[str]) -> None:
        """Sweep old checkpoints (:mod:`islandsync.leader.housekeeping`: never one a HEAD names),
        and heartbeats of workers we have watched stand still for an hour (our clock: the
        bucket's stamps are not compared with it)."""
        view = self._view if self._view is not None else self._heads.look()
        doomed, self._orphans = sweep(view, heads, self._orphans)
        doomed += self._workers_watch.long_dead(alive)
        read_concurrently(self._delete, doomed, readers=self.readers)

    def _delete(self, key: str) -> None:
        if not self._leading():
            return
        try:
            self.store.delete(key)
        except (NotFound, StoreError):
            pass


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


__all__ = ["KEEP_FALLBACKS", "Coordinator", "Cycle", "start_candidate"]
