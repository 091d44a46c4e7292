"""A run's history (``history/*.json``, written by islandsync.leader.history): its records,
read through the one record boundary of :mod:`islandsync.bucket.records`, and its reader.

Each segment is read through the one record boundary (:func:`read_history_segment`); a bad
segment is skipped with one warning. The writer checks every segment with the same rules
before it writes it (:func:`segment_body`): what the reader refuses is never written. Where a
compacted segment covers others (a compaction whose deletes had not all landed), the covering
one is read and the covered ones skipped; any other overlap (two leaders' writes) is read
whole, entries told apart by (sequence number, term).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import BaseModel, Field

from islandsync.bucket.layout import HISTORY_PREFIX, history_key, parse_history_key
from islandsync.bucket.records import (
    RECORD_CONFIG,
    Count,
    Finite,
    Rate,
    Record,
    Seconds,
    Text,
    WorkerId,
    parse_record,
    read_record,
)
from islandsync.config.objective import DIRECTIONS
from islandsync.errors import CheckpointError
from islandsync.store.base import BlobStore

log = logging.getLogger(__name__)

#: Kinds of history event. ``term``: a new leader's term began; ``dead``: a worker stopped
#: beating; ``joined``: a new worker beat; ``moved``: an island changed owner (``reason``
#: from placement when known); ``recovery``: an island of a dead worker evolves again
#: elsewhere (``seconds`` since its old owner's evaluations last moved); ``drain``: a worker
#: near its session deadline is emptied; ``restart``: an island's generation went backwards (it
#: restarted from an older checkpoint or from its seed); ``reassign``: the leader moved
#: ``count`` islands for ``reason``.
HISTORY_EVENTS = ("term", "dead", "joined", "moved", "recovery", "drain", "restart",
                  "reassign", "finished")
#: Largest body the history writer makes; :data:`MAX_RECORD_BYTES` is the reader's cap.
MAX_SEGMENT_BYTES = 192 * 1024


class HistoryEvent(BaseModel):
    model_config = RECORD_CONFIG

    kind: Annotated[str, Field(max_length=16)]
    island: Count | None = None
    worker: WorkerId | None = None
    target: WorkerId | None = None
    reason: Annotated[str, Field(max_length=32)] | None = None
    seconds: Seconds | None = None
    term: Count | None = None
    count: Count | None = None


class WorkerSample(BaseModel):
    """One worker as the leader saw it at one history entry."""

    model_config = RECORD_CONFIG

    alive: bool = True
    state: Annotated[str, Field(max_length=32)] = "running"
    platform: Text | None = None
    device: Text | None = None
    rate: Rate = 0.0
    islands: Count = 0
    evals: Count = 0
    #: Bucket operations so far by pricing class (this worker process's own counter).
    ops_a: Count = 0
    ops_b: Count = 0
    version: Text | None = None
    protocol: Count | None = None


#: One island at one entry: [owner, generation, best (problem's direction), evaluations].
IslandSample = tuple[WorkerId | None, Count, Finite | None, Count]


class HistoryEntry(BaseModel):
    """One sample of the whole run. ``t`` is the LEADER'S OWN wall clock (seconds since the
    epoch): for plotting only, never compared with another machine's; ``up`` is seconds on
    that leader's monotonic clock since it started writing history (resets on failover)."""

    model_config = RECORD_CONFIG

    seq: Count
    t: Seconds
    up: Seconds = 0.0
    term: Count = 0
    leader: WorkerId | None = None
    best: Finite | None = None
    evals: Count = 0
    leader_ops_a: Count = 0
    leader_ops_b: Count = 0
    workers: Annotated[dict[WorkerId, WorkerSample], Field(max_length=4096)] = Field(
        default_factory=dict)
    islands: Annotated[list[IslandSample], Field(max_length=100_000)] = Field(
        default_factory=list)
    events: Annotated[list[HistoryEvent], Field(max_length=1024)] = Field(default_factory=list)


