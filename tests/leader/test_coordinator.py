"""The coordinator on real stores and real processes: one leader per term, failover, fencing of
a paused leader, islands of a killed worker resumed elsewhere."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import islandsync
from islandsync.bucket.layout import LEASE_KEY
from islandsync.bucket.records import (
    Assignment,
    LeaseRecord,
    read_assignment,
    read_lease,
    write_assignment,
    write_record,
)
from islandsync.bucket.run import init_run
from islandsync.leader.coordinator import KEEP_FALLBACKS, Coordinator
from islandsync.leader.settings import LeaderSettings
from islandsync.store import open_store
from islandsync.testing.cluster import (
    INTERVAL_S,
    LEASE_S,
    cluster_spec,
    start_coordinator,
    start_worker,
)
from islandsync.testing.processes import stop_all, wait_for
from islandsync.testing.recorder import Recorder, heads
from islandsync.views.results import best_genomes
from islandsync.views.status import collect_status
from islandsync.worker.bucket_thread import BucketLink

from ..conftest import REPO, store_kind_params, store_kind_url

_url = store_kind_url
KINDS = store_kind_params()


@pytest.mark.parametrize("kind", KINDS)
def test_three_candidates_one_leader_and_failover_after_kill(
        kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = _url(kind, tmp_path, request)
    store = open_store(url)
    init_run(store, cluster_spec())
    procs = {f"c{i}": start_coordinator(url, f"c{i}") for i in range(3)}
    workers = [start_worker(url, f"w{i}") for i in range(2)]
    try:
        with Recorder(store) as rec:
            wait_for(lambda: len(rec.elites()) >= 2 and rec.assignments(), 60,
                     "a leader's first assignment and elites")
            first = rec.assignments()[-1]
            assert set(first.islands.values()) <= {"w0", "w1"}
            killed_at = time.monotonic()
            procs[first.leader].send_signal(signal.SIGKILL)
            wait_for(lambda: rec.assignments()[-1].term > first.term, 30,
                     "the new leader's first assignment")
            new = next(s for s in rec.assignments() if s.term > first.term)
            failover = new.at - killed_at
            assert new.leader != first.leader
            # lease + one cycle, plus a second for process scheduling on a busy 2-core box
            assert failover <= LEASE_S + INTERVAL_S + 1.0, failover
            wait_for(lambda: len(rec.elites()) >= 2 and rec.elites()[-1].term > first.term, 30,
                     "an elite merged by the new leader")
        rec.check_single_leader_per_term()
        rec.check_elites()
    finally:
        stop_all(list(procs.values()) + workers)
    st = collect_status(store)
    assert st["assignment"]["term"] >= 2 and st["elite"]["epoch"] >= 2


def test_paused_leader_steps_down_and_its_assignment_is_never_applied(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, cluster_spec())
    log = tmp_path / "c0.log"
    c0 = start_coordinator(url, "c0", log=log)
    procs = [c0]
    try:
        with Recorder(store) as rec:
            wait_for(lambda: rec.assignments(), 30, "c0's first assignment")
            procs.append(start_coordinator(url, "c1"))
            procs += [start_worker(url, "w0"), start_worker(url, "w1")]
            wait_for(lambda: rec.assignments()[-1].islands and
                     set(rec.assignments()[-1].islands.values()) == {"w0", "w1"}, 30,
                     "both workers placed")
            c0.send_signal(signal.SIGSTOP)
            wait_for(lambda: rec.assignments()[-1].term >= 2, 3 * LEASE_S,
                     "c1 taking over the paused leader's lease")
            c0.send_signal(signal.SIGCONT)
            wait_for(lambda: b"no longer leader" in log.read_bytes(), 10,
                     "c0 noticing it lost the lease")
            time.sleep(2 * INTERVAL_S)
        rec.check_single_leader_per_term()
        after = [s for s in rec.assignments() if s.term >= 2]
        assert all(s.leader == "c1" for s in after)
        latest = rec.assignments()[-1]
        # The workers follow the latest term's assignment.
        wait_for(lambda: all(h.owner == latest.islands[i] and not h.released
                             for i, h in heads(store, 6).items()) and len(heads(store, 6)) == 6,
                 20, "workers hosting what the new leader assigned")
    finally:
        stop_all(procs)


def test_a_stale_assignment_is_ignored_by_workers(tmp_path: Path) -> None:
    """The race the lease leaves open: a deposed leader's write lands before the new leader's
    first one. Workers read the lease term too, so they never act on it."""
    store = open_store(str(tmp_path / "run"))
    spec = cluster_spec(islands=2)
    init_run(store, spec)
    write_record(store, LEASE_KEY, LeaseRecord(holder="new", term=2, lease_s=3.0))
    write_assignment(store, Assignment(term=1, epoch=5, leader="old", islands={0: "w", 1: "w"},
                                       workers=["w"]), if_generation=0)
    link = BucketLink(store, spec, worker_id="w", solo=False, max_islands=2,
                      stats=lambda: {}, hosted=lambda: {0})
    link._follow_assignment({0})
    inbox = link.take()
    assert inbox.claims == [] and inbox.release == set()  # nothing applied
    gen = read_assignment(store)[1]
    write_assignment(store, Assignment(term=2, epoch=6, leader="new", islands={1: "w"},
                                       workers=["w"]), if_generation=gen)
    link._follow_assignment({0})
    inbox = link.take()
    assert [c.island for c in inbox.claims] == [1] and inbox.release == {0}
    # And once term 2 is known, a term-1 record stays ignored even if the lease reads fail.
    assert link.lease_term == 2


def test_a_leader_that_lost_its_lease_writes_nothing(tmp_path: Path) -> None:
    """In-process with injected clocks: A leads, its clock jumps past the lease (as after
    SIGSTOP), B takes over; A's next cycles write no assignment and no elite."""
    store = open_store(str(tmp_path / "run"))
    spec = cluster_spec(islands=2)
    init_run(store, spec)
    t = {"a": 0.0, "b": 0.0}
    quick = LeaderSettings(lease_s=3.0, cycle_s=0.5)
    a = Coordinator(store, candidate="A", settings=quick, clock=lambda: t["a"])
    b = Coordinator(store, candidate="B", settings=quick, clock=lambda: t["b"])
    for name in ("w0", "w1"):
        store.put(f"workers/{name}.json", b'{"state": "running", "rate": 10, "max_islands": 4}')
    a.step()
    b.step()
    assert a.lease.is_leader and not b.lease.is_leader
    first = read_assignment(store)[0]
    assert first.term == 1 and first.leader == "A"
    t["a"] += 10.0  # A was stopped for 10 s: its validity has run out on its own clock
    for _ in range(8):
        t["b"] += 0.5
        b.step()
    assert b.lease.is_leader
    taken = read_assignment(store)[0]
    assert taken.term == 2 and taken.leader == "B"
    store.put("workers/w2.json", b'{"state": "running", "rate": 10, "max_islands": 4}')
    a.step()
    assert not a.lease.is_leader
    assert read_assignment(store)[0] == taken  # A wrote nothing


