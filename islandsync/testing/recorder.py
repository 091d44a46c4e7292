"""The bucket recorder of the harness: one observer of a run, from outside every process.

:class:`Recorder` polls the bucket every ~50 ms (a direct line, not through any fault) and
keeps every distinct version it sees of each island's HEAD, of the assignment and the elite
HEAD, of the lease and of each worker's heartbeat, plus the checkpoint blobs that sat above
their island's HEAD written by a worker that did not own the island.
:mod:`islandsync.testing.invariants` judges that evidence.

Everything it reads goes through the read boundary (:func:`~islandsync.bucket.records.read_record`
and the readers built on it): a record that is not valid (garbage the byzantine writer left, a
half-visible blob) is skipped and noted in :attr:`Recorder.errors`, never parsed by hand, and
never stops a poll.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from islandsync.bucket.elites import read_elite
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    LEASE_KEY,
    head_key,
    parse_checkpoint_key,
    parse_heartbeat_key,
)
from islandsync.bucket.records import (
    Assignment,
    Head,
    read_assignment,
    read_elite_head,
    read_head,
    read_lease,
)
from islandsync.errors import CheckpointError, IslandSyncError, NotFound
from islandsync.store import BlobStore
from islandsync.worker.uploader import checkpoint_tag, tag_writer


def writer_tag(worker_id: str | None) -> str | None:
    """The worker-id part of the tags a worker puts in its checkpoint names, as
    islandsync.worker.uploader.tag_writer reads it back (tags are per process: id.random)."""
    return None if worker_id is None else tag_writer(checkpoint_tag(worker_id))


def heads(store: BlobStore, n: int) -> dict[int, Head]:
    """The HEAD of each of islands 0..n-1 that has one."""
    out = {}
    for i in range(n):
        current = read_head(store, i)
        if current is not None:
            out[i] = current[0]
    return out


@dataclass
class Seen:
    """One version of the assignment or the elite HEAD."""

    at: float  # time.monotonic() of the first read that saw it
    kind: str  # "assignment" or "elite"
    epoch: int
    term: int
    leader: str | None
    islands: dict[int, str] = field(default_factory=dict)
    ids: tuple[int, ...] = ()
    best_score: float | None = None


@dataclass(frozen=True)
class HeadSeen:
    at: float  # time.monotonic() of the read
    blob_generation: int
    generation: int
    checkpoint: str | None
    owner: str | None
    released: bool
    best: float | None


@dataclass
class EliteSeen:
    epoch: int
    term: int
    size: int
    finite: bool
    unique: bool


class Recorder:
    """See module doc. Use as a context manager around what it watches. ``islands``: how
    many islands' HEADs to follow (0: only the leader's records and the heartbeats)."""

    def __init__(self, store: BlobStore, islands: int = 0, every: float = 0.05) -> None:
        self.store, self.islands, self.every = store, islands, every
        self.seen: list[Seen] = []
        self.heads: dict[int, list[HeadSeen]] = {i: [] for i in range(islands)}
        self.heartbeats: dict[str, list[tuple[float, int]]] = {}
        #: (when, blob generation, the lease record's fields; {} for a lease not valid)
        self.leases: list[tuple[float, int, dict[str, Any]]] = []
        self.elite_epochs: list[EliteSeen] = []
        self.assignment_records: list[tuple[float, Assignment]] = []
        self.unreadable_elites: dict[str, str] = {}
        #: island -> {checkpoint key seen above HEAD's generation, written by a worker that
        #: did not own the island: when it was first seen so}
        self.orphans: dict[int, dict[str, float]] = {i: {} for i in range(islands)}
        self.errors: list[str] = []
        self.polls = 0
        self._listed: dict[str, int] = {}
        self._read: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Recorder:
        self._thread.start()
        return self

    def stop(self, *, last_look: bool = False) -> None:
        """Stop polling; ``last_look``: then poll once more, so that nothing written just
        before the stop is missed."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=10)
        if last_look:
            try:
                self._poll()
            except IslandSyncError as err:
                self._note(err)

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- polling -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except IslandSyncError as err:  # an outage: look again next time
                self._note(err)
            self._stop.wait(self.every)

    def _note(self, err: Exception) -> None:
        self.errors.append(f"{type(err).__name__}: {str(err)[:200]}")

    def _changed(self, key: str, listing: dict[str, int]) -> bool:
        gen = listing.get(key)
        if gen is None or self._listed.get(key) == gen:
            return False
        self._listed[key] = gen
        return True

    def _poll(self) -> None:
        # One list call tells which records changed; only those are read. Everything read
        # after the listing is at least as new as the listing.
        listing = {i.key: i.generation for i in self.store.list("")}
        now = time.monotonic()
        for island in range(self.islands):
            if self._changed(head_key(island), listing):
                self._read_head(island)
        self._find_orphans(listing)
        for key, gen in listing.items():
            worker = parse_heartbeat_key(key)
            if worker is not None:
                seen = self.heartbeats.setdefault(worker, [])
                if not seen or seen[-1][1] != gen:
                    seen.append((now, gen))
        if self._changed(LEASE_KEY, listing):
            try:
                lease = read_lease(self.store)
            except CheckpointError as err:  # garbage: a lease that vouches for nothing
                self._note(err)
                lease = None
            body = lease[0].model_dump() if lease is not None else {}
            self.leases.append((now, listing[LEASE_KEY], body))
        if self._changed(ASSIGNMENT_KEY, listing):
            try:
                a = read_assignment(self.store)
            except CheckpointError as err:
                self._note(err)
                a = None
            if a is not None and self._new_read(ASSIGNMENT_KEY, a[1]):
                self.assignment_records.append((now, a[0]))
                self.seen.append(Seen(now, "assignment", a[0].epoch, a[0].term, a[0].leader,
                                      dict(a[0].islands)))
        if self._changed(ELITE_HEAD_KEY, listing):
            self._read_elite(now)
        self.polls += 1

    def _read_head(self, island: int) -> HeadSeen | None:
        try:
            current = read_head(self.store, island)
        except CheckpointError as err:
            self._note(err)
            return None
        if current is None:
            return None
        head, gen = current
        seen = self.heads[island]
        if seen and seen[-1].blob_generation == gen:
            return seen[-1]
        entry = HeadSeen(time.monotonic(), gen, head.generation, head.checkpoint, head.owner,
                         head.released, head.best)
        seen.append(entry)
        return entry

    def _find_orphans(self, listing: dict[str, int]) -> None:
        """Blobs above HEAD by a worker that is not HEAD's owner. The HEAD compared with is read
        again after the listing, so an owner's upload whose HEAD CAS was in flight while we
        listed is never taken for an orphan."""
        above: dict[int, list[tuple[int, str, str]]] = {}
        for key in listing:
            parsed = parse_checkpoint_key(key)
            if parsed is None or parsed[0] >= self.islands:
                continue
            island, gen, tag = parsed
            last = self.heads[island][-1] if self.heads[island] else None
            if last is None or (gen > last.generation
                                and tag_writer(tag) != writer_tag(last.owner)):
                above.setdefault(island, []).append((gen, tag, key))
        for island, blobs in above.items():
            head = self._read_head(island)
            if head is None:
                continue
            for gen, tag, key in blobs:
                if gen > head.generation and tag_writer(tag) != writer_tag(head.owner):
                    self.orphans[island].setdefault(key, head.at)

    def _new_read(self, key: str, generation: int) -> bool:
        """Whether a read returned a version not read before. The listing says a record
        changed, but the read after it may already hold a newer write, which the next listing
        then reports again: a record is seen once per version read, not per version listed."""
        if self._read.get(key) == generation:
            return False
        self._read[key] = generation
        return True

    def _read_elite(self, now: float) -> None:
        try:
            e = read_elite_head(self.store)
        except CheckpointError as err:
            self._note(err)
            return
        if e is None or not self._new_read(ELITE_HEAD_KEY, e[1]):
            return
        head = e[0]
        try:
            _, scores, ids, _ = read_elite(self.store, head.key)
        except (CheckpointError, NotFound) as err:
            self.unreadable_elites[head.key] = str(err)
            return
        self.seen.append(Seen(now, "elite", head.epoch, head.term, None, {},
                              tuple(int(i) for i in ids),
                              float(scores[0]) if len(scores) else None))
        self.elite_epochs.append(EliteSeen(head.epoch, head.term, len(scores),
                                           bool(np.all(np.isfinite(scores))),
                                           len(set(ids.tolist())) == len(ids)))

    # -- views ---------------------------------------------------------------------------

    def assignments(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "assignment"]

    def elites(self) -> list[Seen]:
        return [s for s in self.seen if s.kind == "elite"]

    def latest(self, island: int) -> HeadSeen | None:
        seen = self.heads[island]
        return seen[-1] if seen else None

    def lease_term(self) -> int:
        """The highest term of any lease seen (0: none yet)."""
        return max((body.get("term") or 0 for _, _, body in list(self.leases)), default=0)

    def heartbeat_generation(self, worker: str) -> int | None:
        seen = self.heartbeats.get(worker)
        return seen[-1][1] if seen else None

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

    def summary(self) -> str:
        """A short text of what was seen, for assertion messages."""
        lines = [(f"recorder: {self.polls} polls, {len(self.errors)} read errors "
                  f"{self.errors[-3:]}")]
        for island, seen in self.heads.items():
            tail = [(s.generation, (s.checkpoint or "-").rsplit("/", 1)[-1], s.owner,
                     "R" if s.released else "") for s in seen[-6:]]
            lines.append(f"  island {island}: {len(seen)} HEADs, last {tail}")
        a = self.assignments()
        if a:
            lines.append(f"  assignments: {len(a)}, last term {a[-1].term} by {a[-1].leader}: "
                         f"{a[-1].islands}")
        lines.append(f"  elites: {[(e.epoch, e.term) for e in self.elite_epochs[-8:]]}")
        if self.unreadable_elites:
            lines.append(f"  unreadable elites: {sorted(self.unreadable_elites)}")
        return "\n".join(lines)


__all__ = ["EliteSeen", "HeadSeen", "Recorder", "Seen", "heads", "writer_tag"]