class HistorySegment(Record):
    """``history/<first>-<last>.json``: entries ``first..last`` of the run's history, written
    once (create-only) by the leader; a compacted segment thins older ones (``level`` > 0)."""

    first: Count
    last: Count
    level: Annotated[int, Field(ge=0, le=64)] = 0
    direction: Annotated[str, Field(max_length=8)] = "minimize"
    entries: Annotated[list[HistoryEntry], Field(max_length=10_000)] = Field(
        default_factory=list)


def read_history_segment(store: BlobStore, key: str) -> tuple[HistorySegment, int] | None:
    """A history segment; CheckpointError when it is not valid or not what its key says
    (entries outside first..last, or out of order)."""
    found = read_record(store, key, HistorySegment)
    if found is None:
        return None
    _check_span(found[0], key, f"{store.url.rstrip('/')}/{key}")
    return found


def _check_span(seg: HistorySegment, key: str, name: str) -> None:
    span = parse_history_key(key)
    keys = [(e.seq, e.term) for e in seg.entries]
    if (span != (seg.first, seg.last) or keys != sorted(set(keys))
            or any(not seg.first <= q <= seg.last for q, _ in keys)):
        raise CheckpointError(f"{name}: not a valid HistorySegment record (entries do not "
                              f"match the key's range)")


def segment_body(seg: HistorySegment, key: str) -> bytes:
    """The bytes :func:`~islandsync.bucket.records.write_record` writes for ``seg`` (stamped
    already), checked by the reader's own rules: a segment the reader would refuse (over
    :data:`MAX_SEGMENT_BYTES`, or invalid) raises CheckpointError and is never written."""
    body = seg.model_dump_json().encode()
    if len(body) > MAX_SEGMENT_BYTES:
        raise CheckpointError(f"{key}: {len(body)} bytes, more than a segment's "
                              f"{MAX_SEGMENT_BYTES}")
    _check_span(parse_record(body, HistorySegment, name=key), key, key)
    return body


@dataclass
class History:
    """The run's history entries, oldest first, and what reading it cost."""

    entries: list[HistoryEntry] = field(default_factory=list)
    direction: str = "minimize"
    segments: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable segments, with why


def read_history(store: BlobStore) -> History:
    """Every readable history entry of the run (one list, then one read per segment).

    A segment inside a readable compacted one (``level`` > 0) is what that compaction merged
    and had not deleted yet: skipped. A segment inside only level-0 ones is two leaders'
    overlapping writes (a deposed leader's last flush): read too, its entries kept beside the
    other's (entries are told apart by sequence number and term), so neither hides the other.
    """
    spans = sorted(s for i in store.list(HISTORY_PREFIX)
                   if (s := parse_history_key(i.key)) is not None)
    outer = [s for s in spans
             if not any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans)]
    out = History()
    seen: set[tuple[int, int]] = set()
    levels: dict[tuple[int, int], int] = {}
    for span in outer + [s for s in spans if s not in outer]:
        covering = [levels.get(o) for o in outer if o != span and o[0] <= span[0]
                    and span[1] <= o[1]]
        if covering and all(level is not None and level > 0 for level in covering):
            continue  # merged into a compacted segment already
        seg = _read_or_skip(store, span, out)
        if seg is None:
            continue
        levels[span] = seg.level
        for entry in seg.entries:
            if (entry.seq, entry.term) not in seen:
                seen.add((entry.seq, entry.term))
                out.entries.append(entry)
    out.entries.sort(key=lambda e: (e.seq, e.term))
    return out


def _read_or_skip(store: BlobStore, span: tuple[int, int], out: History
                  ) -> HistorySegment | None:
    key = history_key(*span)
    try:
        found = read_history_segment(store, key)
    except CheckpointError as err:
        log.warning("history: skipping %s", err)
        out.skipped.append(str(err))
        return None
    if found is None:  # deleted between the listing and the read (a compaction)
        return None
    seg = found[0]
    out.segments += 1
    out.direction = seg.direction if seg.direction in DIRECTIONS \
        else out.direction
    return seg


__all__ = [
    "HISTORY_EVENTS", "MAX_SEGMENT_BYTES", "History", "HistoryEntry", "HistoryEvent",
    "HistorySegment", "IslandSample", "WorkerSample", "read_history", "read_history_segment",
    "segment_body",
]
