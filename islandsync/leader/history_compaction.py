"""The run history's compaction: past ``max_segments`` segments, neighbours merge into one.

Bounded for a week or a year (:mod:`islandsync.leader.history`): the ``compact_group``
neighbouring segments of the narrowest reach are merged into one, thinned to as many entries
as fit its bytes (at most ``per_segment``; every event kept, moved onto the next kept entry),
written, read back, and only then are the originals deleted; old history grows coarser,
never larger than ``max_segments`` x 192 KB.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from islandsync.bucket.history import (
    MAX_SEGMENT_BYTES,
    HistoryEntry,
    HistoryEvent,
    HistorySegment,
    read_history_segment,
    segment_body,
)
from islandsync.bucket.layout import HISTORY_PREFIX, history_key, parse_history_key
from islandsync.bucket.records import landed, stamp, write_record
from islandsync.errors import CheckpointError, NotFound, PreconditionFailed
from islandsync.store.base import BlobStore

log = logging.getLogger("islandsync.leader.history")

#: Events kept per entry; more (a flapping run) are counted in one "dropped" event instead.
MAX_EVENTS_PER_ENTRY = 256


@dataclass(frozen=True)
class Compaction:
    """How a history compacts (the :class:`~islandsync.leader.history.RunHistory`'s own)."""

    store: BlobStore
    direction: str
    per_segment: int
    max_segments: int
    compact_group: int
    is_leader: Callable[[], bool]

    def compact(self) -> int:
        """Merge the oldest segments into one, thinned to fit :data:`MAX_SEGMENT_BYTES`,
        write it, read it back, and only then delete what it merged (a reader that sees both
        prefers the covering one, so a crash in between loses nothing). Segments inside the
        merged range (an earlier compaction's leftovers, a deposed leader's overlapping
        write) are merged too, so none is hidden behind the new one. Returns the number of
        segments in the bucket as far as it knows (unchanged: nothing was compacted)."""
        spans = sorted(s for i in self.store.list(HISTORY_PREFIX)
                       if (s := parse_history_key(i.key)) is not None)
        group = self._group(spans)
        if group is None:
            return len(spans)
        first, last = group[0][0], max(s[1] for s in group)
        entries: list[HistoryEntry] = []
        level = 0
        for span in group:
            try:
                found = read_history_segment(self.store, history_key(*span))
            except CheckpointError as err:
                log.warning("history: %s; dropped while compacting", err)
                continue
            if found is not None:
                entries += found[0].entries
                level = max(level, found[0].level)
        key = history_key(first, last)
        seg = self._fitting(first, last, min(level + 1, 64), entries)
        if key not in {history_key(*s) for s in group} and not self._written(key, seg):
            return len(spans)
        for span in group:
            if history_key(*span) != key and self.is_leader():
                try:
                    self.store.delete(history_key(*span))
                except NotFound:
                    pass
        return len(spans) - (len(group) - 1)

    def _group(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
        """The segments to merge: the neighbours of the narrowest reach, the oldest of
        equals, with every segment inside their range; None when none are due."""
        if len(spans) <= self.max_segments:
            return None
        # Segments merge with others of their own reach (like an LSM tree's levels), so old
        # history grows coarser step by step instead of one segment swallowing the rest.
        outer, n = _outermost(spans), self.compact_group
        if len(outer) < n:
            # Too many segments, but most inside a few others (leftovers, garbage keys of wide
            # reach): no group of neighbours to merge yet. Wait for new segments rather than
            # fail every flush (the 60-minute soak met this: min() of nothing).
            return None
        widths = [b - a + 1 for a, b in outer]
        start = min(range(len(outer) - n + 1),
                    key=lambda k: (max(widths[k:k + n]), sum(widths[k:k + n]), k))
        first, last = outer[start][0], outer[start + n - 1][1]
        return [s for s in spans if first <= s[0] and s[1] <= last]

    def _written(self, key: str, seg: HistorySegment) -> bool:
        """``seg`` written create-only at ``key`` and read back as written."""
        try:
            write_record(self.store, key, seg, if_generation=0)
        except PreconditionFailed:
            if landed(self.store, key, seg, HistorySegment) is None:
                return False  # someone compacted these already
        try:
            back = read_history_segment(self.store, key)
        except CheckpointError:
            back = None
        if back is None or back[0].nonce != seg.nonce:
            log.warning("history: %s did not read back as written; nothing deleted", key)
            return False
        return True

    def _fitting(self, first: int, last: int, level: int,
                 entries: list[HistoryEntry]) -> HistorySegment:
        """The compacted segment: as many of ``entries`` as fit one segment's bytes, up to
        ``per_segment``, thinned evenly (first and last kept, every event moved onto a kept
        entry)."""
        keep = self.per_segment
        key = history_key(first, last)
        while True:
            seg = stamp(HistorySegment(first=first, last=last, level=level,
                                       direction=self.direction, entries=thin(entries, keep)))
            try:
                segment_body(seg, key)
                return seg
            except CheckpointError:
                if keep <= 1:  # fit_entry bounds each entry; even so, never write it
                    return stamp(HistorySegment(first=first, last=last, level=level,
                                                direction=self.direction))
                size = len(seg.model_dump_json().encode())
                keep = max(1, min(keep - 1, int(keep * MAX_SEGMENT_BYTES * 0.95 / size)))


def _outermost(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans not inside another one (after a compaction whose deletes did not all land)."""
    return [s for s in spans
            if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]


def thin(entries: list[HistoryEntry], keep: int) -> list[HistoryEntry]:
    """At most ``keep`` entries, evenly spread, first and last kept; the events of a dropped
    entry move onto the next kept one (so no term change or recovery is ever thinned out).
    Entries are told apart by (sequence number, term): two leaders' entries of one number
    are both real."""
    entries = sorted({(e.seq, e.term): e for e in entries}.values(),
                     key=lambda e: (e.seq, e.term))
    if len(entries) <= keep:
        return entries
    if keep <= 1:
        kept_at = [len(entries) - 1]
    else:
        step = (len(entries) - 1) / (keep - 1)
        kept_at = sorted({round(k * step) for k in range(keep)})
    out: list[HistoryEntry] = []
    carried: list[HistoryEvent] = []
    kept = set(kept_at)
    for k, entry in enumerate(entries):
        carried += entry.events
        if k in kept:
            out.append(entry.model_copy(update={"events": carried[:MAX_EVENTS_PER_ENTRY]}))
            carried = []
    return out


__all__ = ["MAX_EVENTS_PER_ENTRY", "Compaction", "thin"]
