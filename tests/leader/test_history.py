"""The run history: the leader's writer (islandsync.leader.history), the segments' read
boundary and reader (bucket/records.py, bucket/history.py), and the protocol record."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from islandsync.bucket.history import (
    MAX_SEGMENT_BYTES,
    HistoryEntry,
    HistorySegment,
    read_history,
    read_history_segment,
)
from islandsync.bucket.layout import (
    HISTORY_PREFIX,
    PROTOCOL_KEY,
    PROTOCOL_VERSION,
    history_key,
    parse_history_key,
)
from islandsync.bucket.records import (
    Head,
    Heartbeat,
    ProtocolMismatch,
    ProtocolRecord,
    check_protocol,
    write_record,
)
from islandsync.errors import CheckpointError
from islandsync.leader.history import HistoryObserver, RunHistory
from islandsync.leader.observer import CycleSeen
from islandsync.store import LocalStore
from islandsync.store.counting import CountingStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def beat(worker: str, islands: list[int], *, rate: float = 100.0, state: str = "running",
         evals: int = 0) -> Heartbeat:
    return Heartbeat(worker=worker, platform="local", islands=islands, rate=rate, state=state,
                     evaluations=evals, version="0.1.0", protocol=PROTOCOL_VERSION,
                     store={"ops": {"A": 10, "B": 20}})


def head(island: int, owner: str | None, generation: int, best: float) -> Head:
    return Head(island=island, owner=owner, generation=generation, best=best,
                evals=generation * 64)


def history(store, clock: Clock, **kw) -> RunHistory:
    # Not early: these tests count entries and segments at a steady cadence.
    kw = {"every_s": 1.0, "flush_s": 1e9, "per_segment": 5, "early": False, **kw}
    return RunHistory(store, clock=clock, wall=lambda: 1.7e9 + clock.t, **kw)


def segments(store) -> list[tuple[int, int]]:
    return sorted(s for i in store.list(HISTORY_PREFIX) if (s := parse_history_key(i.key)))


def cycle(h: RunHistory, clock: Clock, *, term: int = 1, owners: dict[int, str],
          gens: dict[int, int], alive: set[str], dt: float = 1.0, **kw) -> None:
    clock.t += dt
    beats = {w: beat(w, [i for i, o in owners.items() if o == w], evals=int(clock.t))
             for w in alive}
    beats.update(kw.pop("extra_beats", {}))
    heads = {i: head(i, o, gens[i], 100.0 / (1 + gens[i])) for i, o in owners.items()}
    h.record_cycle(term=term, leader="lead", heartbeats=beats, alive=alive, heads=heads, **kw)


def test_entries_are_sampled_into_immutable_segments(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock)
    owners = {0: "a", 1: "b"}
    for g in range(12):
        cycle(h, clock, owners=owners, gens={0: g, 1: g}, alive={"a", "b"})
    # 12 entries, 5 per segment: two segments written, two entries pending.
    assert segments(store) == [(0, 4), (5, 9)]
    h.close()
    assert segments(store) == [(0, 4), (5, 9), (10, 11)]
    got = read_history(store)
    assert [e.seq for e in got.entries] == list(range(12))
    last = got.entries[-1]
    assert last.best == pytest.approx(100.0 / 12) and last.evals == 2 * 11 * 64
    assert last.workers["a"].rate == 100.0 and last.workers["a"].islands == 1
    assert last.workers["a"].version == "0.1.0" and last.workers["a"].ops_b == 20
    assert last.islands[1] == ("b", 11, pytest.approx(100.0 / 12), 11 * 64)
    assert [ev.kind for ev in got.entries[0].events] == ["term"]
    # Wall time is the leader's own clock, monotonic seconds since it started beside it.
    assert last.t == pytest.approx(1.7e9 + clock.t) and last.up == pytest.approx(12.0)


def test_entries_only_every_every_s(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock, every_s=10.0)
    for g in range(30):  # 30 cycles of 1 s: entries at 0, 10, 20 s
        cycle(h, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    h.close()
    assert len(read_history(store).entries) == 3


def test_events_are_derived_from_cycle_to_cycle(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock, per_segment=100)
    cycle(h, clock, owners={0: "a", 1: "b"}, gens={0: 5, 1: 5}, alive={"a", "b"})
    cycle(h, clock, owners={0: "a", 1: "b"}, gens={0: 6, 1: 6}, alive={"a", "b", "c"})
    # b dies: its island 1 is claimed by c (HEAD same generation), then c checkpoints.
    cycle(h, clock, owners={0: "a", 1: "b"}, gens={0: 7, 1: 6}, alive={"a", "c"}, dt=4.0)
    cycle(h, clock, owners={0: "a", 1: "c"}, gens={0: 8, 1: 6}, alive={"a", "c"})
    cycle(h, clock, owners={0: "a", 1: "c"}, gens={0: 9, 1: 7}, alive={"a", "c"})
    # a live move (balance), a restart (generation back), a drain, a reason from placement.
    cycle(h, clock, owners={0: "c", 1: "c"}, gens={0: 3, 1: 8}, alive={"a", "c"},
          draining={"a"})
    h.event("reassign", reason="balance", count=1)
    h.event("nonsense")  # unknown kind: dropped with a warning, never raised
    cycle(h, clock, owners={0: "c", 1: "c"}, gens={0: 4, 1: 9}, alive={"a", "c"},
          extra_beats={"a": beat("a", [], state="exited")})
    cycle(h, clock, owners={0: "c", 1: "c"}, gens={0: 5, 1: 9}, alive={"c"},
          extra_beats={"a": beat("a", [], state="exited")})
    h.close()
    events = [(e.kind, e.island, e.worker, e.target, e.reason)
              for entry in read_history(store).entries for e in entry.events]
    assert events == [
        ("term", None, "lead", None, None),
        ("joined", None, "c", None, None),
        ("dead", None, "b", None, "silent"),
        ("recovery", 1, "b", "c", None),
        ("drain", None, "a", None, None),
        ("restart", 0, "c", None, None),
        ("moved", 0, "a", "c", None),
        ("reassign", None, None, None, "balance"),
        ("dead", None, "a", None, "exited"),
    ]
    recovery = next(e for entry in read_history(store).entries for e in entry.events
                    if e.kind == "recovery")
    # b's evaluations last moved at the second cycle; island 1 moved on 4+1+1 s later.
    assert recovery.seconds == pytest.approx(6.0)


def test_a_recovery_is_seen_through_a_flapping_liveness(tmp_path: Path) -> None:
    """A killed worker's stale heartbeat judged alive again for a cycle (a slow leader) when
    its island moves: still a recovery, timed from the dead worker's last progress."""
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock, per_segment=100)
    stale = beat("b", [1], evals=5)  # b is killed: its heartbeat never changes again
    for alive in ({"a", "b"}, {"a", "b"}, {"a"}, {"a", "b"}):
        cycle(h, clock, owners={0: "a", 1: "b"}, gens={0: 1, 1: 1}, alive=alive,
              extra_beats={"b": stale})
    cycle(h, clock, owners={0: "a", 1: "a"}, gens={0: 2, 1: 1}, alive={"a", "b"},
          extra_beats={"b": stale})
    cycle(h, clock, owners={0: "a", 1: "a"}, gens={0: 3, 1: 2}, alive={"a", "b"},
          extra_beats={"b": stale})
    h.close()
    events = [e for entry in read_history(store).entries for e in entry.events]
    assert [e.kind for e in events if e.kind in ("moved", "recovery")] == ["recovery"]
    recovery, = (e for e in events if e.kind == "recovery")
    assert recovery.seconds == pytest.approx(5.0)  # from b's first (only) progress


