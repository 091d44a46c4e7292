"""The invariants every chaos scenario ends with, and the recorder that gathers their evidence.

:class:`ChaosRecorder` polls the bucket every ~50 ms from the test process (a direct line, not
through any fault) and keeps every distinct version it sees of each island's HEAD, of the
assignment and elite HEAD (as :class:`tests.cluster.Recorder` does), of the lease and of each
worker's heartbeat, plus the checkpoint blobs that sat above their island's HEAD written by a
worker that did not own the island. The ``check_*`` functions then judge that evidence:

* lineage: an island's HEAD generation never goes backwards, its (generation, checkpoint)
  history is linear, and no blob above HEAD by a non-owner ever became HEAD;
* resumption: after a kill, the island's first new checkpoint is at or above the last HEAD seen
  before the kill (HEAD moves only by CAS, so this is "resumed from its checkpoint"), never 0;
* elites: the global best never regresses, no epoch holds a duplicate id or a non-finite score;
* processes: each one still running keeps working (heartbeats or lease renewals advance), and
  each one that exited did so with the expected code and without a traceback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from islandsync.bucket.checkpoints import load_island
from islandsync.bucket.elites import read_elite
from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    LEASE_KEY,
    head_key,
    parse_checkpoint_key,
)
from islandsync.bucket.records import Assignment, Head, read_assignment, read_elite_head, read_head
from islandsync.errors import CheckpointError, IslandSyncError, NotFound
from islandsync.store import BlobStore
from islandsync.worker.uploader import checkpoint_tag, tag_writer

from ..cluster import Recorder, Seen, wait_for


def writer_tag(worker_id: str | None) -> str | None:
    """The worker-id part of the tags a worker puts in its checkpoint names, as
    islandsync.worker.uploader.tag_writer reads it back (tags are per process: id.random)."""
    return None if worker_id is None else tag_writer(checkpoint_tag(worker_id))


@dataclass(frozen=True)
class HeadSeen:
    at: float  # time.monotonic() of the read
    blob_generation: int
    generation: int
    checkpoint: str | None
    owner: str | None
    released: bool
    best: float | None


@dataclass(frozen=True)
class Fallback:
    """An island whose HEAD checkpoint a test corrupted: the next owner resumes from an older
    checkpoint, so its HEAD may step back once, to no less than ``floor`` (the generation of
    the newest readable checkpoint below the corrupted one)."""

    bad_keys: frozenset[str]
    floor: int


@dataclass
class EliteSeen:
    epoch: int
    term: int
    size: int
    finite: bool
    unique: bool


class ChaosRecorder(Recorder):
    """See module doc. Use as a context manager around the scenario."""

    def __init__(self, store: BlobStore, islands: int, every: float = 0.05) -> None:
        super().__init__(store, every)
        self.islands = islands
        self.heads: dict[int, list[HeadSeen]] = {i: [] for i in range(islands)}
        self.heartbeats: dict[str, list[tuple[float, int]]] = {}
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

    # -- polling -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except IslandSyncError as err:  # a half-visible blob: look again next time
                self.errors.append(f"{type(err).__name__}: {err}")
            self._stop.wait(self.every)

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
            if key.startswith("workers/") and key.endswith(".json"):
                worker = key[len("workers/"):-len(".json")]
                seen = self.heartbeats.setdefault(worker, [])
                if not seen or seen[-1][1] != gen:
                    seen.append((now, gen))
        if self._changed(LEASE_KEY, listing):
            try:
                body = json.loads(self.store.get(LEASE_KEY).data)
            except (ValueError, NotFound):
                body = {}
            self.leases.append((now, listing[LEASE_KEY], body if isinstance(body, dict) else {}))
        if self._changed(ASSIGNMENT_KEY, listing):
            a = read_assignment(self.store)
            if a is not None and self._new_read(ASSIGNMENT_KEY, a[1]):
                self.assignment_records.append((now, a[0]))
                self.seen.append(Seen(now, "assignment", a[0].epoch, a[0].term, a[0].leader,
                                      dict(a[0].islands)))
        if self._changed(ELITE_HEAD_KEY, listing):
            self._read_elite(now)
        self.polls += 1

    def _read_head(self, island: int) -> HeadSeen | None:
        current = read_head(self.store, island)
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
        e = read_elite_head(self.store)
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

    def latest(self, island: int) -> HeadSeen | None:
        seen = self.heads[island]
        return seen[-1] if seen else None

    def heartbeat_generation(self, worker: str) -> int | None:
        seen = self.heartbeats.get(worker)
        return seen[-1][1] if seen else None

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


# -- judging -------------------------------------------------------------------------------


def check_lineage(rec: ChaosRecorder, fallbacks: dict[int, Fallback] | None = None) -> None:
    """No island's lineage forked (see module doc). ``fallbacks`` name islands whose HEAD
    checkpoint the test corrupted on purpose."""
    fallbacks = fallbacks or {}
    for island, seen in rec.heads.items():
        fb = fallbacks.get(island)
        segment_start = 0
        for k in range(1, len(seen)):
            a, b = seen[k - 1], seen[k]
            if b.generation < a.generation:
                allowed = fb is not None and a.checkpoint in fb.bad_keys \
                    and b.generation >= fb.floor
                assert allowed, (f"island {island}: HEAD generation went back from "
                                 f"{a.generation} ({a.checkpoint}, {a.owner}) to "
                                 f"{b.generation} ({b.checkpoint}, {b.owner})")
                _check_linear(island, seen[segment_start:k])
                segment_start = k
        _check_linear(island, seen[segment_start:])
        for s in seen:
            if s.checkpoint is None:
                assert s.generation == 0, f"island {island}: HEAD at {s.generation} names no blob"
                continue
            parsed = parse_checkpoint_key(s.checkpoint)
            assert parsed is not None and parsed[0] == island and parsed[1] == s.generation, (
                f"island {island}: HEAD at generation {s.generation} names {s.checkpoint}")
            orphaned_at = rec.orphans[island].get(s.checkpoint)
            assert orphaned_at is None or s.at <= orphaned_at, (
                f"island {island}: {s.checkpoint} was seen above HEAD, written by a worker "
                f"that did not own the island, and later became HEAD (owner {s.owner})")


def _check_linear(island: int, seen: list[HeadSeen]) -> None:
    by_generation: dict[int, str | None] = {}
    order: list[str | None] = []
    for s in seen:
        other = by_generation.setdefault(s.generation, s.checkpoint)
        assert other == s.checkpoint, (
            f"island {island} forked: two checkpoints at generation {s.generation}: "
            f"{other} and {s.checkpoint}")
        if not order or order[-1] != s.checkpoint:
            assert s.checkpoint not in order, (
                f"island {island}: HEAD went back to {s.checkpoint} after "
                f"{order[order.index(s.checkpoint) + 1:]}")
            order.append(s.checkpoint)


def check_resumed(rec: ChaosRecorder, before: dict[int, Head], victim: str, killed_at: float,
                  floor: dict[int, int] | None = None) -> None:
    """Each island the victim held, as HEAD said after the kill (``before``), was taken over
    by another worker whose first new checkpoint is at or above that HEAD's generation (or
    ``floor[island]`` for an island whose checkpoint was corrupted), never from scratch."""
    floor = floor or {}
    for island, last in before.items():
        later = [s for s in rec.heads[island] if s.at > killed_at]
        new = [s for s in later if s.checkpoint != last.checkpoint]
        assert new, f"island {island}: no new checkpoint after {victim} was killed"
        first = new[0]
        assert first.owner != victim, f"island {island}: {victim} wrote after its kill: {first}"
        assert first.generation >= floor.get(island, last.generation), (
            f"island {island}: resumed at generation {first.generation}, below the "
            f"{floor.get(island, last.generation)} of its last checkpoint before the kill")
        assert first.generation > 0, f"island {island} restarted from scratch"
        claims = [s for s in later if s.owner != victim and s.checkpoint == last.checkpoint]
        for c in claims:  # a claim moves the owner, never the generation
            assert c.generation == last.generation, (island, c, last)


def check_elites(rec: ChaosRecorder, *, min_epochs: int = 1,
                 unreadable_ok: set[str] | None = None) -> None:
    """The global best never regresses; no epoch holds a duplicate id or a non-finite score;
    every elite HEAD named a readable epoch except those the test corrupted itself."""
    rec.check_elites()
    assert len(rec.elite_epochs) >= min_epochs, (
        f"only {len(rec.elite_epochs)} elite epochs seen, wanted {min_epochs}")
    for e in rec.elite_epochs:
        assert e.unique, f"elite epoch {e.epoch} holds duplicate ids"
        assert e.finite, f"elite epoch {e.epoch} holds a NaN or infinite score"
    unexpected = set(rec.unreadable_elites) - (unreadable_ok or set())
    assert not unexpected, {k: rec.unreadable_elites[k] for k in unexpected}


def check_heads_readable(store: BlobStore, islands: int) -> dict[int, Head]:
    """Every island has a HEAD whose own checkpoint blob loads (no fallback needed)."""
    heads: dict[int, Head] = {}
    for island in range(islands):
        current = read_head(store, island)
        assert current is not None, f"island {island} has no HEAD"
        head = current[0]
        snap = load_island(store, island, head)
        assert snap is not None and snap.meta.get("key") == head.checkpoint, (
            f"island {island}: HEAD's checkpoint {head.checkpoint} does not load")
        assert snap.generation == head.generation
        heads[island] = head
    return heads


def check_working(rec: ChaosRecorder, workers: list[str], *, leader: bool = True,
                  timeout: float = 8.0) -> None:
    """Each named worker's heartbeat advances, and (``leader``) someone renews the lease."""
    start = {w: rec.heartbeat_generation(w) for w in workers}
    lease_start = len(rec.leases)
    wait_for(lambda: all(rec.heartbeat_generation(w) not in (None, start[w]) for w in workers)
             and (not leader or len(rec.leases) > lease_start), timeout,
             f"heartbeats of {workers}" + (" and a lease renewal" if leader else ""))


