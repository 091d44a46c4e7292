"""Reading a run's history (``history/*.json``, written by islandsync.leader.history).

Each segment is read through the one record boundary (:func:`read_history_segment`); a bad
segment is skipped with one warning. Where a compacted segment covers others (a compaction
whose deletes had not all landed), the covering one is read and the covered ones skipped;
any other overlap (two leaders' writes) keeps the first copy of each sequence number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from islandsync.bucket.layout import HISTORY_PREFIX, history_key, parse_history_key
from islandsync.bucket.records import HistoryEntry, read_history_segment
from islandsync.errors import CheckpointError
from islandsync.store.base import BlobStore

log = logging.getLogger(__name__)


@dataclass
class History:
    """The run's history entries, oldest first, and what reading it cost."""

    entries: list[HistoryEntry] = field(default_factory=list)
    direction: str = "minimize"
    segments: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable segments, with why


def read_history(store: BlobStore) -> History:
    """Every readable history entry of the run (one list, then one read per segment)."""
    spans = sorted(s for i in store.list(HISTORY_PREFIX)
                   if (s := parse_history_key(i.key)) is not None)
    outer = [s for s in spans
             if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    out = History()
    seen: set[int] = set()
    for first, last in outer:
        key = history_key(first, last)
        try:
            found = read_history_segment(store, key)
        except CheckpointError as err:
            log.warning("history: skipping %s", err)
            out.skipped.append(str(err))
            continue
        if found is None:  # deleted between the listing and the read (a compaction)
            continue
        seg = found[0]
        out.segments += 1
        out.direction = seg.direction if seg.direction in ("minimize", "maximize") \
            else out.direction
        for entry in seg.entries:
            if entry.seq not in seen:
                seen.add(entry.seq)
                out.entries.append(entry)
    out.entries.sort(key=lambda e: e.seq)
    return out


__all__ = ["History", "read_history"]
