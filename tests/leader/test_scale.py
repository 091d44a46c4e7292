"""The leader at scale: its lease kept through slow cycles, HEADs read only when they move,
the run's totals and stop decision published by the leader."""

from __future__ import annotations

import threading
from pathlib import Path

from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.heads import HeadWatch
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import checkpoint_key, head_key, heartbeat_key
from islandsync.bucket.records import Head, read_assignment, read_finished, read_lease, write_head
from islandsync.bucket.run import init_run
from islandsync.errors import StoreError
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.store.base import Blob
from islandsync.store.counting import CountingStore
from islandsync.testing.cluster import cluster_spec
from islandsync.testing.processes import wait_for


class Reads(LocalStore):
    """Counts gets per key; ``fail`` names keys whose gets raise StoreError."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: dict[str, int] = {}
        self.fail: set[str] = set()
        self._lock = threading.Lock()

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        with self._lock:
            self.gets[key] = self.gets.get(key, 0) + 1
        if key in self.fail:
            raise StoreError(f"{key}: unavailable")
        return super().get(key, start=start, end=end)

    def head_reads(self) -> int:
        return sum(n for k, n in self.gets.items() if k.endswith("/HEAD.json")
                   and k.startswith("islands/"))


def _head(store: LocalStore, island: int, generation: int, gen: int = 0) -> int:
    import numpy as np

    rng = np.random.default_rng(island * 1000 + generation)
    genomes = rng.uniform(-5, 5, (16, 10)).astype(np.float32)
    snap = IslandSnapshot(island, generation, generation * 16, 0, {
        "genomes": genomes, "scores": rng.random(16).astype(np.float32) + 1,
        "ids": genome_ids_numpy(genomes), "origin": np.full(16, island, np.int64)})
    key = checkpoint_key(island, generation, "w")
    store.put(key, encode_island(snap, elite=16, meta={"owner": "w"}))
    return write_head(store, Head(island=island, checkpoint=key, generation=generation,
                                  evals=generation * 16, best=1.5, owner="w"),
                      if_generation=gen)


def test_only_heads_that_moved_are_read(tmp_path: Path) -> None:
    store = Reads(tmp_path / "run")
    gens = {i: _head(store, i, 1) for i in range(20)}
    watch = HeadWatch(store, 20)
    view = watch.look()
    assert len(view.heads) == 20 and store.head_reads() == 20 and view.fresh == set(range(20))
    assert watch.look().read == 0 and store.head_reads() == 20  # nothing moved: no reads
    gens[3] = _head(store, 3, 2, gens[3])
    gens[7] = _head(store, 7, 2, gens[7])
    view = watch.look()
    assert view.read == 2 and store.head_reads() == 22
    assert view.heads[3].generation == 2 and view.heads[7].generation == 2
    assert sorted(g for g, _ in view.checkpoints[3]) == [1, 2]
    # Bucket trouble on one HEAD: served as last read, not fresh, read again next look.
    gens[5] = _head(store, 5, 2, gens[5])
    store.fail.add(head_key(5))
    view = watch.look()
    assert view.failed == 1 and view.heads[5].generation == 1 and 5 not in view.fresh
    store.fail.clear()
    view = watch.look()
    assert view.heads[5].generation == 2 and 5 in view.fresh
    # A bad HEAD is skipped, and read once per version, not at every look.
    store.put(head_key(9), b"not json")
    before = store.head_reads()
    assert 9 not in watch.look().heads and 9 not in watch.look().heads
    assert store.head_reads() == before + 1
    # Keys that only look like a HEAD, or islands past the run, are never read.
    store.put("islands/007/HEAD.json", b"{}")
    store.put(head_key(99), b"{}")
    watch.look()
    assert "islands/007/HEAD.json" not in store.gets and head_key(99) not in store.gets


def test_a_leader_whose_cycle_outlasts_its_lease_keeps_it(tmp_path: Path) -> None:
    """Every cycle of A spends ~2 s in bucket calls at 50 ms each (longer than its 1.5 s
    lease); B competes for the lease the whole time. The lease is renewed on its own thread,
    so A stays leader of term 1 and B never takes over. (Before, A renewed only at the top
    of each cycle: its lease lapsed in every cycle and B took over.)"""
    root = tmp_path / "run"
    init_run(LocalStore(root), cluster_spec(islands=4))
    a_store = CountingStore(LocalStore(root), latency_s=0.05)
    a = Coordinator(a_store, candidate="A", settings=LeaderSettings(lease_s=1.5, cycle_s=0.2))
    b = Coordinator(CountingStore(LocalStore(root), latency_s=0.05), candidate="B",
                    settings=LeaderSettings(lease_s=1.5, cycle_s=0.2))
    cycles: list[float] = []

    def slow(cycle: object) -> None:  # a phase made slow by latency: 40 calls in a row
        import time

        t0 = time.monotonic()
        for _ in range(40):
            a_store.stat("run.json")
        cycles.append(time.monotonic() - t0)

    a.after_merge.append(("slow", slow))
    LocalStore(root).put(heartbeat_key("w"), b'{"state": "running", "rate": 5}')
    stop = threading.Event()
    ta = threading.Thread(target=a.run, args=(stop,), daemon=True)
    ta.start()
    wait_for(lambda: a.lease.is_leader, 10, "A leading")
    tb = threading.Thread(target=b.run, args=(stop,), daemon=True)
    tb.start()
    terms = set()
    try:
        def slow_cycles() -> bool:
            found = read_lease(LocalStore(root))
            terms.add((found[0].holder, found[0].term) if found else None)
            return sum(c > 1.5 for c in cycles) >= 3 or len(terms) > 1

        wait_for(slow_cycles, 30, "three cycles longer than the lease (or a takeover)")
    finally:
        stop.set()
        ta.join(timeout=10)
        tb.join(timeout=10)
    assert terms == {("A", 1)}, terms
    assert sum(c > 1.5 for c in cycles) >= 3
    assert a.lease.renewal_failures == 0
    assert read_assignment(LocalStore(root))[0].term == 1


def test_the_leader_publishes_totals_and_decides_the_stop(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    spec = cluster_spec(islands=3)
    spec = spec.model_copy(update={"stop": spec.stop.model_copy(update={"max_evals": 100})})
    init_run(store, spec)
    for i in range(3):
        _head(store, i, 1)  # 16 evaluations each
    store.put(heartbeat_key("w"), b'{"state": "running", "rate": 5}')
    c = Coordinator(store, candidate="c", settings=LeaderSettings(lease_s=3.0, cycle_s=0.1))
    c.step()
    c.step()  # the second assignment carries the totals of the first cycle's HEADs
    assignment = read_assignment(store)[0]
    assert assignment.evaluations == 48 and assignment.best is not None \
        and assignment.best <= 1.5  # the islands' best, or the merged elite's when better
    assert read_finished(store) is None
    gen = write_head(store, Head(island=0, generation=9, evals=90, owner="w"),
                     if_generation=read_head_gen(store, 0))
    assert gen
    c.step()
    finished = read_finished(store)[0]
    assert finished.reason == "max_evals" and finished.evals == 122 and finished.by == "c"


def read_head_gen(store: LocalStore, island: int) -> int:
    from islandsync.bucket.records import read_head

    return read_head(store, island)[1]


def test_a_silent_worker_is_found_dead_however_long_the_cycles(tmp_path: Path) -> None:
    """Cycles longer than twice the interval (slow bucket calls, or the once-a-second pace
    of elite HEAD writes at a short interval) are no outage of the leader's: a worker that
    stops beating is still judged dead after its timeout. (Before, each such cycle restarted
    every worker's clock, and dead workers kept their islands: recovery took 40 s, not 3.)"""
    store = LocalStore(tmp_path / "run")
    spec = cluster_spec(islands=2)  # worker timeout 2 s
    init_run(store, spec)
    now = [0.0]
    c = Coordinator(store, candidate="c", settings=LeaderSettings(lease_s=30.0, cycle_s=0.5),
                    clock=lambda: now[0])
    c.after_merge.append(("slow", lambda cycle: now.__setitem__(0, now[0] + 1.5)))
    for beat in range(3):
        for w in ("a", "b"):
            store.put(heartbeat_key(w), b'{"state": "running", "rate": 5, "generations": %d}'
                      % beat)
        c.step()
    assert read_assignment(store)[0].workers == ["a", "b"]
    for beat in range(3, 7):  # b is gone: only a beats
        store.put(heartbeat_key("a"), b'{"state": "running", "rate": 5, "generations": %d}'
                  % beat)
        c.step()
    assert read_assignment(store)[0].workers == ["a"]


def _stop_spec(islands: int):
    spec = cluster_spec(islands=islands)
    return spec.model_copy(update={"stop": spec.stop.model_copy(update={"max_evals": 10**9})})


def test_a_follower_with_a_stop_criterion_reads_no_island_heads(tmp_path: Path) -> None:
    """W followers used to read every island's HEAD at every poll when the run had max_evals
    or target (W x K reads every 2 s). Now a follower reads only the HEADs of islands it
    claims, and takes the run's totals from the assignment the leader writes."""
    from islandsync.bucket.layout import LEASE_KEY
    from islandsync.bucket.records import Assignment, LeaseRecord, write_assignment, write_record
    from islandsync.worker.bucket_thread import BucketLink

    store = Reads(tmp_path / "run")
    spec = _stop_spec(12)
    init_run(store, spec)
    write_record(store, LEASE_KEY, LeaseRecord(holder="c", term=1, lease_s=3.0))
    for i in range(12):
        _head(store, i, 1)
    write_assignment(store, Assignment(term=1, epoch=1, leader="c",
                                       islands={i: ("w" if i == 0 else "other") for i in range(12)},
                                       workers=["w", "other"], evaluations=192, best=1.5),
                     if_generation=0)
    link = BucketLink(store, spec, worker_id="w", solo=False, max_islands=12,
                      stats=lambda: {}, hosted=lambda: set())
    store.gets.clear()
    for _ in range(3):
        link._poll()
    inbox = link.take()
    heads = {k for k in store.gets if k.startswith("islands/") and k.endswith("/HEAD.json")}
    assert heads <= {head_key(0)}, heads  # the island it was assigned, read to claim it
    assert inbox.totals == (192, 1.5) and inbox.remote == {}


def test_a_solo_worker_reads_only_the_heads_that_moved(tmp_path: Path) -> None:
    from islandsync.worker.bucket_thread import BucketLink

    store = Reads(tmp_path / "run")
    spec = _stop_spec(12)
    init_run(store, spec)
    gens = {i: _head(store, i, 1) for i in range(12)}
    link = BucketLink(store, spec, worker_id="w", solo=True, max_islands=0,
                      stats=lambda: {}, hosted=lambda: set())
    def poll() -> None:  # the solo part of a poll: one look serves claims and the stop check
        link._read_remote(set(), link._look_heads(set()))
    poll()
    assert store.head_reads() == 12 and len(link.take().remote) == 12
    poll()
    assert store.head_reads() == 12  # nothing moved: nothing read
    _head(store, 4, 2, gens[4])
    poll()
    assert store.head_reads() == 13 and link.take().remote[4].generation == 2
