"""The bucket unreachable for 20 s, its data kept: the workers and the coordinator reach
fake-gcs-server only through a TcpProxy (STORAGE_EMULATOR_HOST in their environment; its cut
fails every request in flight instead of leaving some to hang until the client's 60 s read
timeout), which is cut and then restored. Workers keep
evolving through the outage, and afterwards HEADs, heartbeats and elites move again, with every
invariant intact.

Two in-process tests at the end pin down what the outage once showed: a worker's heartbeat
must not wait for a read its bucket thread is retrying (heartbeats have their own thread),
and a leader blind through an outage must not count that time against the workers (its
liveness clocks restart after a gap in its own looking)."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from islandsync.bucket.records import read_assignment, read_heartbeat
from islandsync.bucket.run import init_run
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.settings import LeaderSettings
from islandsync.store import open_store
from islandsync.testing.cluster import Cluster, cluster_spec
from islandsync.testing.faulty import FaultyStore, Latency
from islandsync.testing.invariants import (
    check_elites,
    check_heads_readable,
    check_lineage,
    check_working,
    wait_hosting,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import Recorder
from islandsync.testing.tcp_proxy import TcpProxy
from islandsync.worker.bucket_thread import BucketLink

from .conftest import CHAOS_PATH

ISLANDS = 6
OUTAGE_S = 20.0
WORKERS = ["w0", "w1"]


def _steps(cl: Cluster, worker: str) -> int:
    found = read_heartbeat(cl.store, worker)
    return found[0].generations if found else 0


def _note_recovery(cl: Cluster, rec: Recorder, restored_at: float) -> None:
    """How long after the restore each worker's first heartbeat and HEAD landed (in the notes
    that a failure message shows)."""
    for w in WORKERS:
        beats = [t for t, _ in rec.heartbeats.get(w, []) if t > restored_at]
        heads = [s.at for i in range(ISLANDS) for s in rec.heads[i]
                 if s.at > restored_at and s.owner == w]
        cl.notes.append(f"{w}: first heartbeat {min(beats, default=-1) - restored_at:.1f} s, "
                        f"first HEAD {min(heads, default=-1) - restored_at:.1f} s after restore")


@pytest.mark.gcs
def test_bucket_unreachable_for_20s(fake_gcs: str, gcs_url: str, tmp_path: Path) -> None:
    host, port = fake_gcs.rsplit("//", 1)[1].split(":")
    proxy = TcpProxy(host, int(port))
    try:
        # The test's own store (and recorder) talk to the server directly: they see the
        # bucket through the outage; the processes see nothing.
        with Cluster(gcs_url, tmp_path, pythonpath=CHAOS_PATH,
                     env={"STORAGE_EMULATOR_HOST": proxy.url}) as cl:
            init_run(cl.store, cluster_spec())
            with cl.recorder(ISLANDS) as rec:
                cl.coordinator("c0")
                for w in WORKERS:
                    cl.worker(w)
                try:
                    wait_islands_advance(rec, cl.store, ISLANDS, owners=set(WORKERS), timeout=60)
                    wait_hosting(rec, ISLANDS, set(WORKERS))
                    wait_for(lambda: len(rec.elite_epochs) >= 2, 30, "the first elites")
                    steps_before = {w: _steps(cl, w) for w in WORKERS}
                    cpu_before = {w: cl.procs[w].cpu_seconds() for w in WORKERS}
                    heads_before = {i: rec.latest(i) for i in range(ISLANDS)}
                    epochs_before = len(rec.elite_epochs)
                    proxy.cut()
                    cut_at = time.monotonic()
                    cl.mark("bucket cut")
                    while time.monotonic() - cut_at < OUTAGE_S:
                        time.sleep(0.5)
                        assert all(cl.procs[p].running for p in cl.procs), "a process died"
                    cpu_during = {w: cl.procs[w].cpu_seconds() - cpu_before[w] for w in WORKERS}
                    landed = [(i, s) for i in range(ISLANDS) for s in rec.heads[i]
                              if cut_at + 1.0 < s.at < time.monotonic()]
                    proxy.restore()
                    restored_at = time.monotonic()
                    cl.mark("bucket restored")
                    assert not landed, f"HEAD writes landed through a cut line: {landed}"
                    # The islands evolved locally all along: their first checkpoints after
                    # the outage are far beyond the last ones before it.
                    for w, cpu in cpu_during.items():
                        assert cpu > 0.1 * OUTAGE_S, (
                            f"{w} used {cpu:.1f} s of CPU in a {OUTAGE_S:g} s outage: stalled?")
                    # After the restore each process waits out its current backoff: the
                    # uploader's (up to 30 s), or the retry of a bucket read (GCSStore: jittered
                    # exponential, up to ~32 s into a 20 s outage).
                    wait_islands_advance(rec, cl.store, ISLANDS, owners=set(WORKERS),
                                         timeout=60, what="HEADs advancing after the outage")
                    cl.mark("HEADs advance")
                    wait_for(lambda: len(rec.elite_epochs) > epochs_before, 60,
                             "an elite merged after the outage")
                    cl.mark("elite merged")
                    check_working(rec, WORKERS, timeout=60)
                    for w in WORKERS:
                        assert _steps(cl, w) > steps_before[w] + 50, (w, steps_before)
                    for i, before in heads_before.items():
                        after = next(s for s in rec.heads[i] if s.at > restored_at
                                     and s.checkpoint != before.checkpoint)
                        assert after.generation > before.generation + 20, (i, before, after)
                    _note_recovery(cl, rec, restored_at)
                finally:
                    proxy.restore()
                    # Shutting down right after an outage waits for retrying reads and
                    # backed-off uploads: give it longer than the usual 30 s.
                    cl.stop(timeout=90)
            cl.check_clean_exits()
            check_lineage(rec)
            check_elites(rec, min_epochs=3)
            rec.check_single_leader_per_term()
            check_heads_readable(cl.store, ISLANDS)
    finally:
        proxy.close()


# -- the mechanisms behind what the outage above shows, in-process and deterministic ---------


def _beat(store, worker: str) -> None:
    store.put(f"workers/{worker}.json", json.dumps(
        {"state": "running", "rate": 100.0, "max_islands": ISLANDS, "islands": []}).encode())


def test_a_leader_blind_through_an_outage_declares_no_worker_dead(tmp_path: Path) -> None:
    spec = cluster_spec(islands=ISLANDS)
    inner = open_store(str(tmp_path / "run"))
    init_run(inner, spec)
    store = FaultyStore(inner)
    t = {"now": 0.0}
    c = Coordinator(store, candidate="c", settings=LeaderSettings(lease_s=3.0, cycle_s=0.5),
                    clock=lambda: t["now"])

    def cycle(*beating: str) -> None:
        t["now"] += 0.5
        for w in beating:
            _beat(inner, w)
        c.step()

    for _ in range(8):
        cycle("w0", "w1")
    placed = read_assignment(inner)[0]
    assert set(placed.islands.values()) == {"w0", "w1"}, placed
    store.start_outage()  # 20 s in which nobody reaches the bucket (workers cannot beat either)
    for _ in range(40):
        cycle()
    store.end_outage()
    after = []
    for beating in [("w0",), ()] + [("w0", "w1")] * 4:
        cycle(*beating)  # w0's heartbeat is back first, w1's a cycle later: within its timeout
        after.append(read_assignment(inner)[0])
    moved = [(a.epoch, a.workers, a.islands) for a in after
             if "w1" not in a.workers or a.islands != placed.islands]
    assert not moved, f"before the outage {placed.islands}; after it: {moved}"


def test_a_slow_bucket_read_does_not_silence_heartbeats(tmp_path: Path) -> None:
    spec = cluster_spec(islands=2)
    inner = open_store(str(tmp_path / "run"))
    init_run(inner, spec)
    # Reads that take 2.5 s: a GCS read retrying through a short blip.
    store = FaultyStore(inner, rules=[Latency(ops=("get",), keys="finished.json", seconds=2.5,
                                              rate=1.0)])
    beats: list[float] = []
    link = BucketLink(store, spec, worker_id="w", solo=False, max_islands=2,
                      stats=dict, hosted=set,
                      on_heartbeat=lambda body: beats.append(time.monotonic()))
    link.start()
    time.sleep(3.0)
    link.stop()
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert gaps and max(gaps) < spec.worker_timeout_s, (
        f"heartbeats {spec.heartbeat_interval_s} s apart by spec; gaps seen {gaps}")