def test_killed_workers_islands_resume_on_live_workers(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, cluster_spec())
    procs = [start_coordinator(url, "c0")]
    workers = {f"w{i}": start_worker(url, f"w{i}") for i in range(3)}
    procs += list(workers.values())
    try:
        with Recorder(store) as rec:
            wait_for(lambda: len(heads(store, 6)) == 6 and all(
                h.checkpoint and h.owner in workers and h.generation > 3
                for h in heads(store, 6).values()), 60, "every island checkpointed")
            wait_for(lambda: len(set(h.owner for h in heads(store, 6).values())) == 3, 30,
                     "islands on all three workers")
            victim = "w1"
            lost = {i: h for i, h in heads(store, 6).items() if h.owner == victim}
            workers[victim].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            wait_for(lambda: all(heads(store, 6)[i].owner not in (victim, None) and
                                 heads(store, 6)[i].generation > lost[i].generation
                                 for i in lost), 30, "the victim's islands stepping elsewhere")
            recovery = time.monotonic() - killed
            for i, before in lost.items():
                now = heads(store, 6)[i]
                assert now.owner in {"w0", "w2"}
                assert now.best <= before.best + 1e-9  # resumed, not restarted from the seed
        rec.check_elites()
        assert recovery < 15, recovery  # worker timeout 2 s + cycles and polls
    finally:
        stop_all(procs)


