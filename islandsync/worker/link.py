"""A worker's bucket thread: every read and small write a worker makes besides checkpoints.

The worker loop never waits on the bucket. This thread heartbeats, watches other workers'
heartbeats, claims islands (HEAD CAS, then loads the checkpoint) and hands them to the loop,
reads the newest elite for migrants, and notices when the run has finished. Results cross
over through a lock-protected inbox that the loop drains between generations.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from islandsync.bucket.checkpoints import IslandSnapshot, load_island
from islandsync.bucket.elites import read_elite
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    WORKERS_PREFIX,
    heartbeat_key,
    island_prefix,
    parse_checkpoint_key,
    parse_heartbeat_key,
)
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import (
    Assignment,
    Finished,
    Head,
    Heartbeat,
    read_assignment,
    read_elite_head,
    read_finished,
    read_head,
    read_lease,
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

log = logging.getLogger(__name__)



def default_worker_id(platform: str) -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:24] or "host"
    return f"{platform}-{host}-{os.getpid()}-{secrets.token_hex(2)}"


@dataclass
class Claim:
    island: int
    head_generation: int
    snapshot: IslandSnapshot | None  # None: start fresh from the seed
    keys: list[str]
    snapshot_key: str | None = None  # the checkpoint the snapshot was read from
    lineage: list[str] = field(default_factory=list)  # HEAD's checkpoint and its previous


@dataclass
class Inbox:
    claims: list[Claim] = field(default_factory=list)
    finished: Finished | None = None
    foreign: tuple[np.ndarray, ...] | None = None  # genomes, scores, ids, origin of the elite
    foreign_epoch: int = -1
    remote: dict[int, Head] = field(default_factory=dict)  # HEADs of islands hosted elsewhere
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
    ) -> None:
        self.store, self.spec, self.worker_id = store, spec, worker_id
        self.on_heartbeat = on_heartbeat
        self.solo, self.max_islands = solo, max_islands
        self.stats, self.hosted, self.clock = stats, hosted, clock
        self.liveness = Liveness(spec.worker_timeout_s, clock)
        self.store_errors = 0
        self._inbox = Inbox()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._claiming: set[int] = set()
        self._elite_generation = 0
        self.max_term = 0  # the highest lease term seen: records of lower terms are stale
        self._assignment: tuple[Assignment, int] | None = None
        self._assigned_since: dict[int, float] = {}
        self._last_warning = 0.0
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
                assignment_epoch=self._inbox.assignment_epoch,
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
            self._guard("release", lambda c=claim: self._release_untaken(c))

    def final_heartbeat(self) -> None:
        self._guard("heartbeat", lambda: self._heartbeat(state="exited"))

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
        while not self._stop.is_set():
            started = self.clock()
            self._guard("poll", self._poll)
            self._stop.wait(max(0.05, self.spec.assignment_poll_s - (self.clock() - started)))

    def _beat(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            self._guard("heartbeat", self._heartbeat)
            self._stop.wait(max(0.05, self.spec.heartbeat_interval_s - (self.clock() - started)))

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except StoreError as err:
            self.store_errors += 1
            self._warn(f"bucket trouble during {what} (will retry): {err}")
        except IslandSyncError as err:
            self._warn(f"{what} failed: {err}")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:  # once a minute: outages must not flood a notebook
            self._last_warning = now
            log.warning(message)

    def _heartbeat(self, state: str = "running") -> None:
        body = {**self.stats(), "worker": self.worker_id, "state": state,
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
        hosted = self.hosted() | self._claiming
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
            self._claim_free(hosted)
        else:
            self._follow_assignment(hosted)
        self._read_remote(hosted)
        self._read_elite()

    def _read_finished(self) -> Finished | None:
        try:
            found = read_finished(self.store)
        except CheckpointError as err:
            # Something sits under finished.json, but not a stop decision: only a valid
            # record stops the run, or one crafted blob would stop every worker.
            self._warn(f"ignoring {err}")
            return None
        return found[0] if found else None

    def _claim_free(self, hosted: set[int]) -> None:
        """Solo mode: claim every island without a live owner, up to max_islands."""
        for island in range(self.spec.islands):
            if len(hosted) >= self.max_islands or self._stop.is_set():
                return
            if island in hosted:
                continue
            current = read_head(self.store, island)
            if current is not None:
                owner = current[0].owner
                if owner not in (None, self.worker_id) and not current[0].released \
                        and self.liveness.alive(owner):
                    continue
            claim = self.claim(island, current)
            if claim is not None:
                hosted.add(island)

    def claim(self, island: int, current: tuple[Head, int] | None) -> Claim | None:
        """Take an island: CAS its HEAD to name us, then load its checkpoint. Losing the CAS
        race is normal (another worker was quicker) and returns None."""
        if current is None:
            head, gen = Head(island=island), 0
        else:
            head, gen = current
        try:
            new_gen = write_head(self.store, head.model_copy(
                update={"owner": self.worker_id, "released": False}), if_generation=gen)
        except PreconditionFailed:
            return None
        snapshot, keys = None, []
        if head.checkpoint or head.generation:
            snapshot = load_island(self.store, island, head, spec=self.spec)
            keys = [i.key for i in self.store.list(island_prefix(island))
                    if parse_checkpoint_key(i.key)]
            if snapshot is None:
                log.error("island %d: no readable checkpoint; restarting it from the seed", island)
        claim = Claim(island, new_gen, snapshot, keys,
                      snapshot.meta.get("key") if snapshot is not None else None,
                      head.lineage())
        with self._lock:
            self._inbox.claims.append(claim)
            self._claiming.add(island)
        return claim

    def claimed(self, island: int) -> None:
        """The loop has taken the claim over; it is now in ``hosted()``."""
        with self._lock:
            self._claiming.discard(island)

    def _read_remote(self, hosted: set[int]) -> None:
        stop = self.spec.stop
        if stop.max_evals is None and stop.target is None:
            return
        remote: dict[int, Head] = {}
        for island in range(self.spec.islands):
            if island not in hosted:
                try:
                    current = read_head(self.store, island)
                except CheckpointError:
                    continue
                if current is not None:
                    remote[island] = current[0]
        with self._lock:
            self._inbox.remote = remote

    def _read_elite(self) -> None:
        info = self.store.stat(ELITE_HEAD_KEY)
        if info is None or info.generation == self._elite_generation:
            return
        try:
            current = read_elite_head(self.store)
        except CheckpointError as err:
            self._warn(f"elite HEAD unreadable, keeping the previous elite: {err}")
            return
        if current is None:
            return
        head, generation = current
        if head.term < self.max_term:
            return  # written by a leader that has been replaced: fenced off
        try:
            foreign = read_elite(self.store, head.key)
        except (CheckpointError, NotFound) as err:
            self._warn(f"elite epoch {head.epoch} unreadable, keeping the previous one: {err}")
            return
        if foreign[0].shape[1] != self.spec.problem.genome.width:
            self._warn(f"elite epoch {head.epoch} does not fit this run's genomes; ignored")
            return
        self._elite_generation = generation
        self.max_term = max(self.max_term, head.term)
        with self._lock:
            self._inbox.foreign, self._inbox.foreign_epoch = foreign, head.epoch

    # -- following the leader ------------------------------------------------------------

    def _lease_term(self) -> int:
        try:
            found = read_lease(self.store)
        except CheckpointError:
            return 0  # garbage fences nothing; the assignment's own term still counts
        return found[0].term if found else 0

    def _read_assignment(self) -> Assignment | None:
        """The newest assignment that is not fenced off, or None."""
        info = self.store.stat(ASSIGNMENT_KEY)
        if info is None:
            return None
        if self._assignment is None or self._assignment[1] != info.generation:
            try:
                current = read_assignment(self.store)
            except CheckpointError as err:
                self._warn(f"ignoring the assignment: {err}")
                return None
            if current is None:
                return None
            self._assignment = current
        assignment = self._assignment[0]
        # Reading the lease too closes the window in which a deposed leader that woke up
        # has written an assignment the new leader has not yet replaced.
        self.max_term = max(self.max_term, self._lease_term())
        if assignment.term < self.max_term:
            return None
        self.max_term = assignment.term
        return assignment

    def _follow_assignment(self, hosted: set[int]) -> None:
        """Release hosted islands assigned elsewhere; claim those assigned to us once their
        previous owner has released them, is not among the leader's live workers, or has
        had a whole worker timeout to let go."""
        assignment = self._read_assignment()
        if assignment is None:
            return
        mine = {i for i in assignment.of(self.worker_id) if 0 <= i < self.spec.islands}
        release = (hosted - self._claiming) - mine
        with self._lock:
            self._inbox.release = release
            self._inbox.assignment_epoch = assignment.epoch
        now = self.clock()
        self._assigned_since = {i: self._assigned_since.get(i, now) for i in mine}
        for island in sorted(mine - hosted):
            if len(hosted) >= self.max_islands or self._stop.is_set():
                return
            current = read_head(self.store, island)
            if current is not None:
                head = current[0]
                waiting = (head.owner not in (None, self.worker_id) and not head.released
                           and head.owner in assignment.workers
                           and now - self._assigned_since[island] < self.spec.worker_timeout_s)
                if waiting:
                    continue
            if self.claim(island, current) is not None:
                hosted.add(island)


__all__ = ["BucketLink", "Claim", "Inbox"]