def test_a_new_leader_continues_the_series(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    old = history(store, clock)
    for g in range(7):
        cycle(h := old, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    assert segments(store) == [(0, 4)]  # 2 entries pending when the old leader dies
    new = history(store, clock)  # another process: knows nothing but the bucket
    for g in range(7, 10):
        cycle(new, clock, term=2, owners={0: "a"}, gens={0: g}, alive={"a"})
    new.close()
    assert h is old and segments(store) == [(0, 4), (5, 7)]
    entries = read_history(store).entries
    assert [e.seq for e in entries] == list(range(8))
    assert [e.term for e in entries] == [1] * 5 + [2] * 3
    assert entries[5].events[0].kind == "term" and entries[5].events[0].term == 2


def test_a_deposed_leader_writes_nothing(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    leading = [True]
    h = history(store, clock, is_leader=lambda: leading[0])
    for g in range(3):
        cycle(h, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    leading[0] = False
    assert h.flush() is False
    assert segments(store) == []


def test_a_taken_segment_name_is_renumbered(tmp_path: Path) -> None:
    """Two leaders overlapping for a moment: the segment name this one wanted is taken."""
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock)
    cycle(h, clock, owners={0: "a"}, gens={0: 0}, alive={"a"})
    h.flush()
    assert segments(store) == [(0, 0)]
    cycle(h, clock, owners={0: "a"}, gens={0: 1}, alive={"a"})
    cycle(h, clock, owners={0: "a"}, gens={0: 2}, alive={"a"})
    other = HistorySegment(first=1, last=2, entries=[HistoryEntry(seq=1, t=1.0),
                                                     HistoryEntry(seq=2, t=2.0)])
    write_record(store, history_key(1, 2), other, if_generation=0)
    assert h.flush() is True
    assert segments(store) == [(0, 0), (1, 2), (3, 4)]


def test_history_stays_bounded_and_keeps_every_event(tmp_path: Path) -> None:
    """A week at a fast cadence in miniature: past max_segments the oldest are merged and
    thinned, never more than max_segments remain, and no event is thinned away."""
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock, per_segment=4, max_segments=6, compact_group=3)
    for g in range(200):
        owner = "a" if (g // 25) % 2 == 0 else "b"  # islands move every 25 cycles
        cycle(h, clock, owners={0: owner}, gens={0: g}, alive={"a", "b"})
        assert len(segments(store)) <= 6
    h.close()
    got = read_history(store)
    seqs = [e.seq for e in got.entries]
    assert seqs[0] == 0 and seqs[-1] == 199 and seqs == sorted(seqs)
    assert len(got.entries) < 60  # thinned
    moves = [e for entry in got.entries for e in entry.events if e.kind == "moved"]
    assert len(moves) == 7  # every move of the 200 cycles survives compaction


def test_a_huge_entry_drops_island_detail(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock)
    n = 6000  # ~40 bytes an island: over half a segment
    cycle(h, clock, owners={i: "worker-with-a-long-name" for i in range(n)},
          gens={i: 1 for i in range(n)}, alive={"worker-with-a-long-name"})
    h.close()
    (first, last), = segments(store)
    assert store.stat(history_key(first, last)).size <= MAX_SEGMENT_BYTES
    entry, = read_history(store).entries
    assert entry.islands == [] and entry.evals == n * 64


def test_segments_are_read_through_the_boundary(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path)
    good = HistorySegment(first=0, last=1, entries=[HistoryEntry(seq=0, t=1.0, best=3.0),
                                                    HistoryEntry(seq=1, t=2.0, best=2.0)])
    write_record(store, history_key(0, 1), good, if_generation=0)
    # Garbage, a lying range, an entry with NaN, a deep bomb: each skipped with a warning.
    store.put(history_key(2, 3), b"{not json", if_generation=0)
    liar = HistorySegment(first=4, last=4, entries=[HistoryEntry(seq=9, t=1.0)])
    write_record(store, history_key(4, 4), liar, if_generation=0)
    store.put(history_key(5, 5), json.dumps({"first": 5, "last": 5, "entries": [
        {"seq": 5, "t": 1.0, "best": "NaN"}]}).encode(), if_generation=0)
    store.put(history_key(6, 6), b"[" * 100_000, if_generation=0)
    store.put("history/notes.txt", b"ignored: not a segment key", if_generation=0)
    for key in (history_key(2, 3), history_key(4, 4), history_key(5, 5), history_key(6, 6)):
        with pytest.raises(CheckpointError, match=key):
            read_history_segment(store, key)
    with caplog.at_level(logging.WARNING):
        got = read_history(store)
    assert [e.best for e in got.entries] == [3.0, 2.0]
    assert len(got.skipped) == 4 and caplog.text.count("history: skipping") == 4


def test_a_covering_segment_wins(tmp_path: Path) -> None:
    """A compaction wrote its merged segment but died before deleting what it merged."""
    store = LocalStore(tmp_path)
    for first in (0, 2):
        write_record(store, history_key(first, first + 1), HistorySegment(
            first=first, last=first + 1, entries=[HistoryEntry(seq=first, t=0.0),
                                                  HistoryEntry(seq=first + 1, t=0.0)]),
            if_generation=0)
    write_record(store, history_key(0, 3), HistorySegment(
        first=0, last=3, level=1, entries=[HistoryEntry(seq=0, t=0.0, best=1.0),
                                           HistoryEntry(seq=3, t=0.0, best=1.0)]),
        if_generation=0)
    got = read_history(store)
    assert [e.seq for e in got.entries] == [0, 3] and got.segments == 1


def test_the_history_observer_keeps_the_history_from_the_leaders_hooks(
        tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock)
    observer = HistoryObserver(h)

    def seen(term: int, generation: int) -> CycleSeen:
        return CycleSeen(term=term, leader="lead", heartbeats={"a": beat("a", [0], evals=640)},
                         alive=frozenset({"a"}), heads={0: head(0, "a", generation, 1.0)})

    observer.on_lease(3, True, 0)
    observer.on_store_ops({"ops": {"A": 7, "B": 9}, "errors": {}})
    observer.on_global_best(0.5)
    observer.on_islands_moved("dead", 1)
    observer.on_merge(0.1, 10, 0)
    observer.on_cycle(seen(3, 10))
    observer.on_lease(3, False, 0)  # deposed: nothing more is written
    observer.on_cycle(seen(3, 11))
    assert h.flush() is False and segments(store) == []
    observer.on_lease(4, True, 0)
    clock.t += 5
    observer.on_cycle(seen(4, 12))
    observer.on_stop()  # flushes
    entry, = read_history(store).entries
    assert (entry.term, entry.leader, entry.best, entry.leader_ops_a) == (4, "lead", 0.5, 7)
    assert entry.evals == 12 * 64  # the HEADs' evaluations, as the cycle read them
    assert [e.kind for e in entry.events] == ["term"]


def test_history_bucket_operations_are_few(tmp_path: Path) -> None:
    """The cost table's numbers: an hour at the defaults (30 s entries, 5 min segments) of a
    leader with a 5 s cycle is one list and 15 puts: 10 of 11 entries each, 5.5 min apart,
    and 5 more in the term's first minutes (early)."""
    store, clock = CountingStore(LocalStore(tmp_path)), Clock()
    h = RunHistory(store, clock=clock)
    for g in range(720):
        cycle(h, clock, owners={0: "a"}, gens={0: g}, alive={"a"}, dt=5.0)
    assert store.counts()["ops"] == {"A": 1 + 15, "B": 0, "free": 0}
    assert len(read_history(store.inner).entries) == 120  # the last 10 still pending


def test_a_new_term_is_in_the_bucket_within_its_first_cycles(tmp_path: Path) -> None:
    """A one-minute run has a history while it runs (issue 17): the first entry is written
    at once, then segments as old as the history before them, entries every quarter of the
    term's age; later the steady cadence (here 30 s entries, 5 min segments) takes over."""
    store, clock = LocalStore(tmp_path), Clock()
    h = RunHistory(store, clock=clock, wall=lambda: 1.7e9 + clock.t)  # the defaults
    cycle(h, clock, owners={0: "a"}, gens={0: 0}, alive={"a"}, dt=5.0)
    assert [e.seq for e in read_history(store).entries] == [0]
    for g in range(1, 12):  # the rest of the first minute, a cycle every 5 s
        cycle(h, clock, owners={0: "a"}, gens={0: g}, alive={"a"}, dt=5.0)
    first_minute = read_history(store).entries
    assert len(first_minute) >= 6 and first_minute[-1].islands[0][1] >= 5
    # A new term (a failover) starts early again, continuing the series.
    later = RunHistory(store, clock=clock, wall=lambda: 1.7e9 + clock.t)
    cycle(later, clock, term=2, owners={0: "a"}, gens={0: 12}, alive={"a"}, dt=5.0)
    entries = read_history(store).entries
    assert entries[-1].term == 2 and entries[-1].seq > first_minute[-1].seq


# -- the protocol record ------------------------------------------------------------------

def test_protocol_is_fixed_by_the_first_worker(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    assert check_protocol(store, version="0.1.0") == PROTOCOL_VERSION
    assert check_protocol(store, version="0.2.0") == PROTOCOL_VERSION  # same protocol: joins


def test_another_protocol_is_refused_with_one_clear_message(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    write_record(store, PROTOCOL_KEY, ProtocolRecord(protocol=PROTOCOL_VERSION + 1,
                                                     version="9.0.0"), if_generation=0)
    with pytest.raises(ProtocolMismatch) as err:
        check_protocol(store, version="0.1.0")
    text = str(err.value)
    assert f"protocol {PROTOCOL_VERSION + 1}" in text and "islandsync 9.0.0" in text
    assert f"speaks protocol {PROTOCOL_VERSION}" in text and "refusing to join" in text


def test_a_worker_of_another_protocol_refuses_to_join(tmp_path: Path) -> None:
    """Through the one door every worker comes in by (islandsync.run, the CLI's worker):
    refused before any heartbeat, claim or checkpoint."""
    from islandsync.api import make_worker
    from islandsync.bucket.run import init_run
    from islandsync.cli import main
    from islandsync.testing.cluster import cluster_spec

    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec())
    write_record(store, PROTOCOL_KEY, ProtocolRecord(protocol=PROTOCOL_VERSION + 1,
                                                     version="9.0.0"), if_generation=0)
    before = sorted(i.key for i in store.list(""))
    with pytest.raises(ProtocolMismatch, match="refusing to join"):
        make_worker(str(tmp_path / "run"), progress=False)
    assert main(["worker", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 2
    assert sorted(i.key for i in store.list("")) == before  # nothing written


def test_a_joining_worker_fixes_the_protocol_of_an_older_run(tmp_path: Path) -> None:
    from islandsync.api import make_worker
    from islandsync.bucket.records import read_record
    from islandsync.bucket.run import init_run
    from islandsync.testing.cluster import cluster_spec

    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec())  # a run made before protocol.json existed
    make_worker(str(tmp_path / "run"), progress=False)
    record, _ = read_record(store, PROTOCOL_KEY, ProtocolRecord)
    assert record.protocol == PROTOCOL_VERSION and record.version


def test_a_garbage_protocol_record_is_replaced_and_an_unreadable_protocol_refused(
        tmp_path: Path) -> None:
    """Garbage that names no protocol would keep every new worker out for good (the record is
    create-only): it is replaced by CAS on its version. One that names a protocol number we
    cannot otherwise read is another protocol's: refused (our own number mangled is garbage)."""
    from islandsync.bucket.records import read_record

    ours_mangled = json.dumps({"protocol": PROTOCOL_VERSION, "version": 5}).encode()
    past_any_count = json.dumps({"protocol": 2**64}).encode()
    for garbage in (b'{"protocol": "1"}', b"[" * 300, b"\xff garbage", ours_mangled,
                    past_any_count):
        store = LocalStore(tmp_path / str(len(garbage)))
        store.put(PROTOCOL_KEY, garbage, if_generation=0)
        assert check_protocol(store, version="0.1.0") == PROTOCOL_VERSION
        assert read_record(store, PROTOCOL_KEY, ProtocolRecord)[0].protocol == PROTOCOL_VERSION
    store = LocalStore(tmp_path / "newer")
    store.put(PROTOCOL_KEY, b'{"protocol": 7, "rules": 1, "version": ["x"]}', if_generation=0)
    with pytest.raises(ProtocolMismatch, match="names protocol 7"):
        check_protocol(store)
    assert store.get(PROTOCOL_KEY).data.startswith(b'{"protocol": 7')  # left alone


def test_coordinate_on_a_run_of_another_protocol_writes_nothing(tmp_path: Path,
                                                                capsys) -> None:
    """`islandsync coordinate` on a protocol-2 run used to lead, assign and sweep it."""
    from islandsync.bucket.run import init_run
    from islandsync.cli import main
    from islandsync.testing.cluster import cluster_spec

    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec())
    write_record(store, PROTOCOL_KEY, ProtocolRecord(protocol=PROTOCOL_VERSION + 1,
                                                     version="9.0.0"), if_generation=0)
    before = {i.key: i.generation for i in store.list("")}
    assert main(["coordinate", str(tmp_path / "run"), "--duration", "2s", "--interval", "0.2s",
                 "--lease", "1s", "--metrics-port", "-1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to join" in err[0], err
    assert {i.key: i.generation for i in store.list("")} == before  # nothing written


def test_a_worker_that_leads_keeps_the_history_too(tmp_path: Path) -> None:
    """A run of notebooks alone (no `islandsync coordinate`) is seen whole: the leader
    candidate a worker stands as writes the run's history."""
    from islandsync.api import make_worker
    from islandsync.testing.cluster import cluster_spec

    url = str(tmp_path / "run")
    worker = make_worker(url, spec=cluster_spec(islands=2), worker_id="w-lead", duration=6.0,
                         progress=False, lease_s=2.0)
    worker.run()
    entries = read_history(LocalStore(url)).entries
    assert entries and entries[0].term >= 1


# -- bounded by bytes (issue 18, N2) --------------------------------------------------------

def _sizes(store) -> list[int]:
    return [i.size for i in store.list(HISTORY_PREFIX)]


def test_compaction_of_many_islands_writes_only_what_the_reader_reads(tmp_path: Path) -> None:
    """64 islands: 120 entries a compacted segment used to be 535 KB, over the read cap, and
    then the originals were deleted: 3 of 91 entries were left readable."""
    store, clock = LocalStore(tmp_path), Clock()
    h = history(store, clock, per_segment=120, max_segments=4, compact_group=4)
    owners = {i: f"worker-{i % 8}-on-a-long-host-name" for i in range(64)}
    for g in range(400):
        cycle(h, clock, owners=owners, gens=dict.fromkeys(owners, g), alive=set(owners.values()))
    h.close()
    got = read_history(store)
    assert got.skipped == [] and max(_sizes(store)) <= MAX_SEGMENT_BYTES
    assert len(segments(store)) <= 4 + 1 and got.entries[0].seq == 0
    assert got.entries[-1].seq == 399 and len(got.entries[-1].islands) == 64


def test_a_week_of_history_of_512_islands_reads_back(tmp_path: Path) -> None:
    """A week with a fake clock (an entry an hour, flushed when 0.8 of a segment's bytes
    wait, a failover to a new leader every day) of 512 islands on 64 workers (an entry is
    ~36 KB), compacted down to 8 segments. "All of it", after thinning: every segment
    readable and within the cap; the first entry and the last; every term change; every
    entry of a segment not compacted yet; each compacted segment as many entries as fit its
    bytes (4 or more), each with its 512 islands; no gap between entries over a day."""
    store, clock = LocalStore(tmp_path), Clock()
    owners = {i: f"kaggle-host-{i % 64:02d}-1234-abcd" for i in range(512)}
    beats = {w: beat(w, [i for i, o in owners.items() if o == w]) for w in set(owners.values())}
    for day in range(7):
        h = history(store, clock, every_s=3600.0, flush_s=6 * 3600.0, per_segment=120,
                    max_segments=8, compact_group=4)
        heads = {i: head(i, o, day, 1.0 / (1 + day)) for i, o in owners.items()}
        for _ in range(24):
            clock.t += 3600.0
            h.record_cycle(term=day + 1, leader="lead", heartbeats=beats, alive=set(beats),
                           heads=heads)
        h.close()  # the leader steps down: what it sampled is flushed
    got = read_history(store)
    assert got.skipped == [] and max(_sizes(store)) <= MAX_SEGMENT_BYTES
    assert len(segments(store)) <= 8
    seqs = [e.seq for e in got.entries]
    assert seqs[0] == 0 and seqs[-1] == 7 * 24 - 1 and seqs == sorted(set(seqs))
    for span in segments(store):
        seg = read_history_segment(store, history_key(*span))[0]
        if seg.level == 0:
            assert [e.seq for e in seg.entries] == list(range(seg.first, seg.last + 1))
        assert len(seg.entries) >= 4 and all(len(e.islands) == 512 for e in seg.entries)
    terms = [ev.term for e in got.entries for ev in e.events if ev.kind == "term"]
    assert terms == list(range(1, 8))
    times = [e.t for e in got.entries]
    assert max(b - a for a, b in zip(times, times[1:])) <= 86400


def test_two_leaders_overlapping_segments_hide_nothing(tmp_path: Path) -> None:
    """A deposed leader's last flush (term 1, entries 5..9) lands beside the new leader's
    first one (term 2, entries 5..7): the covered one used to be skipped by every reader,
    then never compacted. Both are read, and a compaction merges both."""
    store, clock = LocalStore(tmp_path), Clock()
    old = history(store, clock)
    for g in range(5):
        cycle(old, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    new = history(store, clock)
    for g in range(5, 8):
        cycle(new, clock, term=2, owners={0: "a"}, gens={0: g}, alive={"a"})
    new.close()  # resumed at 5: writes 5..7
    for g in range(5, 10):  # the old leader, not yet aware it was deposed, goes on at 5
        cycle(old, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    assert segments(store) == [(0, 4), (5, 7), (5, 9)]
    got = read_history(store)
    assert [(e.seq, e.term) for e in got.entries if e.seq >= 5] == [
        (5, 1), (5, 2), (6, 1), (6, 2), (7, 1), (7, 2), (8, 1), (9, 1)]
    squeezed = history(store, clock, max_segments=2, compact_group=2, per_segment=100)
    squeezed._compact()
    assert segments(store) == [(0, 9)]
    assert [(e.seq, e.term) for e in read_history(store).entries] == [
        (e.seq, e.term) for e in got.entries]


def test_nothing_is_deleted_before_the_compacted_segment_reads_back(tmp_path: Path) -> None:
    """The merged segment is replaced by garbage right after its write: the originals stay,
    and the reader falls back to them."""
    from islandsync.testing.faulty import Byzantine, FaultyStore

    inner, clock = LocalStore(tmp_path), Clock()
    store = FaultyStore(inner, rules=[Byzantine(keys=history_key(0, 9), calls=(1,),
                                                kinds=("truncated",))])
    h = history(store, clock, max_segments=2, compact_group=2)
    for g in range(15):
        cycle(h, clock, owners={0: "a"}, gens={0: g}, alive={"a"})
    h.flush()
    assert store.counts() == {"byzantine.truncated": 1}  # the merged segment was written
    assert (0, 4) in segments(inner) and (5, 9) in segments(inner)
    assert [e.seq for e in read_history(inner).entries] == list(range(15))


def test_compaction_waits_when_most_segments_sit_inside_a_few(tmp_path: Path) -> None:
    """Past max_segments with fewer outermost segments than a compaction group (the rest
    inside them), compaction used to fail every flush with min() of nothing (60-minute
    soak); it now leaves them, and history goes on being written."""
    store = LocalStore(tmp_path)
    write_record(store, history_key(0, 1000), HistorySegment(first=0, last=1000),
                 if_generation=0)
    for i in range(6):
        write_record(store, history_key(i, i), HistorySegment(first=i, last=i),
                     if_generation=0)
    h = RunHistory(store, max_segments=2, compact_group=2)
    h._compact()  # one outer segment (0-1000) and six inside it: nothing to merge
    keys = {i.key for i in store.list(HISTORY_PREFIX)}
    assert history_key(0, 1000) in keys and len(keys) == 7
