"""A worker's bucket thread: every read and small write a worker makes besides checkpoints.

The worker loop never waits on the bucket. This thread heartbeats, watches other workers'
heartbeats, claims islands (HEAD CAS, then loads the checkpoint) and hands them to the loop,
reads the newest elite for migrants, and notices when the run has finished. Results cross
over through a lock-protected inbox that the loop drains between generations.

Every record is read through :mod:`islandsync.bucket.records`; a bad one is skipped with one
warning, never the rest of the poll. Both threads survive an unexpected exception a few times
(:mod:`islandsync.worker.health`), then stop the worker with it. The heartbeat vouches only
for work that is happening: while ``health()`` names a problem (the loop stalled, the uploader
or the poll thread dead) it writes one ``stalled`` heartbeat and then none.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from islandsync.bucket.elites import read_elite
from islandsync.bucket.heads import HeadView, HeadWatch
from islandsync.bucket.layout import (
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    WORKERS_PREFIX,
    heartbeat_key,
    parse_heartbeat_key,
)
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import (
    Finished,
    Head,
    Heartbeat,
    read_elite_head,
    read_finished,
    read_head,
    write_head,
    write_record,
)
from islandsync.config import RunSpec
from islandsync.errors import (
    CheckpointError,
    IslandSyncError,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from islandsync.store import BlobStore
from islandsync.store.base import Version
from islandsync.worker.claims import Claim, take_island, take_over_garbage
from islandsync.worker.health import Restarts
from islandsync.worker.terms import LeaseTerms

log = logging.getLogger(__name__)


def default_worker_id(platform: str) -> str:
    platform = re.sub(r"[^A-Za-z0-9_.-]", "-", platform)[:24] or "worker"
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:24] or "host"
    return f"{platform}-{host}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class Inbox:
    claims: list[Claim] = field(default_factory=list)
    finished: Finished | None = None
    foreign: tuple[np.ndarray, ...] | None = None  # genomes, scores, ids, origin of the elite
    foreign_epoch: int = -1
    remote: dict[int, Head] = field(default_factory=dict)  # HEADs of islands hosted elsewhere
    #: The run's (evaluations, best) as the leader last published them in the assignment.
    totals: tuple[int | None, float | None] | None = None
    release: set[int] = field(default_factory=set)  # hosted islands assigned elsewhere now
    assignment_epoch: int = 0


class BucketLink:
    """See module doc. ``stats()`` is called from this thread to fill the heartbeat."""

    def __init__(
        self,
        store: BlobStore,
        spec: RunSpec,
        *,
        worker_id: str,
        solo: bool,
        max_islands: int,
        stats: Callable[[], dict[str, Any]],
        hosted: Callable[[], set[int]],
        clock: Callable[[], float] = time.monotonic,
        on_heartbeat: Callable[[dict[str, Any]], None] | None = None,
        health: Callable[[], str | None] | None = None,
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.spec, self.worker_id = store, spec, worker_id
        self.on_heartbeat = on_heartbeat
        # What the worker says is wrong with it (None: all well); see module doc.
        self.health = health
        self.poll_restarts = Restarts("bucket poll", on_fatal)
        self.beat_restarts = Restarts("heartbeat", on_fatal)
        self.restarts_from_seed = 0
        self._stalled: str | None = None
        self.solo, self.max_islands = solo, max_islands
        self.stats, self.hosted, self.clock = stats, hosted, clock
        self.liveness = Liveness(spec.worker_timeout_s, clock)
        self.store_errors = 0
        self._inbox = Inbox()
        # Reentrant: ``hosted()`` is called under it, and may itself hand a claim over.
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._claiming: set[int] = set()
        self._elite_generation = 0
        self.terms = LeaseTerms(store, self._warn)
        self._heads: HeadWatch | None = None  # a solo worker's view of every HEAD
        self._assigned_since: dict[int, float] = {}
        self._last_warning: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="islandsync-bucket", daemon=True)
        # Heartbeats have a thread of their own: a poll read that a slow bucket keeps
        # retrying (GCS retries reads for up to a minute) must not silence them, or the
        # leader would declare a live, evolving worker dead.
        self._beat_thread = threading.Thread(target=self._beat, name="islandsync-heartbeat",
                                             daemon=True)

    # -- loop side -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._beat_thread.start()

    def take(self) -> Inbox:
        """Everything that arrived since the last call (claims are handed over once)."""
        with self._lock:
            inbox, self._inbox = self._inbox, Inbox(
                finished=self._inbox.finished, foreign=self._inbox.foreign,
                foreign_epoch=self._inbox.foreign_epoch, remote=self._inbox.remote,
                assignment_epoch=self._inbox.assignment_epoch, totals=self._inbox.totals,
            )
        return inbox

    def stop(self) -> None:
        """Stop the thread, and give back islands it claimed that the loop never took over
        (a claim that landed while the worker was shutting down): otherwise they would
        stay owned by a worker that has left until its heartbeat timed out."""
        self._stop.set()
        self._beat_thread.join(timeout=30)
        self._thread.join(timeout=30)
        for claim in self.take().claims:
            self._last_words("release", lambda c=claim: self._release_untaken(c))

    def final_heartbeat(self) -> None:
        self._last_words("heartbeat", lambda: self._heartbeat(state="exited"))

    def _last_words(self, what: str, fn: Callable[[], None]) -> None:
        """On the way out nothing is retried, and nothing may keep the worker from exiting."""
        try:
            self._guard(what, fn)
        except Exception:
            log.exception("%s on exit failed", what)

    def beat_now(self) -> None:
        """Write a heartbeat from the calling thread (StoreError passes)."""
        self._heartbeat()

    def poll_alive(self) -> bool:
        """False once the poll thread has stopped for good on unexpected errors."""
        return self.poll_restarts.error is None and (self._thread.is_alive()
                                                      or self._stop.is_set())

    def _release_untaken(self, claim: Claim) -> None:
        current = read_head(self.store, claim.island)
        if current is not None and current[1] == claim.head_generation:
            head = current[0].model_copy(update={"released": True})
            try:
                write_head(self.store, head, if_generation=claim.head_generation)
            except PreconditionFailed:
                pass  # someone took it meanwhile: nothing of ours to give back

    def declare_finished(self, reason: str, detail: dict[str, Any]) -> None:
        """Record that a stop criterion is met; the first writer wins, others agree."""
        try:
            record = Finished.model_validate({**detail, "reason": reason, "by": self.worker_id})
            write_record(self.store, FINISHED_KEY, record, if_generation=0)
        except PreconditionFailed:
            pass
        except StoreError as err:
            self._warn(f"could not record that the run finished: {err}")

    # -- thread side ---------------------------------------------------------------------

    def _run(self) -> None:
        self._repeat(self.poll_restarts, lambda: self._guard("poll", self._poll),
                     lambda: self.spec.assignment_poll_s)

    def _beat(self) -> None:
        self._repeat(self.beat_restarts, self._beat_once,
                     lambda: self.spec.heartbeat_interval_s)

    def _repeat(self, restarts: Restarts, fn: Callable[[], None],
                period: Callable[[], float]) -> None:
        """Call ``fn`` every ``period()`` seconds until stopped; an unexpected exception is
        survived a few times, then stops the thread (and, through ``on_fatal``, the worker)."""
        while not self._stop.is_set():
            started = self.clock()
            try:
                fn()
            except Exception as err:  # a bug, not the bucket (_guard takes those)
                if not restarts.failed(err):
                    return
            self._stop.wait(max(0.05, period() - (self.clock() - started)))

    def _beat_once(self) -> None:
        problem = self._problem()
        if problem is None:
            self._stalled = None
            self._guard("heartbeat", self._heartbeat)
        elif self._stalled is None:
            # Said once, then silence: a heartbeat blob whose version keeps changing would
            # tell the leader this worker is alive and working, which it is not.
            self._stalled = problem
            log.warning("heartbeats paused: %s", problem)
            self._guard("heartbeat", lambda: self._heartbeat(state="stalled"))

    def _problem(self) -> str | None:
        if not self.poll_alive():
            return self.poll_restarts.error or "the bucket poll thread has stopped"
        return self.health() if self.health is not None else None

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except StoreError as err:
            self.store_errors += 1
            self._warn(f"bucket trouble during {what} (will retry): {err}")
        except IslandSyncError as err:
            self._warn(f"{what} failed: {err}")

    def _warn(self, message: str, about: str = "") -> None:
        """Once a minute per subject at most (``about``: a record's key, say): an outage must
        not flood a notebook, nor one bad record hide the warning about another."""
        now = time.monotonic()
        if now - self._last_warning.get(about, -1e18) >= 60:
            self._last_warning[about] = now
            log.warning(message)

    def _heartbeat(self, state: str = "running") -> None:
        stats = self.stats()
        # Inside the free-form ``checkpoint`` dict, which older readers pass through: restarts
        # from the seed lose an island's progress, so metrics must be able to show them.
        checkpoint = {**stats.get("checkpoint", {}), "restarts_from_seed": self.restarts_from_seed}
        body = {**stats, "checkpoint": checkpoint, "worker": self.worker_id, "state": state,
                "store_errors": self.store_errors}
        if self.on_heartbeat is not None:
            self.on_heartbeat(body)  # before the put: a local /metrics works offline too
        write_record(self.store, heartbeat_key(self.worker_id), Heartbeat.model_validate(body))

    def _poll(self) -> None:
        finished = self._read_finished()
        if finished is not None:
            with self._lock:
                self._inbox.finished = finished
            return
        with self._lock:
            # Both under one lock, the claiming set first: the loop adds a claimed island to
            # hosted() before it calls claimed() (which takes this lock), so an island being
            # handed over is in one of the two and is never claimed a second time.
            claiming = set(self._claiming)
            hosted = self.hosted() | claiming
        if self.solo:
            # Only a solo worker judges others' liveness itself; a follower trusts the
            # leader's list, and saves a class A list call per poll.
            listing = self.store.list(WORKERS_PREFIX)
            self.liveness.watched(max(2 * self.spec.assignment_poll_s,
                                      self.spec.heartbeat_interval_s))
            for info in listing:
                worker = parse_heartbeat_key(info.key)
                if worker is not None and worker != self.worker_id:
                    self.liveness.observe(worker, info.generation)
            view = self._look_heads(hosted)
            self._claim_free(hosted, view)
            self._read_remote(hosted, view)
        else:
            self._follow_assignment(hosted, claiming)
        self._read_elite()

    def _read_finished(self) -> Finished | None:
        try:
            found = read_finished(self.store)
        except CheckpointError as err:
            # Something sits under finished.json, but not a stop decision: only a valid
            # record stops the run, or one crafted blob would stop every worker.
            self._warn(f"ignoring {err}", "finished")
            return None
        return found[0] if found else None

    def _look_heads(self, hosted: set[int]) -> HeadView:
        """Solo mode: the HEADs of islands we do not host (to claim, and to judge a stop),
        with one listing and only the HEADs that moved since the last poll."""
        if self._heads is None:
            self._heads = HeadWatch(self.store, self.spec.islands, what="worker")
        return self._heads.look(skip=hosted)

    def _claim_free(self, hosted: set[int], view: HeadView) -> None:
        """Solo mode: claim every island without a live owner, up to max_islands."""
        def taken(head: Head) -> bool:
            return head.owner not in (None, self.worker_id) and not head.released \
                and self.liveness.alive(head.owner)

        def head_of(island: int) -> tuple[Head, Version] | None | bool:
            if island in view.invalid:
                return False
            if island not in view.fresh:
                return True  # its read met bucket trouble: next poll
            head = view.heads.get(island)
            return None if head is None else (head, view.read_at[island])
        self._claim_each(range(self.spec.islands), hosted, taken, head_of)

    def _claim_each(self, islands: Iterable[int], hosted: set[int],
                    wait: Callable[[Head], bool],
                    head_of: Callable[[int], tuple[Head, Version] | None | bool] | None = None,
                    ) -> None:
        """Claim each island not hosted yet, up to max_islands, unless ``wait(its HEAD)``; an
        island whose HEAD is not a valid record is taken over (we are the one to repair it).
        ``head_of(island)``: its HEAD and version, None when it has none, False when it is
        not a valid record, True to skip it (default: read it now)."""
        for island in islands:
            if len(hosted) >= self.max_islands or self._stop.is_set():
                return
            if island in hosted:
                continue
            current = (head_of or self._head)(island)
            if current is True:
                continue
            if current is False:
                claim = self._hand_over(take_over_garbage(self.store, self.spec,
                                                          self.worker_id, island))
            elif current is not None and wait(current[0]):
                continue
            else:
                claim = self.claim(island, current)
            if claim is not None:
                hosted.add(island)

    def _head(self, island: int) -> tuple[Head, int] | None | bool:
        """The island's HEAD; False (skip the island) when it is not a valid record."""
        try:
            return read_head(self.store, island)
        except CheckpointError as err:
            self._warn(f"island {island} skipped: {err}", f"head/{island}")
            return False

    def claim(self, island: int, current: tuple[Head, int] | None) -> Claim | None:
        """Take an island (:func:`islandsync.worker.claims.take_island`) and hand it to the
        loop; None when another worker was quicker."""
        return self._hand_over(take_island(self.store, self.spec, self.worker_id, island,
                                           current))

    def _hand_over(self, claim: Claim | None) -> Claim | None:
        if claim is not None:
            self.restarts_from_seed += claim.from_seed  # counted in the heartbeat too
            with self._lock:
                self._inbox.claims.append(claim)
                self._claiming.add(claim.island)
        return claim

    def claimed(self, island: int) -> None:
        """The loop has taken the claim over; it is now in ``hosted()``."""
        with self._lock:
            self._claiming.discard(island)

    def _read_remote(self, hosted: set[int], view: HeadView) -> None:
        """HEADs of islands hosted elsewhere, for a stop criterion; only a solo worker has
        them (from the poll's one look). A follower reads none: the leader publishes the run's
        totals in the assignment and records the stop decision itself, so W followers never
        make W x K reads a poll."""
        # Validated by the record boundary (finite, bounded best and evals): a crafted HEAD
        # is skipped, never counted towards a stop criterion.
        remote = {i: h for i, h in view.heads.items() if i not in hosted}
        with self._lock:
            self._inbox.remote = remote

    def _read_elite(self) -> None:
        info = self.store.stat(ELITE_HEAD_KEY)
        if info is None or info.generation == self._elite_generation:
            return
        try:
            current = read_elite_head(self.store)
        except CheckpointError as err:
            self._elite_generation = info.generation  # refused: not read again
            self._warn(f"elite HEAD unreadable, keeping the previous elite: {err}", "elite")
            return
        if current is None:
            return
        head, generation = current
        if not self.terms.current(head.term, "elite HEAD"):
            return
        try:
            # Capped by the run's shapes: at most what they allow is downloaded or
            # decompressed (an 18.7 KiB epoch once decoded to 576 MiB here).
            foreign = read_elite(self.store, head.key, spec=self.spec)
        except NotFound as err:  # HEAD named it: maybe a lagging listing, read again
            self._warn(f"elite epoch {head.epoch} missing, keeping the previous one: {err}",
                       "elite-epoch")
            return
        except CheckpointError as err:
            # Refused: remembered by the version of the HEAD that named it, so the epoch is
            # not fetched again on every poll; the next epoch moves HEAD.
            self._elite_generation = generation
            self._warn(f"elite epoch {head.epoch} refused, keeping the previous one: {err}",
                       "elite-epoch")
            return
        self._elite_generation = generation
        with self._lock:
            self._inbox.foreign, self._inbox.foreign_epoch = foreign, head.epoch

    # -- following the leader ------------------------------------------------------------

    @property
    def lease_term(self) -> int:
        """The term of the last valid lease read (:class:`~islandsync.worker.terms.LeaseTerms`)."""
        return self.terms.term

    def _follow_assignment(self, hosted: set[int], claiming: set[int] | None = None) -> None:
        """Release hosted islands assigned elsewhere; claim those assigned to us once their
        previous owner has released them, is not among the leader's live workers, or has
        had a whole worker timeout to let go."""
        assignment = self.terms.assignment()
        if assignment is None:
            return
        mine = {i for i in assignment.of(self.worker_id) if 0 <= i < self.spec.islands}
        with self._lock:
            self._inbox.totals = (assignment.evaluations, assignment.best)
        if claiming is None:
            with self._lock:
                claiming = set(self._claiming)
        release = (hosted - claiming) - mine
        with self._lock:
            self._inbox.release = release
            self._inbox.assignment_epoch = assignment.epoch
        now = self.clock()
        self._assigned_since = {i: self._assigned_since.get(i, now) for i in mine}
        def waiting(head: Head) -> bool:
            return (head.owner not in (None, self.worker_id) and not head.released
                    and head.owner in assignment.workers
                    and now - self._assigned_since[head.island] < self.spec.worker_timeout_s)
        self._claim_each(sorted(mine - hosted), hosted, waiting)


__all__ = ["BucketLink", "Claim", "Inbox"]
