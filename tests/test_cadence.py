"""Cadence presets (issue 21): ``free-tier`` is recorded in run.json with its resolved values
and shown by ``status``; the leader takes its lease and cycle from it; and a simulated hour
of a run at that cadence (4 workers of 2 islands and a leader, an injected clock, the real
leader, and one real follower's bucket thread, checkpoint uploader and leader candidate)
stays within the issue's budgets, counted call by call with CountingStore, not timed."""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import islandsync.leader.coordinator as coordinator_module
from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.history import read_history
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import checkpoint_key, heartbeat_key
from islandsync.bucket.records import (
    Head,
    Heartbeat,
    read_assignment,
    read_head,
    write_head,
    write_record,
)
from islandsync.bucket.run import init_run, read_spec
from islandsync.cli import main
from islandsync.config import CADENCES, parse_spec, spec_from_flags
from islandsync.errors import ConfigError, PreconditionFailed
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.history import HistoryObserver, RunHistory
from islandsync.leader.lease import Lease
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.store.counting import CountingStore
from islandsync.views.report import render_html
from islandsync.worker.bucket_thread import BucketLink
from islandsync.worker.uploader import Uploader

#: The issue's budgets an hour (R2's free tier for 4 workers and a leader, with room).
LEADER_BUDGET = {"A": 400, "B": 3000}
WORKER_BUDGET = {"A": 240, "B": 2000}
POP, DIM = 16, 10