def test_run_with_its_own_candidate_is_a_complete_run(tmp_path: Path) -> None:
    """A notebook alone: islandsync.run stands as a candidate, leads, places every island on
    itself, merges elites; `best` reads them back."""
    url = str(tmp_path / "run")
    spec = cluster_spec(islands=3)
    summary = islandsync.run(url, spec=spec, duration=6.0, worker_id="nb", progress=False)
    assert sorted(summary.islands) == [0, 1, 2]
    store = open_store(url)
    best = best_genomes(store, top=5)
    assert len(best["fitness"]) == 5 and best["fitness"] == sorted(best["fitness"])
    assert best["genomes"].shape == (5, 10)
    assert len(set(best["id"])) == 5
    assert read_lease(store)[0].released  # given back on the way out (the term chain kept)
    assert np.isfinite(best["fitness"][0])
    # The same through the command line.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "islandsync", "best", url, "--top", "3",
                          "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    as_json = json.loads(out.stdout)
    assert as_json["fitness"] == best["fitness"][:3] and len(as_json["genomes"]) == 3
    npy = Path(url) / "best.npy"
    out = subprocess.run([sys.executable, "-m", "islandsync", "best", url, "--npy", str(npy)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and np.load(npy).shape == (10, 10)  # --top defaults to 10
    text = subprocess.run([sys.executable, "-m", "islandsync", "best", url], env=env,
                          capture_output=True, text=True, timeout=60).stdout
    assert f"fitness {best['fitness'][0]:.10g}" in text and "island" in text


def test_demo_kill_one_shows_the_recovery(tmp_path: Path) -> None:
    from islandsync.demo import run_demo

    out = io.StringIO()
    assert run_demo(workers=2, duration=30, directory=str(tmp_path), kill_one=True, dim=10,
                    out=out) == 0
    text = out.getvalue()
    assert "kill -9 demo-w" in text, text
    assert "recovered in" in text and "its islands were evolving elsewhere" in text, text
    assert "global best over time" in text and "islands per worker" in text


def test_housekeeping_keeps_three_epochs_and_the_lineage(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    spec = cluster_spec(islands=2)
    init_run(store, spec)
    islandsync.run(url, duration=2.0, worker_id="w", progress=False, solo=True)
    from islandsync.bucket.layout import elite_key, parse_checkpoint_key, parse_elite_key

    # Junk epochs under the next names, as a deposed leader's half-finished writes might be.
    for epoch in (1, 2, 3, 4):
        store.put(elite_key(epoch), b"not an elite")
    c = Coordinator(store, candidate="hk",
                    settings=LeaderSettings(lease_s=3.0, cycle_s=0.1, housekeeping_s=3600))
    c.step()
    epochs = sorted(k.key for k in store.list("elite/") if parse_elite_key(k.key))
    assert epochs == [elite_key(3), elite_key(4), elite_key(5)]
    assert best_genomes(store)["epoch"] == 5
    # Plant extra old checkpoints (as a killed worker would leave) and an orphan above HEAD.
    head = heads(store, 2)[0]
    for g in (1, 2, 3, 4):
        store.put(f"islands/0/{g:012d}-ghost.isz", b"x")
    orphan = f"islands/0/{head.generation + 1000:012d}-ghost.isz"
    store.put(orphan, b"x")
    store.put("workers/ancient.json", b'{"state": "exited"}')
    lineage = {k.key for k in store.list("islands/0/")} & set(head.lineage())
    c._housekeeping(c._read_heads(), set())
    kept = [k.key for k in store.list("islands/0/") if parse_checkpoint_key(k.key)]
    assert head.checkpoint in kept and lineage <= set(kept)  # HEAD's lineage, all of it
    others = [k for k in kept if k != orphan and k not in lineage]
    assert len(others) == KEEP_FALLBACKS, others  # and the newest others as a last resort
    assert orphan in kept  # seen once: might be an upload whose HEAD CAS is in flight
    c._housekeeping(c._read_heads(), set())
    assert orphan not in [k.key for k in store.list("islands/0/")]
    assert store.stat("workers/ancient.json") is not None  # written just now: not an hour old


def test_islands_leave_a_worker_before_its_session_deadline(tmp_path: Path) -> None:
    """w1's session ends 20 s after it starts (40 s limit minus the local profile's drain
    margin, capped at half the limit); the leader drains it 12 s before that, so its islands
    are evolving on w0 before w1 winds up with final checkpoints."""
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, cluster_spec(islands=4))
    procs = [start_coordinator(url, "c0", "--drain", "12s")]
    w1 = start_worker(url, "w1", "--session-limit", "40s")
    procs += [w1, start_worker(url, "w0")]
    try:
        wait_for(lambda: any(h.owner == "w1" for h in heads(store, 4).values()), 30,
                 "w1 hosting islands")
        wait_for(lambda: len(heads(store, 4)) == 4 and all(
            h.owner == "w0" and not h.released for h in heads(store, 4).values()), 30,
            "every island on w0")
        # Moved while w1 was still running with time left on its session (startup under load
        # takes seconds, so time is read from w1's own heartbeat, not from the spawn).
        left = json.loads(store.get("workers/w1.json").data).get("deadline_in_s")
        assert w1.poll() is None, "w1 stopped before its islands had moved"
        assert left is not None and left > 0, left
        assert w1.wait(timeout=60) == 0  # wound up at its deadline, cleanly
        hb = json.loads(store.get("workers/w1.json").data)
        assert hb["state"] == "exited"
    finally:
        stop_all(procs)


@pytest.mark.s3
def test_demo_runs_on_a_bucket_url(s3_url: str, tmp_path: Path) -> None:
    """``islandsync demo --url s3://...``: the whole run lives in the bucket (the processes
    find the endpoint and keys in the environment, as a user's would); logs stay in --dir."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "islandsync", "demo", "--url", s3_url,
                           "--workers", "1", "--duration", "14s", "--dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"on {s3_url}" in proc.stdout and "summary" in proc.stdout, proc.stdout
    assert not (tmp_path / "run").exists()  # nothing of the run on disk
    st = collect_status(open_store(s3_url))
    assert st["evaluations"] > 0 and st["assignment"]["leader"] == "demo-coordinator", st
    assert {w["id"] for w in st["workers"]} == {"demo-w0"}


def _finished_run_with_a_worker(tmp_path: Path):
    """A run, its leader L and a follower F on one injected clock, and ``beat(state)``: the
    worker heartbeats, time passes, both step. The leader has confirmed the worker."""
    from islandsync.bucket.layout import heartbeat_key
    from islandsync.bucket.records import Heartbeat

    store = open_store(str(tmp_path))
    init_run(store, cluster_spec(islands=2))  # worker_timeout_s 2
    t = {"now": 0.0}
    leader, follower = (Coordinator(store, candidate=c,
                                    settings=LeaderSettings(lease_s=3.0, cycle_s=0.1),
                                    clock=lambda: t["now"]) for c in ("L", "F"))

    def beat(state: str = "running", wait: float = 0.3) -> None:
        write_record(store, heartbeat_key("w"), Heartbeat(worker="w", state=state, rate=1.0))
        t["now"] += wait
        leader.step()
        follower.step()

    for _ in range(3):  # a new leader confirms a worker once its heartbeat has moved
        beat()
    assert leader.lease.is_leader and not follower.lease.is_leader
    return store, leader, follower, beat


def test_a_finished_run_is_left_once_its_workers_have_stopped(tmp_path: Path) -> None:
    """`islandsync coordinate` exits once the run is finished (issue 17): a follower at once;
    the leader once no worker is alive (their final checkpoints merged by then), or a worker
    timeout after it saw the decision."""
    from islandsync.bucket.layout import FINISHED_KEY
    from islandsync.bucket.records import Finished

    store, leader, follower, beat = _finished_run_with_a_worker(tmp_path / "a")
    assert not leader.done() and not follower.done()  # not finished yet
    write_record(store, FINISHED_KEY, Finished(reason="target"), if_generation=0)
    assert follower.done() and follower.finish_reason == "target"
    assert not leader.done()  # its worker is still writing its final checkpoints
    beat()
    assert not leader.done()
    beat("exited")
    assert leader.done() and leader.finish_reason == "target"

    # A worker that goes on beating (never sees the decision) keeps it a worker timeout.
    store, leader, _, beat = _finished_run_with_a_worker(tmp_path / "b")
    write_record(store, FINISHED_KEY, Finished(reason="max_evals"), if_generation=0)
    assert not leader.done()
    beat(wait=1.0)
    assert not leader.done()
    beat(wait=1.0)
    assert leader.done() and leader.finish_reason == "max_evals"
