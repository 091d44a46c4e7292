"""The run's history: the leader appends a compact time series to the bucket.

What a user who left a search running for a week wants to see when they come back (how the
global best fell, which machine contributed what, where islands lived and when they moved,
what a recovery cost) exists nowhere else: heartbeats and HEADs are only the present. So the
leader, every ``every_s`` seconds, samples what its cycle already read (heartbeats, HEADs,
the global best) into one :class:`~islandsync.bucket.history.HistoryEntry`, and derives
events from one cycle to the next (term changes, workers dying or joining, drains, islands
moving, recoveries with their seconds, restarts from an older checkpoint or the seed).

Storage: immutable segments ``history/<first>-<last>.json`` (create-only), written when a
segment holds ``per_segment`` entries, nears :data:`MAX_SEGMENT_BYTES`, or is ``flush_s``
old, and on :meth:`RunHistory.close`. A term starts ``early`` (the default): a segment is
due once its entries are as old as the term's history before them (the first entry at once;
with a 5 s cycle, after 10 s, 30 s, 80 s, 200 s; then every ``flush_s``), and entries come
every quarter of the term's age until that reaches ``every_s``. So a fresh run's history
(``islandsync report``, ``islandsync.history``) has its first minute within seconds, not
after ``flush_s``, for about five more segments a term. Every segment is bounded by bytes,
measured on the bytes written, and checked by the reader's own rules before it is written
(:func:`~islandsync.bucket.history.segment_body`): what the reader refuses is never written.
An entry is at most half a segment (:func:`fit_entry`). A new leader lists ``history/`` once
at the start of its term and continues after the highest entry it finds (what the old leader
had not flushed, at most ``flush_s`` of samples, is lost; the events it derived are derived
again where they still show); a deposed leader's overlapping last write is read beside it.
Bounded for a week or a year: past ``max_segments`` the ``compact_group`` neighbouring
segments of the narrowest reach are merged into one, thinned to as many entries as fit its
bytes (at most ``per_segment``; every event kept, moved onto the next kept entry), read back,
and only then are the originals deleted; old history grows coarser, never larger than
``max_segments`` x 192 KB.

Cost (bucket operations, GCS classes): one class-A put per segment (at the defaults, 11
entries 5.5 min apart: 11 an hour, and five more in a term's first minutes), one list per
term, and per compaction (after 256 segments, every 7 new ones: ~1.6 an hour) one list, 8
reads, one put and 8 deletes: about 14 class A and 11 class B an hour, well under $0.01 a
week on GCS (tests/leader/test_history.py counts them).

Wall times in entries are the LEADER'S OWN clock, for plotting only; nothing compares them
with another machine's, and every decision here runs on this process's monotonic clock.
numpy-free and torch-free, like the rest of the leader.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from islandsync.bucket.history import (
    HISTORY_EVENTS,
    MAX_SEGMENT_BYTES,
    HistoryEntry,
    HistoryEvent,
    HistorySegment,
    WorkerSample,
    segment_body,
)
from islandsync.bucket.layout import HISTORY_PREFIX, history_key, parse_history_key
from islandsync.bucket.records import Head, Heartbeat, landed, stamp, write_record
from islandsync.config import best_of
from islandsync.errors import CheckpointError, PreconditionFailed, StoreError
from islandsync.leader.history_compaction import MAX_EVENTS_PER_ENTRY, Compaction, thin
from islandsync.leader.observer import CycleSeen, LeaderObserver
from islandsync.store.base import BlobStore

log = logging.getLogger(__name__)

#: An entry this often while leading (a term's first minutes: sooner, see the module doc).
HISTORY_EVERY_S = 30.0
#: Pending entries are written as a segment at least this often: what a killed leader loses.
HISTORY_FLUSH_S = 300.0


class RunHistory:
    """The leader's history writer (see module doc). Not thread-safe: one leader loop calls
    it. Never raises from :meth:`record_cycle`, :meth:`event` or :meth:`flush` for bucket
    trouble (a history is worth less than a live leader); entries wait for the next flush.

    ``is_leader`` (the lease's view) is checked before every write: a deposed leader writes
    nothing more and drops what it had not flushed."""

    def __init__(self, store: BlobStore, *, direction: str = "minimize",
                 every_s: float = HISTORY_EVERY_S, flush_s: float = HISTORY_FLUSH_S,
                 per_segment: int = 120, max_segments: int = 256,
                 compact_group: int = 8, is_leader: Callable[[], bool] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, early: bool = True) -> None:
        if per_segment < 2 or compact_group < 2 or max_segments < compact_group:
            raise ValueError("per_segment and compact_group >= 2, max_segments >= compact_group")
        self.store, self.direction = store, direction
        self.every_s, self.flush_s = every_s, flush_s
        self.per_segment, self.max_segments, self.compact_group = (per_segment, max_segments,
                                                                   compact_group)
        self.is_leader = is_leader or (lambda: True)
        self.clock, self.wall = clock, wall
        self.early = early
        self._started = clock()
        self._term = 0
        self._term_started = self._started
        self._next_seq: int | None = None  # unknown until the history is listed
        self._segments = 0  # segments in the bucket, as last listed plus our writes
        self._pending: list[tuple[HistoryEntry, int]] = []  # (entry, its JSON size)
        self._pending_since = 0.0
        self._last_entry: float | None = None
        self._events: list[HistoryEvent] = []
        self._dropped_events = 0
        self._forget()

    def _forget(self) -> None:
        """What the previous cycle looked like: compared with each new cycle for events."""
        self._alive: set[str] | None = None
        self._draining: set[str] = set()
        self._evals: dict[str, int] = {}
        self._progress_at: dict[str, float] = {}  # when a worker's evaluations last moved
        self._died: set[str] = set()  # judged dead since its evaluations last moved
        self._owner: dict[int, str | None] = {}
        self._generation: dict[int, int] = {}
        self._recovering: dict[int, tuple[str, str, int, float | None]] = {}

    # -- recording -----------------------------------------------------------------------

    def event(self, kind: str, **fields: Any) -> None:
        """Add an event to the next entry. ``kind`` is one of
        :data:`~islandsync.bucket.records.HISTORY_EVENTS`; fields are ``island``, ``worker``,
        ``target``, ``reason``, ``seconds``, ``term``, ``count``. A bad event is dropped with
        a warning: it is never worth a leader's cycle."""
        if kind not in HISTORY_EVENTS:
            log.warning("history: unknown event kind %r dropped", kind)
            return
        try:
            ev = HistoryEvent(kind=kind, **fields)
        except Exception as err:  # noqa: BLE001 - see docstring
            log.warning("history: event %s dropped: %s", kind, str(err)[:200])
            return
        if len(self._events) >= MAX_EVENTS_PER_ENTRY:
            self._dropped_events += 1
            return
        self._events.append(ev)

    def record_cycle(self, *, term: int, leader: str | None,
                     heartbeats: Mapping[str, Heartbeat | Mapping[str, Any]],
                     alive: Iterable[str], heads: Mapping[int, Head],
                     best: float | None = None, draining: Iterable[str] = (),
                     leader_ops: Mapping[str, int] | None = None) -> None:
        """One leader cycle: derive events from what changed since the last call, and every
        ``every_s`` (sooner when events wait) append an entry; flush when a segment is due.
        ``heartbeats`` are the workers' validated records (or their ``model_dump()``),
        ``alive`` those judged alive, ``heads`` the islands' HEADs, ``best`` the global
        elite's best in the problem's direction, ``draining`` the workers being emptied,
        ``leader_ops`` the leader's bucket operations so far (``{"A": n, "B": n}``)."""
        try:
            self._record(term, leader, heartbeats, set(alive), heads, best, set(draining),
                         leader_ops or {})
        except Exception:  # noqa: BLE001 - a history bug must not stop the leader
            log.exception("history: recording failed (skipped this cycle)")

    def _record(self, term: int, leader: str | None,
                heartbeats: Mapping[str, Heartbeat | Mapping[str, Any]], alive: set[str],
                heads: Mapping[int, Head], best: float | None, draining: set[str],
                leader_ops: Mapping[str, int]) -> None:
        now = self.clock()
        if term != self._term:
            if self._term:
                self.flush()  # what we wrote in the old term is ours; then start afresh
            self._term, self._next_seq = term, None
            self._term_started = now
            self._pending.clear()
            self._forget()
            self.event("term", term=term, worker=leader)
        beats = {w: hb if isinstance(hb, Heartbeat) else Heartbeat.model_validate(hb)
                 for w, hb in heartbeats.items()}
        self._derive(now, beats, alive, heads, draining)
        # Early in a term, entries come more often and segments sooner (see module doc).
        every = min(self.every_s, (now - self._term_started) / 4) if self.early \
            else self.every_s
        due = self._last_entry is None or now - self._last_entry >= every or (
            self._events and now - self._last_entry >= self.every_s / 6)
        if due:
            self._append(now, term, leader, beats, alive, heads, best, leader_ops)
        flush_after = min(self.flush_s, self._pending_since - self._term_started) \
            if self.early else self.flush_s
        if self._pending and (len(self._pending) >= self.per_segment
                              or sum(n for _, n in self._pending) > MAX_SEGMENT_BYTES * 0.8
                              or now - self._pending_since >= flush_after):
            self.flush()

    def _derive(self, now: float, beats: Mapping[str, Heartbeat], alive: set[str],
                 heads: Mapping[int, Head], draining: set[str]) -> None:
        first = self._alive is None
        for w, hb in beats.items():
            # Progress, not liveness, dates a worker's end: its evaluations stop moving when
            # it dies, however long the leader takes to judge it dead (or flaps on it).
            if hb.evaluations != self._evals.get(w):
                self._evals[w], self._progress_at[w] = hb.evaluations, now
                self._died.discard(w)
        if not first:
            for w in sorted(alive - self._alive):  # type: ignore[operator]
                self.event("joined", worker=w)
            for w in sorted(self._alive - alive):  # type: ignore[operator]
                hb = beats.get(w)
                self._died.add(w)
                self.event("dead", worker=w,
                           reason="exited" if hb is not None and hb.state == "exited"
                           else "silent")
        for w in sorted(draining - self._draining):
            self.event("drain", worker=w)
        self._alive, self._draining = set(alive), set(draining)
        for island, head in heads.items():
            owner, gen = head.owner, head.generation
            before = self._owner.get(island)
            if island in self._generation and gen < self._generation[island]:
                self.event("restart", island=island, worker=owner)
            if not first and before is not None and owner is not None and owner != before:
                self._recovering.pop(island, None)
                if before not in alive or before in self._died:
                    # Evolving again only once the new owner's checkpoint moves HEAD on.
                    self._recovering[island] = (before, owner, gen,
                                                self._progress_at.get(before))
                else:
                    self.event("moved", island=island, worker=before, target=owner)
            pending = self._recovering.get(island)
            if pending is not None and owner == pending[1] and gen > pending[2]:
                del self._recovering[island]
                seconds = None if pending[3] is None else max(0.0, now - pending[3])
                self.event("recovery", island=island, worker=pending[0], target=owner,
                           seconds=seconds)
            self._owner[island], self._generation[island] = owner, gen

    def _append(self, now: float, term: int, leader: str | None,
                beats: Mapping[str, Heartbeat], alive: set[str], heads: Mapping[int, Head],
                best: float | None, leader_ops: Mapping[str, int]) -> None:
        workers = {}
        for w, hb in beats.items():
            ops = hb.store.get("ops") if isinstance(hb.store, dict) else None
            ops = ops if isinstance(ops, dict) else {}
            workers[w] = WorkerSample(
                alive=w in alive, state=hb.state, platform=hb.platform, device=hb.device,
                rate=hb.rate if w in alive else 0.0, islands=len(hb.islands),
                evals=hb.evaluations, ops_a=_count(ops.get("A")), ops_b=_count(ops.get("B")),
                version=hb.version, protocol=hb.protocol)
        n = max(heads, default=-1) + 1
        islands = [(None, 0, None, 0)] * n
        for i, h in heads.items():
            islands[i] = (h.owner, h.generation, h.best, h.evals)
        events = list(self._events)
        if self._dropped_events:
            events.append(HistoryEvent(kind="reassign", reason="events-dropped",
                                       count=self._dropped_events))
        self._events, self._dropped_events = [], 0
        entry = HistoryEntry(
            seq=0, t=self.wall(), up=now - self._started, term=term, leader=leader,
            best=best_of(self.direction, [*(h.best for h in heads.values()), best]),
            # HEADs count an island's evaluations; without them (a caller that passes none),
            # the workers' own counters are the best estimate.
            evals=sum(h.evals for h in heads.values()) or sum(w.evals for w in workers.values()),
            leader_ops_a=_count(leader_ops.get("A")), leader_ops_b=_count(leader_ops.get("B")),
            workers=workers, islands=islands, events=events)
        entry, size = fit_entry(entry)
        if not self._pending:
            self._pending_since = now
        self._pending.append((entry, size))
        self._last_entry = now
        # Bucket trouble for a long while: keep a bounded backlog, oldest samples first out.
        while len(self._pending) > 4 * self.per_segment:
            self._pending.pop(0)

    # -- writing -------------------------------------------------------------------------

    def _resume(self) -> None:
        """Find where the series stands: the next sequence number after every segment."""
        spans = [s for i in self.store.list(HISTORY_PREFIX)
                 if (s := parse_history_key(i.key)) is not None]
        self._segments = len(spans)
        self._next_seq = max((last for _, last in spans), default=-1) + 1

    def flush(self) -> bool:
        """Write the pending entries as segments (each within :data:`MAX_SEGMENT_BYTES`);
        True when written (or nothing pending).
        A segment whose name is taken (a deposed leader's last write) is renumbered after
        the newest one. StoreError keeps the entries for the next flush."""
        if not self._pending:
            return True
        if not self.is_leader():
            log.info("history: not the leader any more; %d unwritten entries dropped",
                     len(self._pending))
            self._pending.clear()
            return False
        try:
            tries = 0
            while self._pending:  # a backlog over one segment's bytes takes several
                if self._next_seq is None:
                    self._resume()
                if not self._write_segment():
                    tries += 1
                    if tries == 3:
                        return False
                    self._next_seq = None  # taken: list again and renumber
            while self._segments > self.max_segments and self.is_leader():
                before = self._segments
                self._compact()
                if self._segments >= before:
                    break  # someone else's compaction, or nothing read back: next flush
        except StoreError as err:
            log.warning("history: bucket trouble, %d entries wait: %s", len(self._pending), err)
            return False
        return True

    def _write_segment(self) -> bool:
        """The oldest pending entries that fit one segment, measured on the bytes written."""
        first = self._next_seq or 0
        n, total = 0, 1024  # the segment's own fields
        for _, size in self._pending:
            if n and total + size + 1 > MAX_SEGMENT_BYTES:
                break
            n, total = n + 1, total + size + 1
        while True:
            entries = [e.model_copy(update={"seq": first + k}) for k, (e, _) in
                       enumerate(self._pending[:n])]
            last = first + len(entries) - 1
            key = history_key(first, last)
            seg = stamp(HistorySegment(first=first, last=last, direction=self.direction,
                                       entries=entries))
            try:
                segment_body(seg, key)
                break
            except CheckpointError:
                if n == 1:  # fit_entry bounds every entry: never, but never write it either
                    log.warning("history: an entry the reader would refuse dropped")
                    self._pending.pop(0)
                    return True
                n -= 1
        try:
            write_record(self.store, key, seg, if_generation=0)
        except PreconditionFailed:
            if landed(self.store, key, seg, HistorySegment) is None:
                return False
        del self._pending[:n]
        self._next_seq = last + 1
        self._segments += 1
        return True

    def _compact(self) -> None:
        """One compaction (:mod:`islandsync.leader.history_compaction`), when one is due."""
        self._segments = Compaction(self.store, self.direction, self.per_segment,
                                    self.max_segments, self.compact_group,
                                    self.is_leader).compact()

    def close(self) -> None:
        """Flush what is pending (the leader is stopping or giving its lease up)."""
        self.flush()


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def fit_entry(entry: HistoryEntry) -> tuple[HistoryEntry, int]:
    """``entry`` and its size in bytes, at most half a segment: a huge run's entry keeps
    its summary, not each island, then not each worker, then its first events only."""
    for update in ({}, {"islands": []}, {"workers": {}},
                   {"events": entry.events[:MAX_EVENTS_PER_ENTRY // 8]}):
        entry = entry.model_copy(update=update)
        size = len(entry.model_dump_json().encode())
        if size <= MAX_SEGMENT_BYTES // 2:
            break
    return entry, size


class HistoryObserver(LeaderObserver):
    """The leader observer that keeps the run's history: each leading cycle's heartbeats,
    HEADs, the global best and the leader's bucket operations go to
    :meth:`RunHistory.record_cycle`, islands moved become ``reassign`` events (a drain is
    one, with placement's reason ``drain``), and the history is flushed when the candidate
    stops. A deposed leader writes nothing more (its next flush drops what is pending)."""

    def __init__(self, history: RunHistory) -> None:
        self.history = history
        self.leading = False
        self._ops: dict[str, int] = {}
        self._best: float | None = None
        history.is_leader = lambda: self.leading

    def on_lease(self, term: int, leading: bool, renewal_failures: int) -> None:
        self.leading = leading

    def on_store_ops(self, counts: Mapping[str, Any]) -> None:
        ops = counts.get("ops") if isinstance(counts, Mapping) else None
        self._ops = dict(ops) if isinstance(ops, Mapping) else {}

    def on_global_best(self, best: float | None) -> None:
        self._best = best

    def on_islands_moved(self, reason: str, count: int) -> None:
        self.history.event("reassign", reason=reason[:32], count=count)

    def on_cycle(self, seen: CycleSeen) -> None:
        if self.leading:
            self.history.record_cycle(term=seen.term, leader=seen.leader,
                                      heartbeats=seen.heartbeats, alive=seen.alive,
                                      heads=seen.heads, best=self._best, leader_ops=self._ops)

    def on_stop(self) -> None:
        self.history.close()  # what this leader sampled since its last segment


__all__ = ["HISTORY_EVERY_S", "HISTORY_FLUSH_S", "HistoryObserver", "RunHistory", "fit_entry",
           "thin"]
