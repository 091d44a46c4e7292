"""The leader against faults, in process and deterministic: Coordinator.step() on a LocalStore
(wrapped where a fault is needed) with garbage records, store errors at the worst moment, a
bug in one phase, and housekeeping among orphans of killed owners."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from islandsync.api import MetricsObserver
from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.elites import encode_elite, read_elite
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import (
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    checkpoint_key,
    elite_key,
    head_key,
    heartbeat_key,
)
from islandsync.bucket.records import (
    EliteHead,
    Head,
    read_assignment,
    read_elite_head,
    read_head,
    write_elite_head,
    write_head,
)
from islandsync.bucket.run import init_run
from islandsync.config import RunSpec
from islandsync.leader.coordinator import KEEP_FALLBACKS, Coordinator
from islandsync.leader.merge import IslandElites
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.store.base import Blob
from islandsync.testing.cluster import cluster_spec
from islandsync.testing.faulty import ErrorBefore, FaultyStore
from islandsync.views.metrics import CoordinatorMetrics

from ..bucket.conftest import assemble, island_frames, zeros_payload

SPEC = cluster_spec(islands=3)  # rastrigin, 10 genes, pop 16
POP, DIM = SPEC.algorithm.pop, SPEC.problem.genome.width
BRACKETS = b"[" * 200_000


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _snapshot(island: int, generation: int, *, low: float, seed: int = 0,
              spec: RunSpec = SPEC) -> IslandSnapshot:
    rng = np.random.default_rng(seed * 100 + island)
    genomes = rng.uniform(-5, 5, (POP, DIM)).astype(np.float32)
    scores = (low + rng.random(POP)).astype(np.float32)
    return IslandSnapshot(island, generation, generation * POP, 0, {
        "genomes": genomes, "scores": scores, "ids": genome_ids_numpy(genomes),
        "origin": np.full(POP, island, np.int64)})


def _checkpoint(store: LocalStore, island: int, generation: int, tag: str = "w", *,
                low: float = 2.0, data: bytes | None = None) -> str:
    key = checkpoint_key(island, generation, tag)
    snap = _snapshot(island, generation, low=low, seed=generation)
    store.put(key, data if data is not None else
              encode_island(snap, elite=POP, meta={"owner": tag}))
    return key


def _run(tmp_path: Path, *, islands: tuple[int, ...] = (0, 1, 2), low: float = 2.0
         ) -> LocalStore:
    """A run whose islands each have one checkpoint named by HEAD, scores in [low, low+1)."""
    store = LocalStore(tmp_path / "run")
    init_run(store, SPEC)
    for i in islands:
        key = _checkpoint(store, i, 5, low=low)
        write_head(store, Head(island=i, checkpoint=key, generation=5, owner="w"),
                   if_generation=0)
    return store


def _best_elite(store: LocalStore, best: float) -> np.ndarray:
    """Epoch 1 of the global elite: one genome scoring ``best``, far better than any island."""
    genome = np.full((1, DIM), 0.01, np.float32)
    ids = genome_ids_numpy(genome)
    store.put(elite_key(1), encode_elite((genome, np.array([best], np.float32), ids,
                                          np.zeros(1, np.int64)), epoch=1, term=1))
    write_elite_head(store, EliteHead(epoch=1, key=elite_key(1), term=1, size=1, best=best),
                     if_generation=0)
    return ids


def _coordinator(store, clock: Clock | None = None, **kw) -> Coordinator:
    return Coordinator(store, candidate="c", spec=SPEC,
                       settings=LeaderSettings(lease_s=3.0, cycle_s=0.1),
                       clock=clock or Clock(), **kw)


# -- 4. the global elite never regresses --------------------------------------------------------

FIRST_ELITE_FAILURE = {
    "list elite/": ErrorBefore(ops=("list",), keys="elite/", calls=(1,)),
    "get elite epoch": ErrorBefore(ops=("get",), keys="elite/0*.isz", calls=(1,)),
    "get elite HEAD": ErrorBefore(ops=("get",), keys=ELITE_HEAD_KEY, calls=(1,)),
}


@pytest.mark.parametrize("case", FIRST_ELITE_FAILURE)
def test_a_store_error_loading_the_elite_never_loses_the_best(tmp_path: Path, case: str) -> None:
    """A new term's first read of the global elite fails once. The old coordinator marked
    the elite loaded first, then merged the islands alone: best 0.001 -> 2.x. Now the merge
    waits for the elite, and the best genome stays at the top of every epoch."""
    store = _run(tmp_path)
    best_ids = _best_elite(store, 0.001)
    faulty = FaultyStore(store, rules=[FIRST_ELITE_FAILURE[case]])
    c = _coordinator(faulty)
    for _ in range(3):
        c.step()
        head = read_elite_head(store)[0]
        assert head.best == pytest.approx(0.001), head
    assert faulty.counts().get("error_before") == 1
    assert head.epoch == 2  # the merge did happen once the elite was loaded
    _, scores, ids, _ = read_elite(store, head.key)
    assert ids[0] == best_ids[0] and len(ids) > 1


# -- 5. bad inputs never stop the leader ---------------------------------------------------------


def test_garbage_records_never_stop_the_leader(tmp_path: Path) -> None:
    """Heartbeats with rate 2**64 and 1e300 (past the Heartbeat model's bound: skipped), 200 KB
    of brackets in a heartbeat, lease.json and finished.json, an island HEAD and the elite
    HEAD naming ../x: the leader takes the run over, places every island on the one worker
    that beats validly, and merges the good island."""
    store = _run(tmp_path, islands=(0,))
    store.put(heartbeat_key("huge"), b'{"state": "running", "rate": 18446744073709551616}')
    store.put(heartbeat_key("vast"), b'{"state": "running", "rate": 1e300, "max_islands": 1}')
    store.put(heartbeat_key("fine"), b'{"state": "running", "rate": 10}')
    store.put(heartbeat_key("brackets"), BRACKETS)
    store.put(LEASE_KEY, BRACKETS)
    store.put(FINISHED_KEY, BRACKETS)
    store.put(head_key(1), b'{"island": 1, "checkpoint": "../x", "generation": 3}')
    store.put(head_key(2), BRACKETS)
    store.put(ELITE_HEAD_KEY, b'{"epoch": 1, "key": "../x", "term": 1, "size": 1}')
    registry = CollectorRegistry()
    clock = Clock()
    c = _coordinator(store, clock,
                     observer=MetricsObserver(CoordinatorMetrics(registry=registry)))
    for beat in range(12):  # a garbage lease is taken over once it stood still a lease duration
        store.put(heartbeat_key("fine"), b'{"state": "running", "rate": 1%d}' % beat)
        c.step()
        clock.now += 0.5
    assert c.lease.is_leader
    assignment = read_assignment(store)[0]
    assert assignment.workers == ["fine"]
    assert assignment.islands == {0: "fine", 1: "fine", 2: "fine"}
    elite = read_elite_head(store)[0]
    assert elite.best is not None and 2.0 <= elite.best < 3.0
    assert store.get(head_key(1)).data.startswith(b'{"island": 1, "checkpoint": "../x"')
    generate_latest(registry)
    # the leader told its observer (the metrics), garbage and all
    assert registry.get_sample_value("islandsync_is_leader") == 1
    assert registry.get_sample_value("islandsync_worker_up",
                                     {"worker": "fine", "platform": "unknown"}) == 1


class _Raising(LocalStore):
    """A store on which reading one key raises something no one expected."""

    def __init__(self, root: Path, bad: str) -> None:
        super().__init__(root)
        self.bad = bad

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        if key == self.bad:
            raise RuntimeError("something no one expected")
        return super().get(key, start=start, end=end)


def test_an_exception_from_one_islands_record_skips_that_island_only(tmp_path: Path) -> None:
    _run(tmp_path)
    store = _Raising(tmp_path / "run", head_key(1))
    c = _coordinator(store)
    c.step()
    _, _, _, origin = read_elite(store, read_elite_head(store)[0].key)
    assert set(origin.tolist()) == {0, 2}


def test_an_exception_from_one_islands_checkpoint_skips_that_island_only(
        tmp_path: Path) -> None:
    _run(tmp_path)
    store = _Raising(tmp_path / "run", checkpoint_key(1, 5, "w"))
    c = _coordinator(store)
    c.step()
    _, _, _, origin = read_elite(store, read_elite_head(store)[0].key)
    assert set(origin.tolist()) == {0, 2}


def test_an_unexpected_error_in_one_phase_skips_that_phase_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A bug in the assignment phase: the merge still runs, the leader loop lives on, and the
    traceback is logged once, not every cycle."""
    store = _run(tmp_path)
    store.put(heartbeat_key("w"), b'{"state": "running", "rate": 10}')
    c = _coordinator(store)

    def broken(*args: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(c, "_assign", broken)
    with caplog.at_level(logging.WARNING, logger="islandsync.leader.coordinator"):
        for _ in range(3):
            c.step()
    assert read_elite_head(store) is not None  # the merge ran
    assert read_assignment(store) is None
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "assignment" in tracebacks[0].getMessage()
    monkeypatch.undo()
    store.put(heartbeat_key("w"), b'{"state": "running", "rate": 11}')  # seen beating
    c.step()
    assert read_assignment(store)[0].islands == {0: "w", 1: "w", 2: "w"}


# -- 1. the merge reads only elite frames that fit the run ---------------------------------------


def test_the_merge_refuses_elite_frames_that_do_not_fit(tmp_path: Path) -> None:
    store = _run(tmp_path, islands=())
    snap = _snapshot(0, 5, low=2.0)
    frames = island_frames(snap, POP)
    big = IslandSnapshot(0, 5, 80, 0, {k: np.concatenate([v, v[:1]])
                                       for k, v in snap.arrays.items()})
    rows = [f for f in island_frames(big, POP + 1) if f[0].startswith("elite.")] \
        + [f for f in frames if not f[0].startswith("elite.")]
    header = {"island": 0, "generation": 5, "evals": 80, "nan_count": 0}
    as_ints = [(n, "<i4" if n == "elite.genomes" else dt, sh, p) for n, dt, sh, p in frames]
    bomb = [(n, dt, [POP, (64 << 20) // 4 // POP] if n == "elite.genomes" else sh,
             zeros_payload(64 << 20) if n == "elite.genomes" else p) for n, dt, sh, p in frames]
    bad = {
        0: assemble(header, as_ints),  # elite genomes of ints in a real run (crc-valid)
        1: assemble(header, rows),  # more elite rows than the population has
        2: assemble(header, bomb),  # 64 MiB of elite genomes in a few KiB
    }
    heads = {}
    for island, data in bad.items():
        key = _checkpoint(store, island, 5, data=data)
        heads[island] = Head(island=island, checkpoint=key, generation=5)
    elites = IslandElites(store, SPEC)
    assert elites.refresh(heads) == 0 and elites.parts() == []
    good = _checkpoint(store, 0, 6)
    assert elites.refresh({0: Head(island=0, checkpoint=good, generation=6)}) == 1


def test_the_global_elite_is_read_with_the_runs_bounds(tmp_path: Path) -> None:
    """Elite epochs of int genomes or wider than the run are skipped for an older one."""
    store = _run(tmp_path)
    _best_elite(store, 0.5)
    ints = np.zeros((1, DIM), np.int32)
    store.put(elite_key(2), encode_elite((ints, np.zeros(1, np.float32), genome_ids_numpy(ints),
                                          np.zeros(1, np.int64)), epoch=2, term=1))
    gen = read_elite_head(store)[1]
    write_elite_head(store, EliteHead(epoch=2, key=elite_key(2), term=1, size=1, best=0.0),
                     if_generation=gen)
    c = _coordinator(store)
    c.step()
    head = read_elite_head(store)[0]
    assert head.epoch == 3 and head.best == pytest.approx(0.5)


# -- 3. housekeeping follows HEAD's lineage -------------------------------------------------------


def test_housekeeping_keeps_heads_lineage_among_orphans_of_killed_owners(tmp_path: Path) -> None:
    """HEAD at 20 with lineage 14, 12, 10; owners killed before their HEAD CAS left blobs at
    16 to 19 (below HEAD) and at 25 (above). The lineage stays whatever the orphans; of the
    others below HEAD the newest KEEP_FALLBACKS stay; the one above goes when seen twice,
    unless HEAD has come to name it by then."""
    store = _run(tmp_path, islands=())
    lineage = [_checkpoint(store, 0, g, "a") for g in (20, 14, 12, 10)]
    below = [_checkpoint(store, 0, g, "o") for g in (19, 18, 17, 16)]
    old = _checkpoint(store, 0, 2, "p")  # a former owner's, off the lineage
    # HEAD's owner's own, off the lineage: maybe an upload whose HEAD CAS is in flight (a
    # claimer that resumed an older checkpoint): never swept (issue 18, N1)
    owners = _checkpoint(store, 0, 3, "a")
    above = _checkpoint(store, 0, 25, "o")
    gen = write_head(store, Head(island=0, checkpoint=lineage[0], generation=20, owner="a",
                                 previous=lineage[1:]), if_generation=0)
    c = _coordinator(store)
    c.step()

    def keys() -> set[str]:
        return {i.key for i in store.list("islands/0/") if i.key.endswith(".isz")}

    c._housekeeping(c._read_heads(), set())
    assert set(lineage) <= keys()
    assert keys() == set(lineage) | set(below[:KEEP_FALLBACKS]) | {above, owners}
    assert old not in keys()
    # the upload at 25 was a CAS in flight: HEAD names it now, so it stays
    write_head(store, Head(island=0, checkpoint=above, generation=25, owner="o",
                           previous=lineage[:3]), if_generation=gen)
    c._housekeeping(c._read_heads(), set())
    assert above in keys() and set(lineage[:3]) <= keys()
    # an orphan above HEAD that no HEAD comes to name goes at the second sweep
    stray = _checkpoint(store, 0, 30, "z")
    c._housekeeping(c._read_heads(), set())
    assert stray in keys()
    c._housekeeping(c._read_heads(), set())
    assert stray not in keys()
    assert read_head(store, 0)[0].checkpoint in keys()


# -- a retried write whose first attempt landed (GCS's client retries conditional writes) --------


class RetriedAfterLostReply(LocalStore):
    """The first conditional write of ``key`` lands, its reply is lost, and the client retries
    it with the same precondition: the retry fails against our own landed write."""

    def __init__(self, root: Path, key: str) -> None:
        super().__init__(root)
        self.key, self.armed = key, True

    def put(self, key, data, *, if_generation=None):  # type: ignore[override]
        gen = super().put(key, data, if_generation=if_generation)
        if key == self.key and if_generation is not None and self.armed:
            self.armed = False
            return super().put(key, data, if_generation=if_generation)  # 412 on our own write
        return gen


def test_the_leader_keeps_its_elite_epoch_when_its_head_write_landed(tmp_path: Path) -> None:
    _run(tmp_path)
    store = RetriedAfterLostReply(tmp_path / "run", ELITE_HEAD_KEY)
    c = _coordinator(store)
    c.step()
    head, _ = read_elite_head(store)
    assert not store.armed  # the fault fired
    assert read_elite(store, head.key)[1].size  # the epoch HEAD names was not deleted
    assert c._elite_head is not None and c._elite_head[0].epoch == head.epoch


def test_the_leader_keeps_its_assignment_when_its_write_landed(tmp_path: Path, caplog) -> None:
    _run(tmp_path)
    store = RetriedAfterLostReply(tmp_path / "run", "assignment.json")
    c = _coordinator(store)
    with caplog.at_level(logging.INFO, logger="islandsync.leader.coordinator"):
        c.step()
    assert not store.armed
    assert read_assignment(store)[0].leader == "c"
    assert "changed under us" not in caplog.text


# -- the term never goes backwards -----------------------------------------------------------


def test_a_new_leader_after_a_clean_release_takes_a_higher_term(tmp_path: Path) -> None:
    store = _run(tmp_path)
    clock = Clock()
    first = _coordinator(store, clock)
    for _ in range(3):  # a few terms: give up and reclaim
        first.step()
        first.lease.release()
        first.lease.term = 0  # a new process would not remember
        first = _coordinator(store, clock)
    first.step()
    term = read_assignment(store)[0].term
    assert term >= 2
    first.lease.release()  # a clean stop deletes lease.json
    second = _coordinator(store, clock)
    second.step()
    assert second.lease.term > term
    assert read_assignment(store)[0].term == second.lease.term


def test_a_takeover_over_a_garbage_lease_takes_a_higher_term(tmp_path: Path) -> None:
    store = _run(tmp_path)
    clock = Clock()
    first = _coordinator(store, clock)
    first.step()
    term = read_assignment(store)[0].term
    second = _coordinator(store, clock)
    second.step()  # a candidate watching the lease: it saw the term the chain reached
    store.put(LEASE_KEY, BRACKETS)
    second.step()  # sees the garbage's generation
    clock.now += 10.0  # longer than the lease, on the candidate's own clock
    second.step()
    assert second.lease.is_leader and second.lease.term > term
