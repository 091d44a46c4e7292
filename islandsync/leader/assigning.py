"""The cycle's assignment phase: islands placed on the live workers, ``assignment.json``
written by CAS when the placement (or, now and then, only the run's totals) changed.

One :class:`AssignmentPhase` lives for one term of one leader (:mod:`islandsync.leader.
coordinator` makes a new one with each term): what it wrote and when each island was placed
are that term's. In a new term it is the first write, so it fences the old leader.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from islandsync.bucket.layout import ASSIGNMENT_KEY
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import Assignment, Heartbeat, read_assignment, stamp, write_fenced
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError
from islandsync.leader.observer import LeaderObserver
from islandsync.leader.placement import Placement, Policy, WorkerView, place
from islandsync.store import BlobStore

log = logging.getLogger("islandsync.leader.coordinator")  # one logger for the leader's story

#: An assignment whose placement is unchanged is rewritten for the run's totals alone at most
#: this often: followers read it on every change, and the stop decision does not wait for it
#: (the leader writes finished.json itself).
TOTALS_EVERY_S = 30.0


class AssignmentPhase:
    """One term's assignment phase (see module doc). ``hurry``: islands wait for a worker
    that is alive (look again sooner); ``unplaced``: islands wait at all."""

    def __init__(self, store: BlobStore, spec: RunSpec, *, candidate: str, term: int,
                 policy: Policy, drain_s: float, liveness: Liveness,
                 leading: Callable[[], bool],
                 paced: Callable[[str], contextlib.AbstractContextManager[None]],
                 forged: Callable[[int, str], bool], observer: LeaderObserver,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.spec, self.candidate, self.term = store, spec, candidate, term
        self.policy, self.drain_s, self.liveness, self.clock = policy, drain_s, liveness, clock
        self.leading, self.paced, self.forged, self.observer = leading, paced, forged, observer
        self.placed_at: dict[int, float] = {}
        self.assigned: Assignment | None = None  # what this term last wrote
        self.totals_at = float("-inf")  # our clock, when an assignment last carried them
        self.hurry = self.unplaced = False

    def workers(self, heartbeats: dict[str, tuple[Any, Heartbeat]],
                alive: set[str]) -> list[WorkerView]:
        views = []
        for worker in sorted(alive):
            hb = heartbeats[worker][1]
            cap = self.spec.islands if hb.max_islands is None else hb.max_islands
            left = hb.deadline_in_s
            draining = False
            if left is not None:
                since = self.liveness.since(worker)
                draining = left - (self.clock() - since) <= self.drain_s
            views.append(WorkerView(worker, hb.rate, max(0, cap), draining,
                                    self.liveness.confirmed(worker)))
        return views

    def _previous(self) -> tuple[Assignment | None, Any, bool] | None:
        """The assignment to go on from, the generation to replace and whether the blob is
        garbage; None when a newer leader wrote it."""
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
        if previous is not None and previous.term > self.term:
            if not self.forged(previous.term, ASSIGNMENT_KEY):
                return None  # a newer leader exists; our lease step will notice soon
            previous, garbage = None, True
        # Unreadable or forged: carry on from our own last assignment of this term (so
        # nothing moves for it), replacing the blob by CAS on its generation.
        return (previous if previous is not None else self.assigned), gen, garbage

    def assign(self, heartbeats: dict[str, tuple[Any, Heartbeat]], alive: set[str],
               totals: tuple[int, float | None] | None) -> None:
        """Place the islands and write the assignment when it changed. ``totals``: the
        run's (evaluations, best) as of the last cycle's HEADs, or None (a new term's first
        assignment carries its predecessor's until then)."""
        found = self._previous()
        if found is None:
            return
        previous, gen, garbage = found
        current = dict(previous.islands) if previous else {}
        workers = self.workers(heartbeats, alive)
        now = self.clock()
        for island in current:  # a new term counts the minimum stay from its own start
            self.placed_at.setdefault(island, now)
        placement = place(self.spec.islands, current, workers, placed_at=self.placed_at,
                          now=now, policy=self.policy)
        self.hurry = bool(placement.unplaced) and bool(workers)
        self.unplaced = bool(placement.unplaced)
        draining = sorted(w.worker for w in workers if w.draining)
        totals = totals or ((previous.evaluations, previous.best) if previous
                            else (None, None))
        unchanged = (previous is not None and previous.term == self.term
                     and previous.islands == placement.islands
                     and sorted(previous.workers) == sorted(alive)
                     and previous.draining == draining)
        stale_totals = previous is not None and totals != (previous.evaluations, previous.best) \
            and (previous.evaluations is None or now - self.totals_at >= TOTALS_EVERY_S)
        if unchanged and not stale_totals and not garbage:
            return
        new = stamp(Assignment(term=self.term, epoch=(previous.epoch if previous else 0) + 1,
                               leader=self.candidate, islands=placement.islands,
                               workers=sorted(alive), draining=draining,
                               evaluations=totals[0], best=totals[1]))
        with self.paced(ASSIGNMENT_KEY):
            if not self.leading():
                return
            # Read back by nonce after a lost reply or our own resent write's 412.
            if write_fenced(self.store, ASSIGNMENT_KEY, new, Assignment,
                            if_generation=gen) is None:
                log.warning("coordinator: assignment changed under us; re-reading next cycle")
                return
        self.totals_at, self.assigned = now, new
        if not unchanged:  # else the run's totals only
            self._placed(new, current, placement, now)

    def _placed(self, new: Assignment, current: dict[int, str], placement: Placement,
                now: float) -> None:
        for island, worker in placement.islands.items():
            if current.get(island) != worker:
                self.placed_at[island] = now
        moved = {r: n for r, n in placement.moves.items() if n}
        for reason, n in moved.items():
            self.observer.on_islands_moved(reason, n)
        per_worker: dict[str, int] = {}
        for worker in placement.islands.values():
            per_worker[worker] = per_worker.get(worker, 0) + 1
        log.info("assignment epoch %d (term %d): %s%s%s", new.epoch, new.term,
                 ", ".join(f"{w}: {n}" for w, n in sorted(per_worker.items())) or "no workers",
                 f"; moved {moved}" if moved else "",
                 f"; unplaced {placement.unplaced}" if placement.unplaced else "")


__all__ = ["TOTALS_EVERY_S", "AssignmentPhase"]