def wait_islands_advance(rec: ChaosRecorder, store: BlobStore, islands: int, *,
                         owners: set[str] | None = None, timeout: float = 30.0,
                         what: str = "every island checkpointing") -> dict[int, Head]:
    """Wait until every island's HEAD names a checkpoint above the one it named when called,
    owned (and not released) by one of ``owners`` when given; returns the HEADs then."""
    base = {i: (h.generation if (h := rec.latest(i)) else -1) for i in range(islands)}

    def ok() -> bool:
        for i in range(islands):
            h = rec.latest(i)
            if h is None or h.checkpoint is None or h.generation <= base[i]:
                return False
            if owners is not None and (h.owner not in owners or h.released):
                return False
        return True

    wait_for(ok, timeout, what)
    out = {}
    for i in range(islands):
        current = read_head(store, i)
        assert current is not None
        out[i] = current[0]
    return out


def wait_hosting(rec: ChaosRecorder, islands: int, workers: set[str], *,
                 timeout: float = 30.0) -> None:
    """Wait until the owners of the islands' HEADs (not released) are exactly ``workers``:
    every one of them hosts at least one island and no one else hosts any."""
    def owners() -> set[str | None]:
        return {h.owner if not h.released else None
                for i in range(islands) if (h := rec.latest(i)) is not None}

    wait_for(lambda: owners() == workers, timeout, f"islands hosted by exactly {sorted(workers)}")


__all__ = [
    "ChaosRecorder", "EliteSeen", "Fallback", "HeadSeen", "check_elites",
    "check_heads_readable", "check_lineage", "check_resumed", "check_working",
    "wait_hosting", "wait_islands_advance", "writer_tag",
]
