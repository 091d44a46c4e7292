"""The coordinator: a lease candidate that, while leader, merges elites and places islands.

The lease is renewed (or watched) on a thread of its own (:class:`LeaseKeeper`), on the
lease's schedule, so a slow cycle never costs the lease; a leader whose lease lapses or moves
to a new term mid-cycle stops acting before its next phase.

One cycle (every ``interval`` seconds: the settings' ``cycle_s``, else the run's): read
heartbeats (liveness by heartbeat generation on our monotonic clock; only changed ones are
read) -> compute the assignment from the workers' rates and write it when it changed (with the
run's totals; :mod:`~islandsync.leader.assigning`) -> one listing of ``islands/``, then only
the HEADs that moved (:class:`~islandsync.bucket.heads.HeadWatch`) -> merge the elite frames
of islands whose HEAD moved into a new elite epoch -> the run's stop decision -> the
``after_merge`` hooks -> now and then, sweep old blobs -> tell the observer
(:class:`~islandsync.leader.observer.LeaderObserver`: the metrics, the run's history). Reads
go out several at a time, so a cycle costs a few round trips whatever the number of islands.
Every write is made only while ``lease.is_leader`` holds, carries the term, and replaces its
record by CAS on the generation this leader last read; a CAS that fails means another leader
is writing, and this one re-reads on its next cycle instead of fighting. No record is written
more than once a second (a GCS limit per object name), and bucket trouble backs the cycle off.

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

from islandsync.bucket.heads import HeadView, HeadWatch, read_concurrently
from islandsync.bucket.layout import FINISHED_KEY, WORKER_ID_RE
from islandsync.bucket.records import (
    EliteHead,
    Finished,
    Head,
    Heartbeat,
    read_finished,
    read_lease,
    write_record,
)
from islandsync.bucket.run import read_spec
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError, NotFound, PreconditionFailed, StoreError
from islandsync.leader.assigning import AssignmentPhase
from islandsync.leader.elite_chain import EliteChain
from islandsync.leader.heartbeats import HeartbeatWatch
from islandsync.leader.housekeeping import KEEP_FALLBACKS, sweep
from islandsync.leader.lease import Lease, LeaseKeeper
from islandsync.leader.observer import CompositeObserver, CycleSeen, LeaderObserver
from islandsync.leader.placement import Policy
from islandsync.leader.settings import DEFAULTS, LeaderSettings
from islandsync.leader.totals import run_totals, stop_reason
from islandsync.store import BlobStore

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Distinct unexpected errors logged with a traceback; past this, one line each.
MAX_LOGGED_ERRORS = 64
#: GCS allows about one write a second to one object name (429 beyond): the leader writes
#: assignment.json and elite/HEAD.json at most this often, whatever its interval.
MIN_WRITE_GAP_S = 1.0
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
    """One candidate (see module doc). Drive it with :meth:`run`, or :meth:`step` in tests.
    ``settings``: this candidate's (:class:`~islandsync.leader.settings.LeaderSettings`; the
    lease and cycle the run's unless they say otherwise); ``observer`` is told what the
    leader does (one, or a :class:`~islandsync.leader.observer.CompositeObserver`)."""

    def __init__(
        self,
        store: BlobStore,
        *,
        candidate: str,
        spec: RunSpec | None = None,
        settings: LeaderSettings = DEFAULTS,
        observer: LeaderObserver | None = None,
        policy: Policy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.candidate = store, candidate
        self.spec = spec or read_spec(store)
        self.settings = settings.for_run(self.spec)
        assert self.settings.lease_s is not None and self.settings.cycle_s is not None
        self.interval = self.settings.cycle_s
        self.policy = policy or Policy()
        # Composed even when one: an observer's error is logged there, never the merge's.
        self.observer = observer if isinstance(observer, CompositeObserver) \
            else CompositeObserver(observer)
        self.clock = clock
        self.lease = Lease(store, candidate, lease_s=self.settings.lease_s, clock=clock)
        self.readers = self.settings.readers
        #: Phases run after the merge while leading, each given the :class:`Cycle`; an error
        #: in one skips it only (StoreError: the rest of the cycle). For e.g. a run history.
        self.after_merge: list[tuple[str, Callable[[Cycle], None]]] = []
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
                                 paced=self._paced, delete=self._delete, observer=self.observer,
                                 readers=self.readers, forged=self._forged)
        self._assigning = AssignmentPhase(
            self.store, self.spec, candidate=self.candidate, term=self._acting_term,
            policy=self.policy, drain_s=self.settings.drain_s, liveness=self.liveness,
            leading=self._leading, paced=self._paced, forged=self._forged,
            observer=self.observer, clock=self.clock)
        self._next_housekeeping = self.clock() + min(60.0, self.settings.housekeeping_s)
        self._orphans: set[str] = set()
        self._heads = HeadWatch(self.store, self.spec.islands, readers=self.readers,
                                what="coordinator")
        self._view: HeadView | None = None
        self._last_heads: dict[int, Head] | None = None  # as the last merge round read them
        self._next_merge = float("-inf")  # our clock
        self._totals: tuple[int, float | None] | None = None
        self._finished = False

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
                interval = min(self.interval, self.spec.heartbeat_interval_s) \
                    if self._assigning.hurry else self.interval
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
            # Before the lease goes: what the observers flush is still this leader's.
            self._guard_observer(self.observer.on_stop)
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
        self._guard_observer(self._observe_lease)
        if not leader:
            if self._acting_term:
                log.info("coordinator %s: no longer leader (term %d)", self.candidate,
                         self._acting_term)
                self._acting_term = 0
            return
        if self.lease.term != self._acting_term:
            log.info("coordinator %s: leader, term %d", self.candidate, self.lease.term)
            self._acting_term = self.lease.term
            self._reset()  # a new assignment phase, of this term
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
            self._next_housekeeping = self.clock() + self.settings.housekeeping_s
            self._guard("housekeeping", self._housekeeping, heads, read[1])
        if read is not None:
            self._guard_observer(self._observe, read[0], read[1], heads)

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

    def _guard_observer(self, fn: Callable[..., None], *args: Any) -> None:
        """An observer's hook: its error (a StoreError too: an observer's bucket is not the
        cycle's) costs the observer, never the leader."""
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001 - see step()
            self._unexpected("observer", err)

    def _observe_lease(self) -> None:
        self.observer.on_lease(self.lease.term, self.lease.is_leader,
                               self.lease.renewal_failures)
        if (counts := getattr(self.store, "counts", None)) is not None:
            self.observer.on_store_ops(counts())  # a standby's watching costs operations too

    def _observe(self, heartbeats: dict[str, tuple[Any, Heartbeat]], alive: set[str],
                 heads: dict[int, Head]) -> None:
        if (counts := getattr(self.store, "counts", None)) is not None:
            self.observer.on_store_ops(counts())
        self.observer.on_cycle(CycleSeen(
            term=self._acting_term, leader=self.candidate,
            heartbeats={w: hb for w, (_, hb) in heartbeats.items()}, alive=frozenset(alive),
            heads=dict(heads)))

    # -- reading -------------------------------------------------------------------------

    def _read_heartbeats(self) -> tuple[dict[str, tuple[Any, Heartbeat]], set[str]]:
        # A leader that could not read the bucket for a while must not count that time
        # against the workers (they were most likely cut off by the same outage). A long
        # cycle is no outage: without its length here, cycles longer than the limit would
        # restart every clock each time, and no worker would ever be found dead.
        return self._workers_watch.look(
            max(2 * self.interval, self.spec.heartbeat_interval_s) + self._cycle_s,
            waiting=self._assigning.unplaced)

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

    # -- placing (:mod:`islandsync.leader.assigning`) ---------------------------------------

    def _assign(self, heartbeats: dict[str, tuple[Any, Heartbeat]], alive: set[str]) -> None:
        self._assigning.assign(heartbeats, alive, self._totals)

    # -- merging -------------------------------------------------------------------------

    def _merge(self, heads: dict[int, Head]) -> None:
        self._chain.merge(heads, self._acting_term)

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
