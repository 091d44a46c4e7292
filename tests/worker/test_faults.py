"""The worker's faults (issue 10), each pinned by a test that failed before its fix: restarts
from the seed, threads that die, bad records stopping a poll, double claims, worker ids and
tags, the run duration and crafted HEADs. (The uploader's, a lost HEAD reply and retention
off the lineage among them, are in test_uploader.py.)"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from islandsync.bucket.layout import (
    FINISHED_KEY,
    LEASE_KEY,
    checkpoint_key,
    head_key,
    parse_checkpoint_key,
)
from islandsync.bucket.records import (
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
from islandsync.store import LocalStore
from islandsync.testing.processes import wait_for
from islandsync.worker.engine import Engine
from islandsync.worker.bucket_thread import BucketLink
from islandsync.worker.worker import Worker
from islandsync.worker.uploader import Uploader

from .conftest import checkpointed_island, fast_spec

# -- helpers -----------------------------------------------------------------------------


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


# -- 2. a restart from the seed is loud ----------------------------------------------------


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

