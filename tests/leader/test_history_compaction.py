"""The run history's compaction (islandsync.leader.history_compaction): neighbours of the
narrowest reach merged, thinned with every event kept, and the originals deleted only after
the merged segment reads back. (Through RunHistory, in tests/leader/test_history.py.)"""

from __future__ import annotations

from pathlib import Path

from islandsync.bucket.history import HistoryEntry, HistorySegment, read_history
from islandsync.bucket.layout import HISTORY_PREFIX, history_key, parse_history_key
from islandsync.bucket.records import write_record
from islandsync.leader.history_compaction import Compaction, thin
from islandsync.store import LocalStore


def _segment(store: LocalStore, first: int, last: int, level: int = 0) -> None:
    entries = [HistoryEntry(seq=k, t=float(k), best=1.0 / (1 + k),
                            events=[{"kind": "dead", "worker": "w"}] if k == first else [])
               for k in range(first, last + 1)]
    write_record(store, history_key(first, last),
                 HistorySegment(first=first, last=last, level=level, entries=entries),
                 if_generation=0)


def _spans(store: LocalStore) -> list[tuple[int, int]]:
    return sorted(s for i in store.list(HISTORY_PREFIX) if (s := parse_history_key(i.key)))


def _compaction(store: LocalStore, **kw: object) -> Compaction:
    options = {"direction": "minimize", "per_segment": 100, "max_segments": 3,
               "compact_group": 2, "is_leader": lambda: True, **kw}
    return Compaction(store, **options)  # type: ignore[arg-type]


def test_thin_keeps_first_last_and_events() -> None:
    entries = [HistoryEntry(seq=k, t=float(k)) for k in range(10)]
    entries[3] = HistoryEntry(seq=3, t=3.0, events=[{"kind": "dead", "worker": "x"}])
    kept = thin(entries, 4)
    assert [e.seq for e in kept][0] == 0 and kept[-1].seq == 9 and len(kept) == 4
    assert [ev.kind for e in kept for ev in e.events] == ["dead"]


def test_the_narrowest_neighbours_merge_and_nothing_is_lost(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    _segment(store, 0, 9, level=1)  # already compacted: wide
    for k in (10, 11, 12):
        _segment(store, k, k)
    before = read_history(store).entries
    assert _compaction(store).compact() == 3
    assert _spans(store) == [(0, 9), (10, 11), (12, 12)]  # the two narrowest, oldest first
    after = read_history(store).entries
    assert [e.seq for e in after] == [e.seq for e in before]
    assert sum(len(e.events) for e in after) == 4  # every event kept


def test_nothing_is_compacted_within_max_segments_or_by_a_deposed_leader(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    for k in range(3):
        _segment(store, k, k)
    assert _compaction(store).compact() == 3 and len(_spans(store)) == 3
    _segment(store, 3, 3)
    # Deposed: the merged segment may be written, but no original is deleted.
    _compaction(store, is_leader=lambda: False).compact()
    assert {(0, 0), (1, 1), (2, 2), (3, 3)} <= set(_spans(store))
    assert [e.seq for e in read_history(store).entries] == [0, 1, 2, 3]
