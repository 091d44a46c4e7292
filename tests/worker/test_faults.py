"""The worker's faults (issue 10), each pinned by a test that failed before its fix: a lost
HEAD reply, retention off the lineage, restarts from the seed, threads that die, bad records
stopping a poll, double claims, worker ids and tags, the run duration and crafted HEADs."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from islandsync.bucket.layout import (
    FINISHED_KEY,
    LEASE_KEY,
    checkpoint_key,
    head_key,
    parse_checkpoint_key,
)
from islandsync.bucket.records import (
    MAX_PREVIOUS,
    Assignment,
    Head,
    Heartbeat,
    LeaseRecord,
    read_head,
    read_heartbeat,
    write_assignment,
    write_head,
    write_record,
)
from islandsync.bucket.run import init_run
from islandsync.errors import ConfigError
from islandsync.search.problems import make_problem
from islandsync.store import LocalStore
from islandsync.testing.faulty import ErrorBefore, FaultyStore, LostReply
from islandsync.testing.processes import wait_for
from islandsync.worker.engine import Engine
from islandsync.worker.bucket_thread import BucketLink
from islandsync.worker.worker import Worker
from islandsync.worker.uploader import Uploader

from .test_worker import fast_spec

# -- helpers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LostThen(LostReply):
    """A lost reply after which ``then`` runs (another worker acting meanwhile)."""

    then: Callable[[], None] = lambda: None

    def inject(self, store, call, seed):  # noqa: ANN001 - FaultyStore's hook
        self.then()
        super().inject(store, call, seed)


def _snapshots(spec, island: int = 0):
    """Snapshots of one island, a few generations apart each."""
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_fresh([island])
    while True:
        for _ in range(3):
            engine.step()
        yield engine.snapshot([island])[0]


def _uploader(store, owner: str = "w", lost: list | None = None, **kw) -> Uploader:
    from islandsync.worker.uploader import checkpoint_tag

    return Uploader(store, owner=owner, tag=checkpoint_tag(owner), elite=4, meta={},
                    to_user=float, on_lost=(lost if lost is not None else []).append, **kw)


def _claimed(store, island: int = 0, owner: str = "w") -> int:
    return write_head(store, Head(island=island, owner=owner), if_generation=0)


def checkpointed_island(tmp_path: Path, checkpoints: int = 3):
    """A run whose island 0 has ``checkpoints`` checkpoints by worker "w": (store, spec, its
    HEAD)."""
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    snaps = _snapshots(spec)
    up = _uploader(store)
    up.adopt(0, _claimed(store), [])
    for _ in range(checkpoints):
        up.submit(next(snaps))
        assert up.flush(10)
    up.close()
    return store, spec, read_head(store, 0)[0]


def _worker(store, **kw) -> Worker:
    kw.setdefault("worker_id", "w")
    return Worker(store, solo=True, progress=False, device="cpu", check_id=False, **kw)


def _run_in_thread(worker: Worker) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def go() -> None:
        try:
            out["summary"] = worker.run()
        except Exception as err:  # noqa: BLE001 - the test inspects it
            out["error"] = err

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t, out


# -- 1. a lost HEAD reply ------------------------------------------------------------------


def test_a_lost_head_reply_is_read_back_and_the_island_kept(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = _claimed(inner)
    store = FaultyStore(inner, rules=[LostReply(ops=("put",), keys="islands/0/HEAD.json",
                                                calls=(1,))])
    lost: list[int] = []
    up = _uploader(store, lost=lost)
    up.adopt(0, gen, [])
    snaps = _snapshots(fast_spec())
    try:
        first = next(snaps)
        up.submit(first)
        assert up.flush(30)
        head = read_head(inner, 0)[0]
        assert store.counts() == {"lost_reply": 1}
        assert lost == [], "the island was dropped after its own HEAD write landed"
        assert head.generation == first.generation and inner.stat(head.checkpoint) is not None
        second = next(snaps)
        up.submit(second)
        assert up.flush(30)
        head = read_head(inner, 0)[0]
        assert head.generation == second.generation and head.owner == "w"
        assert all(inner.stat(k) is not None for k in head.lineage())
    finally:
        up.close(5)


def test_a_lost_reply_then_a_takeover_keeps_the_blob_the_new_head_names(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = _claimed(inner)

    def b_claims() -> None:  # our write landed; B takes the island before our retry
        head, g = read_head(inner, 0)
        write_head(inner, head.model_copy(update={"owner": "b", "nonce": ""}), if_generation=g)

    store = FaultyStore(inner, rules=[LostThen(ops=("put",), keys="islands/0/HEAD.json",
                                               calls=(1,), then=b_claims)])
    lost: list[int] = []
    up = _uploader(store, lost=lost)
    up.adopt(0, gen, [])
    try:
        up.submit(next(_snapshots(fast_spec())))
        assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(inner, 0)[0]
    assert lost == [0] and head.owner == "b"
    assert inner.stat(head.checkpoint) is not None, "deleted the blob B's HEAD names"


def test_an_outage_of_head_writes_backs_off_and_leaves_one_blob_above_head(
        tmp_path: Path) -> None:
    """N8: while HEAD writes fail, submits must neither cut the backoff short nor each put a
    new full blob (22 blobs above HEAD after 7 s; a worker exiting then left them all)."""
    inner = LocalStore(tmp_path / "run")
    gen = _claimed(inner)
    store = FaultyStore(inner, rules=[ErrorBefore(ops=("put",), keys="islands/0/HEAD.json",
                                                  rate=1.0)])
    up = _uploader(store)
    up.adopt(0, gen, [])
    snaps = _snapshots(fast_spec())
    try:
        for _ in range(20):
            up.submit(next(snaps))
            time.sleep(0.02)
        blobs = [i.key for i in inner.list("islands/0/") if i.key.endswith(".isz")]
        head_writes = store.counts().get("error_before", 0)
    finally:
        up.close(0.1)
    assert len(blobs) == 1, f"{len(blobs)} blobs above HEAD during the outage"
    # Backoff from 0.5 s doubling: a handful of tries, not one per submit (a slow machine
    # only makes fewer).
    assert head_writes <= 5, f"{head_writes} HEAD writes for 20 submits"


def test_after_an_outage_of_head_writes_head_names_a_blob_that_exists(tmp_path: Path) -> None:
    inner = LocalStore(tmp_path / "run")
    gen = _claimed(inner)
    store = FaultyStore(inner, rules=[ErrorBefore(ops=("put",), keys="islands/0/HEAD.json",
                                                  calls=(1, 2))])
    up = _uploader(store, max_backoff=0.5)
    up.adopt(0, gen, [])
    snaps = _snapshots(fast_spec())
    try:
        up.submit(next(snaps))
        wait_for(lambda: store.counts().get("error_before", 0) >= 1, 10, "a failed HEAD write")
        last = next(snaps)
        up.submit(last)
        assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(inner, 0)[0]
    blobs = {i.key for i in inner.list("islands/0/") if i.key.endswith(".isz")}
    assert head.generation == last.generation and head.checkpoint in blobs
    assert blobs <= set(head.lineage())


def test_a_zombie_of_our_worker_id_never_overwrites_a_restarted_process_claim(
        tmp_path: Path) -> None:
    """Reasoning case of issue 18: a zombie process and the restarted process share a worker
    id. The restarted one claims the island (its HEAD names the zombie's blob, owner the same
    id); the zombie's next HEAD write is refused, and reading HEAD back must not take that
    claim for a write of its own (by owner and blob tag, or by a nonce the claim copied), or
    it writes on top of the claim and the lineage forks."""
    from islandsync.worker.claims import take_island

    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    init_run(store, spec)
    lost: list[int] = []
    zombie = _uploader(store, owner="w", lost=lost)
    zombie.adopt(0, _claimed(store), [])
    snaps = _snapshots(spec)
    try:
        zombie.submit(next(snaps))
        assert zombie.flush(30)
        claim = take_island(store, spec, "w", 0, read_head(store, 0))  # the restarted "w"
        assert claim is not None
        zombie.submit(next(snaps))
        assert zombie.flush(30)
    finally:
        zombie.close(5)
    head, version = read_head(store, 0)
    assert version == claim.head_generation, "the zombie wrote on top of the new claim"
    assert lost == [0] and head.owner == "w"
    assert store.stat(head.checkpoint) is not None


# -- 2. retention keeps the lineage; a restart from the seed is loud -------------------------


def test_retention_keeps_heads_whole_lineage_and_only_deletes_its_own(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    gen = _claimed(store)
    foreign = checkpoint_key(0, 1, "someone-else")
    store.put(foreign, b"not ours")  # a previous owner's blob: never ours to delete
    up = _uploader(store)
    up.adopt(0, gen, [foreign])
    snaps = _snapshots(fast_spec())
    try:
        for _ in range(MAX_PREVIOUS + 4):
            up.submit(next(snaps))
            assert up.flush(30)
    finally:
        up.close(5)
    head = read_head(store, 0)[0]
    assert len(head.previous) == MAX_PREVIOUS
    missing = [k for k in head.lineage() if store.stat(k) is None]
    assert not missing, f"HEAD's lineage names deleted blobs: {missing}"
    ours = [i.key for i in store.list("islands/0/")
            if (p := parse_checkpoint_key(i.key)) and p[2] == up.tag]
    assert sorted(ours) == sorted(head.lineage())  # older ones of ours are gone
    assert store.stat(foreign) is not None


def test_a_restart_from_the_seed_is_warned_and_counted(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    gone = checkpoint_key(0, 40, "old")
    write_head(store, Head(island=0, checkpoint=gone, generation=40, owner="old",
                           released=True), if_generation=0)
    beats: list[dict] = []
    link = BucketLink(store, spec, worker_id="w", solo=True, max_islands=1, stats=dict,
                      hosted=set, on_heartbeat=beats.append)
    with caplog.at_level(logging.WARNING):
        claim = link.claim(0, read_head(store, 0))
    assert claim is not None and claim.snapshot is None
    assert any("island 0" in r.getMessage() and "seed" in r.getMessage()
               and r.levelno >= logging.WARNING for r in caplog.records)
    link.beat_now()
    assert beats[-1]["checkpoint"]["restarts_from_seed"] == 1
    assert read_heartbeat(store, "w")[0].checkpoint["restarts_from_seed"] == 1


# -- 3. threads that die ---------------------------------------------------------------------


@pytest.mark.parametrize("thread,target,method", [
    ("uploader", Uploader, "_upload"),
    ("bucket poll", BucketLink, "_poll"),
    ("heartbeat", BucketLink, "_heartbeat"),
])
def test_a_thread_that_keeps_failing_stops_the_worker_with_its_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread: str, target: type,
        method: str) -> None:
    from islandsync.worker.worker import WorkerFailed

    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(checkpoint_interval_s=0.1, heartbeat_interval_s=0.2))
    original = getattr(target, method)
    calls = {"n": 0}

    def broken(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            return original(self, *args, **kwargs)  # one good call, then a bug for good
        raise RuntimeError(f"bug in {method}")

    monkeypatch.setattr(target, method, broken)
    worker = _worker(store, duration=120.0)
    t, out = _run_in_thread(worker)
    t.join(timeout=90)
    assert not t.is_alive(), f"the worker kept running with its {thread} thread dead"
    err = out.get("error")
    assert isinstance(err, WorkerFailed), out
    assert f"{thread} thread failed: RuntimeError: bug in {method}" in str(err)
    assert err.summary is not None and thread in err.summary.stopped
    if thread != "heartbeat":  # (a dead heartbeat thread can only leave its last word)
        hb = read_heartbeat(store, "w")
        assert hb is not None and hb[0].state == "exited"  # none vouches for a stopped worker


def test_a_thread_that_fails_once_is_restarted(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(checkpoint_interval_s=0.1))
    original = Uploader._upload
    failed = threading.Event()

    def once(self, *args, **kwargs):
        if not failed.is_set():
            failed.set()
            raise RuntimeError("transient bug")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Uploader, "_upload", once)
    worker = _worker(store, duration=60.0)
    t, out = _run_in_thread(worker)
    try:
        wait_for(lambda: failed.is_set() and worker.uploader.stats.uploads >= 2, 30,
                 "uploads after the failure")
    finally:
        worker.request_stop("test over")
        t.join(timeout=60)
    assert out["summary"].stopped == "test over"
    assert worker.uploader.error is None and worker.uploader.restarts.error is None


def test_heartbeats_stop_vouching_for_a_stalled_loop(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(heartbeat_interval_s=0.2))
    release = threading.Event()
    original = Engine.step
    steps = {"n": 0}

    def hang(self):  # a fitness function that never returns, after a few generations
        steps["n"] += 1
        if steps["n"] == 5:
            release.wait(60)
        return original(self)

    monkeypatch.setattr(Engine, "step", hang)
    worker = _worker(store, duration=60.0, stall_s=1.0)
    t, out = _run_in_thread(worker)
    try:
        wait_for(lambda: (hb := read_heartbeat(store, "w")) is not None
                 and hb[0].state == "stalled", 30, "a stalled heartbeat")
        frozen = store.stat("workers/w.json").generation
        time.sleep(1.0)  # five heartbeat intervals: none may be written while stalled
        assert store.stat("workers/w.json").generation == frozen
    finally:
        release.set()
        worker.request_stop("test over")
        t.join(timeout=60)
    assert read_heartbeat(store, "w")[0].state == "exited"


# -- 4. one bad record skips that record only -------------------------------------------------


def test_a_garbage_head_does_not_stop_claiming_the_other_islands(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    store.put(head_key(0), b"{ garbage")
    link = BucketLink(store, spec, worker_id="w", solo=True, max_islands=4, stats=dict,
                      hosted=set)
    link._poll()
    # every island claimed; the garbage one is taken over (no checkpoint: from the seed)
    assert sorted(c.island for c in link.take().claims) == [0, 1, 2, 3]
    head, _ = read_head(store, 0)
    assert head.owner == "w"


def test_a_garbage_head_does_not_stop_following_the_assignment(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    spec = fast_spec()
    write_record(store, LEASE_KEY, LeaseRecord(holder="l", term=1, lease_s=3.0))
    write_assignment(store, Assignment(term=1, epoch=1, leader="l",
                                       islands={0: "w", 1: "w", 2: "w"}, workers=["w"]),
                     if_generation=0)
    store.put(head_key(0), b"\xff\xfe not json")
    link = BucketLink(store, spec, worker_id="w", solo=False, max_islands=4, stats=dict,
                      hosted=set)
    link._poll()
    assert sorted(c.island for c in link.take().claims) == [0, 1, 2]


def test_an_island_whose_head_is_garbage_resumes_from_its_newest_checkpoint(
        tmp_path: Path) -> None:
    """A crafted or corrupted HEAD is skipped by every reader: unless the island's assigned
    worker takes it over, the island stops for good. It resumes, never restarts."""
    store, spec, newest = checkpointed_island(tmp_path)
    store.put(head_key(0), b"[" * 200_000)  # the garbage replaces the HEAD
    write_record(store, LEASE_KEY, LeaseRecord(holder="l", term=1, lease_s=3.0))
    write_assignment(store, Assignment(term=1, epoch=1, leader="l", islands={0: "w2"},
                                       workers=["w2"]), if_generation=0)
    link = BucketLink(store, spec, worker_id="w2", solo=False, max_islands=4, stats=dict,
                      hosted=set)
    link._poll()
    claims = link.take().claims
    assert [c.island for c in claims] == [0]
    assert claims[0].snapshot is not None
    assert claims[0].snapshot.generation == newest.generation  # not from the seed
    assert link.restarts_from_seed == 0
    assert read_head(store, 0)[0].owner == "w2"


# -- 5. no island claimed twice ------------------------------------------------------------


def test_an_island_being_handed_over_is_never_claimed_again(tmp_path: Path) -> None:
    """The loop adds a claim to its hosted set, then tells the link: a poll that reads the
    two sets around that handover must see the island in one of them."""
    store = LocalStore(tmp_path / "run")
    spec = fast_spec(islands=2)
    hosted: set[int] = set()
    link: BucketLink

    def hosted_now() -> set[int]:
        seen = set(hosted)
        for claim in link.take().claims:  # the loop's handover, right after our read
            hosted.add(claim.island)
            link.claimed(claim.island)
        return seen

    link = BucketLink(store, spec, worker_id="w", solo=True, max_islands=2, stats=dict,
                      hosted=lambda: set(hosted))
    link._poll()  # claims 0 and 1
    link.hosted = hosted_now
    link._poll()
    assert hosted == {0, 1}
    assert link.take().claims == [], "claimed an island it was taking over already"


def test_the_loop_never_hosts_an_island_twice(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec())
    worker = _worker(store)
    try:
        worker.link.claim(0, None)
        worker._apply_inbox()
        worker.link.claim(0, read_head(store, 0))  # a duplicate claim that won its CAS
        worker._apply_inbox()
        assert worker.engine.islands == [0]
        worker.engine.step()
        worker._checkpoint()
        assert worker.uploader.flush(30)
        head = read_head(store, 0)[0]
        assert worker._lost == [] and 0 in worker.uploader._islands
        assert head.owner == "w" and head.generation == worker.engine.generations[0]
    finally:
        worker.uploader.close(5)


# -- 6. worker ids and tags ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["has space", "a/b", "x" * 129, ""])
def test_a_bad_worker_id_is_refused(tmp_path: Path, bad: str) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec())
    with pytest.raises(ConfigError, match="worker id"):
        Worker(store, solo=True, progress=False, device="cpu", worker_id=bad or "\t")


def test_checkpoint_tags_are_unique_per_process_and_fit_the_layout(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec())
    long_id = "w" * 128
    a, b = _worker(store, worker_id=long_id), _worker(store, worker_id=long_id)
    try:
        assert a.tag != b.tag
        parsed = parse_checkpoint_key(checkpoint_key(0, 1, a.tag))
        assert parsed is not None and parsed[2] == a.tag
    finally:
        a.uploader.close(1)
        b.uploader.close(1)


def test_a_worker_id_in_live_use_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(heartbeat_interval_s=0.3))
    first = _worker(store, worker_id="dup", duration=60.0)
    t, out = _run_in_thread(first)
    try:
        wait_for(lambda: read_heartbeat(store, "dup") is not None, 30, "first heartbeat")
        second = Worker(store, solo=True, progress=False, device="cpu", worker_id="dup",
                        duration=60.0)
        with pytest.raises(ConfigError, match="worker id dup is already in use by a live"):
            second.run()
        second.uploader.close(1)
    finally:
        first.request_stop("test over")
        t.join(timeout=60)
    assert out["summary"].stopped == "test over"


def test_a_dead_workers_id_can_be_reused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(heartbeat_interval_s=0.3))
    write_record(store, "workers/ghost.json", Heartbeat(worker="ghost", state="running"))
    worker = Worker(store, solo=True, progress=False, device="cpu", worker_id="ghost",
                    duration=0.5)
    assert worker.run().stopped == "duration elapsed"


# -- 7. the run's duration never compares this machine's clock with the bucket's ------------


def test_a_clock_running_ahead_does_not_end_the_run(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(duration_s=3600.0))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400.0)  # a day ahead
    summary = _worker(store, duration=1.0).run()
    assert summary.stopped == "duration elapsed"
    assert store.stat(FINISHED_KEY) is None


def test_the_run_duration_counts_from_run_json_on_the_buckets_clock(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(duration_s=3600.0))
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / "run" / "run.json", (two_hours_ago, two_hours_ago))
    summary = _worker(store, duration=60.0).run()
    assert summary.stopped == "run finished: duration"


# -- 8. crafted remote values never meet a stop criterion -----------------------------------


@pytest.mark.parametrize("best", ["-Infinity", "-1e308", "NaN"])
def test_a_crafted_remote_best_never_finishes_the_run(tmp_path: Path, best: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, fast_spec(target=-1e9))  # unreachable: rastrigin's minimum is 0
    store.put(head_key(3), ('{"island": 3, "generation": 5, "evals": 10, "best": ' + best
                            + ', "owner": "evil"}').encode())
    with caplog.at_level(logging.WARNING):
        summary = _worker(store, duration=1.5, max_islands=3).run()
    assert summary.stopped == "duration elapsed"
    assert store.stat(FINISHED_KEY) is None
    assert any("islands/3/HEAD.json" in r.getMessage() for r in caplog.records)