def test_init_records_the_preset_and_its_values(tmp_path: Path, capsys) -> None:
    run = str(tmp_path / "run")
    assert main(["init", run, "--no-publish", "--problem", "rastrigin", "--dim", "10",
                 "--cadence", "free-tier", "--heartbeat-interval", "20s"]) == 0
    stored = json.loads(LocalStore(tmp_path / "run").get("run.json").data)
    preset = CADENCES["free-tier"]
    # Every value is written resolved (a later preset change cannot move a stored run), the
    # name says where they came from, and an explicit flag wins over the preset.
    assert stored["cadence"] == "free-tier"
    assert stored["heartbeat_interval_s"] == 20.0
    assert {k: stored[k] for k in preset if k != "heartbeat_interval_s"} == \
        {k: v for k, v in preset.items() if k != "heartbeat_interval_s"}
    capsys.readouterr()
    assert main(["status", run]) == 0
    out = capsys.readouterr().out
    assert "cadence free-tier (" in out and "lease 60s" in out and "heartbeat_interval 20s" in out
    assert main(["status", run, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["run"]["cadence"]["name"] == "free-tier"
    assert status["run"]["cadence"]["worker_timeout_s"] == preset["worker_timeout_s"]


def test_an_unknown_preset_is_refused() -> None:
    with pytest.raises(ConfigError, match="cadence"):
        spec_from_flags(problem="rastrigin", dim=10, cadence="cheap")
    with pytest.raises(SystemExit):
        main(["init", "x", "--problem", "rastrigin", "--cadence", "cheap"])


def test_an_older_run_json_reads_as_the_default_cadence() -> None:
    data = spec_from_flags(problem="rastrigin", dim=10).model_dump(mode="json")
    for key in ("cadence", "lease_s", "leader_cycle_s", "merge_interval_s", "worker_listing_s"):
        data.pop(key)
    spec = parse_spec(data, source="old run.json")
    assert spec.cadence == "default"
    assert {k: getattr(spec, k) for k in CADENCES["default"]} == CADENCES["default"]


def test_the_leader_takes_lease_and_cycle_from_the_run(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    init_run(store, _spec())
    coordinator = Coordinator(store, candidate="lead")
    assert (coordinator.lease.lease_s, coordinator.interval) == (60.0, 10.0)
    flagged = Coordinator(store, candidate="lead",
                          settings=LeaderSettings(lease_s=9.0, cycle_s=2.0))
    assert (flagged.lease.lease_s, flagged.interval) == (9.0, 2.0)  # a flag still wins


# -- a simulated hour ---------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _spec():
    return spec_from_flags(problem="rastrigin", dim=DIM, islands=8, pop=POP, algorithm="ga",
                           seed=1, cadence="free-tier")


def _snapshot(island: int, generation: int) -> IslandSnapshot:
    rng = np.random.default_rng(island * 100_003 + generation)
    genomes = rng.uniform(-5, 5, (POP, DIM)).astype(np.float32)
    return IslandSnapshot(island, generation, generation * POP, 0, {
        "genomes": genomes, "scores": rng.random(POP).astype(np.float32) + 1 / generation,
        "ids": genome_ids_numpy(genomes), "origin": np.full(POP, island, np.int64)})


class SimulatedWorker:
    """A cooperative worker that writes straight to the bucket (counted, and its counts in
    its heartbeats as a real worker's): its heartbeat, and checkpoints of the islands the
    assignment gives it (released when it moves them)."""

    def __init__(self, inner: LocalStore, worker: str) -> None:
        self.store, self.worker = CountingStore(inner), worker
        self.hosted: dict[int, int] = {}  # island -> HEAD generation we wrote
        self.generation = 0

    def beat(self) -> None:
        write_record(self.store, heartbeat_key(self.worker), Heartbeat(
            worker=self.worker, islands=sorted(self.hosted), rate=1000.0, max_islands=2,
            store=self.store.counts()))

    def checkpoint(self) -> None:
        found = read_assignment(self.store)
        mine = set(found[0].of(self.worker)) if found else set()
        self.generation += 1
        for island in sorted(mine | set(self.hosted)):
            current = read_head(self.store, island)
            if island not in self.hosted:
                if current is not None and current[0].owner not in (None, self.worker) \
                        and not current[0].released:
                    continue  # its owner has not let go yet
                self.hosted[island] = current[1] if current else 0
            key = checkpoint_key(island, self.generation, self.worker)
            self.store.put(key, encode_island(_snapshot(island, self.generation), elite=4,
                                              meta={"owner": self.worker}))
            head = Head(island=island, checkpoint=key, generation=self.generation,
                        evals=self.generation * POP, best=1.0, owner=self.worker,
                        released=island not in mine)
            try:
                self.hosted[island] = write_head(self.store, head,
                                                 if_generation=self.hosted[island])
            except PreconditionFailed:
                self.hosted.pop(island)
                continue
            if island not in mine:
                self.hosted.pop(island)


class RealFollower:
    """One worker made of the real parts that touch the bucket: its bucket thread's poll and
    heartbeat (BucketLink), its checkpoint uploader, and its leader candidate's lease watch,
    all on one CountingStore, driven by the injected clock instead of threads."""

    def __init__(self, inner: LocalStore, spec, clock: Clock) -> None:
        self.store = CountingStore(inner)
        self.hosted: set[int] = set()
        self.generation = 0
        self.link = BucketLink(self.store, spec, worker_id="w0", solo=False, max_islands=2,
                               stats=lambda: {"islands": sorted(self.hosted), "rate": 1000.0,
                                              "max_islands": 2, "store": self.store.counts()},
                               hosted=lambda: set(self.hosted), clock=clock)
        self.uploader = Uploader(self.store, owner="w0", tag="w0t", elite=4, meta={},
                                 to_user=lambda s: s, on_lost=self.hosted.discard)
        self.candidate = Lease(self.store, "w0", lease_s=spec.lease_s, clock=clock)

    def poll(self) -> None:
        self.link._poll()
        inbox = self.link.take()
        for claim in inbox.claims:
            self.uploader.adopt(claim.island, claim.head_generation, keys=claim.keys,
                                lineage=claim.lineage)
            self.hosted.add(claim.island)
            self.link.claimed(claim.island)
        for island in inbox.release & self.hosted:
            self.uploader.submit(_snapshot(island, self.generation + 1), release=True)
            self.uploader.flush(30)
            self.hosted.discard(island)

    def checkpoint(self) -> None:
        self.generation += 1
        for island in sorted(self.hosted):
            self.uploader.submit(_snapshot(island, self.generation))
        assert self.uploader.flush(30)


class SimulatedRun:
    """The real leader (with its history), one :class:`RealFollower` and three simulated
    workers, each action at its cadence from the run's spec, on one
    injected clock; each role on a CountingStore of its own."""

    def __init__(self, root: Path, spec, **history: float) -> None:
        self.inner = LocalStore(root)
        init_run(self.inner, spec)
        self.clock = clock = Clock()
        self.leader_store = CountingStore(self.inner)
        self.history = RunHistory(self.leader_store, clock=clock, **history)
        self.leader = Coordinator(self.leader_store, candidate="lead", clock=clock,
                                  observer=HistoryObserver(self.history))
        self.follower = RealFollower(self.inner, spec, clock)
        self.others = [SimulatedWorker(self.inner, f"w{i}") for i in (1, 2, 3)]
        c, follower = read_spec(self.inner), self.follower
        every: list[tuple[float, Callable[[], None]]] = [
            (c.leader_cycle_s, self.leader.step),
            (c.heartbeat_interval_s, follower.link._heartbeat),
            (c.assignment_poll_s, follower.poll),
            (c.checkpoint_interval_s, follower.checkpoint),
            # A worker's companion candidate watches the lease as the coordinator loop does.
            (min(c.leader_cycle_s, c.lease_s / 3), follower.candidate.step),
            *[(c.heartbeat_interval_s, w.beat) for w in self.others],
            *[(c.checkpoint_interval_s, w.checkpoint) for w in self.others],
        ]
        # Staggered starts, as independent processes would be.
        self.queue = [(clock.t + k * 0.37 % period, k, period, fn)
                      for k, (period, fn) in enumerate(every)]
        heapq.heapify(self.queue)

    def run(self, seconds: float) -> None:
        end = self.clock.t + seconds
        while self.queue[0][0] < end:
            at, k, period, fn = heapq.heappop(self.queue)
            self.clock.t = at
            fn()
            heapq.heappush(self.queue, (at + period, k, period, fn))
        self.clock.t = end

    def counts(self) -> tuple[dict, dict]:
        return self.leader_store.counts()["ops"], self.follower.store.counts()["ops"]


def test_a_free_tier_hour_stays_within_the_budget(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The one-write-a-second pacing sleeps in real time; the simulated hour has none to spare.
    monkeypatch.setattr(coordinator_module, "MIN_WRITE_GAP_S", 0.0)
    run = SimulatedRun(tmp_path / "run", _spec())
    # Warm up a checkpoint round (claims, first merges), then count a whole hour.
    run.run(read_spec(run.inner).checkpoint_interval_s + 5)
    before = run.counts()
    run.run(3600)
    leader, worker = ({k: b[k] - a[k] for k in ("A", "B")}
                      for a, b in zip(before, run.counts()))
    run.follower.uploader.close(5)
    coordinator, follower = run.leader, run.follower
    # The run did its work meanwhile: every island placed and checkpointing, the follower
    # hosting its two, elite epochs merged, and the lease held throughout.
    assignment = read_assignment(follower.store.inner)[0]
    assert len(assignment.islands) == 8 and sorted(assignment.workers) == ["w0", "w1", "w2",
                                                                           "w3"]
    assert len(follower.hosted) == 2
    assert coordinator._elite_head is not None and coordinator._elite_head[0].epoch >= 10
    assert coordinator.lease.term == 1 and coordinator.lease.is_leader
    print(f"per hour: leader {leader}, worker {worker}")
    assert leader["A"] <= LEADER_BUDGET["A"] and leader["B"] <= LEADER_BUDGET["B"], leader
    assert worker["A"] <= WORKER_BUDGET["A"] and worker["B"] <= WORKER_BUDGET["B"], worker


def test_report_json_gives_operations_by_role_as_counted(tmp_path: Path, capsys) -> None:
    """``islandsync report RUN --json``: the leader's and the workers' operations, from the
    run's own history, equal what a CountingStore around each of them counted."""
    run = SimulatedRun(tmp_path / "run", spec_from_flags(
        problem="rastrigin", dim=DIM, islands=8, pop=POP, algorithm="ga", seed=1),
        every_s=1.0, flush_s=1e9, per_segment=1000)
    run.run(300)
    # Every worker's last word carries its counts (taken before that heartbeat's own put);
    # then one more leader cycle samples them all into a history entry, and nothing after.
    workers = [*run.others, run.follower]
    run.follower.uploader.close(5)
    for w in run.others:
        w.beat()
    run.follower.link._heartbeat()
    run.clock.t += run.leader.interval  # within the lease: a renewal, not a new term
    run.leader.step()
    leader_ops = run.leader_store.counts()["ops"]
    run.history.close()
    assert main(["report", str(tmp_path / "run"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ops"]["leader"] == {"A": leader_ops["A"], "B": leader_ops["B"]}
    counted = [w.store.counts()["ops"] for w in workers]
    assert report["ops"]["workers"] == {"A": sum(c["A"] for c in counted) - len(workers),
                                        "B": sum(c["B"] for c in counted)}
    assert report["ops"]["leader"]["A"] > 0 and report["ops"]["workers"]["B"] > 0
    span_h = report["span_s"] / 3600
    assert report["leader_hours"] == pytest.approx(span_h, rel=1e-3)
    assert report["worker_hours"] == pytest.approx(4 * span_h, rel=0.1)
    per_hour = report["ops_per_hour"]
    assert per_hour["leader"]["A"] == pytest.approx(leader_ops["A"] / span_h, rel=0.01)
    assert set(report["month"]) == {"GCS", "S3", "R2"}
    # The HTML report's cost table shows the same numbers by role, and each bucket's month.
    page = render_html(run.inner.url, {}, read_history(run.inner), {})
    table = page[page.index("<h2>Bucket operations and cost</h2>"):]
    assert f"<td>leader</td><td>{leader_ops['A']:,}</td><td>{leader_ops['B']:,}</td>" in table
    assert all(f"<tr><td>{name}</td>" in table for name in ("GCS", "S3", "R2"))
