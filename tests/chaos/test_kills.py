"""kill -9: random workers, repeatedly, with a replacement started after each kill (a GA run,
and on a local directory also a portfolio of cmaes, shade and snes); and the
leader, twice, with three candidates. On a local directory, on fake-gcs-server and on moto's S3
server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from islandsync.bucket.records import Head, read_head
from islandsync.bucket.run import init_run
from islandsync.testing.cluster import INTERVAL_S, LEASE_S, Cluster, cluster_spec
from islandsync.testing.invariants import (
    check_elites,
    check_heads_readable,
    check_lineage,
    check_resumed,
    check_working,
    wait_hosting,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for
from islandsync.testing.recorder import Recorder

from ..conftest import store_kind_params
from .conftest import CHAOS_PATH, KINDS_S3, run_url

ISLANDS = 6


def heads_now(cl: Cluster) -> dict[int, Head]:
    return {i: current[0] for i in range(ISLANDS) if (current := read_head(cl.store, i))}


def kill_a_worker(cl: Cluster, rec: Recorder, rnd: int) -> float:
    """kill -9 a random worker that hosts islands, start a replacement, wait until the
    victim's islands evolve elsewhere; returns the seconds that took."""
    live = cl.live("worker")
    hosts = sorted({h.owner for h in heads_now(cl).values() if h.owner in live and not h.released})
    victim = cl.rng.choice(hosts)
    killed_at = cl.kill(victim)
    time.sleep(0.3)  # whatever the victim had in flight has landed by now
    before = {i: h for i, h in heads_now(cl).items() if h.owner == victim}
    cl.mark(f"round {rnd}: killed {victim}, which held {sorted(before)}")
    cl.worker(f"w{3 + rnd}")

    def resumed_elsewhere() -> bool:
        return all((h := rec.latest(i)) is not None and h.owner not in (victim, None)
                   and h.generation > before[i].generation for i in before)

    wait_for(resumed_elsewhere, 30, f"round {rnd}: {victim}'s islands evolving elsewhere")
    took = time.monotonic() - killed_at
    check_resumed(rec, before, victim, killed_at)
    return took


def kill_the_leader(cl: Cluster, rec: Recorder) -> float:
    """kill -9 the leader of the newest assignment; wait for another candidate to write an
    assignment and an elite of a higher term while the islands keep evolving; returns the
    seconds from the kill to the new leader's first assignment."""
    last = rec.assignments()[-1]
    killed_at = cl.kill(last.leader)
    cl.mark(f"killed leader {last.leader} (term {last.term})")
    wait_for(lambda: rec.assignments()[-1].term > last.term, 30,
             f"a new leader after {last.leader}")
    new = next(s for s in rec.assignments() if s.term > last.term)
    assert new.leader in cl.live("coordinator"), new
    wait_for(lambda: rec.elites() and rec.elites()[-1].term > last.term, 30,
             f"an elite merged by {new.leader}")
    wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0", "w1"}, timeout=30,
                         what=f"islands evolving under {new.leader}")
    return new.at - killed_at


@pytest.mark.parametrize(("kind", "algorithm"), [
    *store_kind_params("ga"),  # every kind (a ("gcs", "ga") built by hand ran on GCS as s3)
    # A portfolio (cmaes, shade, snes round-robin) is a run like any other: each worker
    # steps each algorithm's islands as one stack, and a claimer resumes an island with the
    # algorithm the spec gives it, from the island state its checkpoint holds.
    ("local", "portfolio")])
def test_kill9_random_workers_repeatedly(kind: str, algorithm: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    """Three workers and a coordinator; three rounds of: kill -9 a random worker that hosts
    islands, start a replacement, wait until the victim's islands evolve elsewhere."""
    url = run_url(kind, tmp_path, request)
    with Cluster(url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        init_run(cl.store, cluster_spec(algorithm=algorithm))
        with cl.recorder(ISLANDS) as rec:
            cl.coordinator("c0")
            for n in range(3):
                cl.worker(f"w{n}")
            try:
                wait_islands_advance(rec, cl.store, ISLANDS, owners=set(cl.live("worker")),
                                     timeout=60, what="every island checkpointed by a worker")
                recoveries = [kill_a_worker(cl, rec, rnd) for rnd in range(3)]
                wait_islands_advance(rec, cl.store, ISLANDS, owners=set(cl.live("worker")),
                                     timeout=30, what="every island on a live worker")
                check_working(rec, cl.live("worker"))
            finally:
                cl.stop()
        cl.check_clean_exits()
        check_lineage(rec)
        check_elites(rec, min_epochs=3)
        rec.check_single_leader_per_term()
        check_heads_readable(cl.store, ISLANDS)
        # worker timeout (2 s) + a cycle + a poll + a checkpoint, on a busy 2-core machine
        assert max(recoveries) < 15, recoveries


@pytest.mark.parametrize("kind", KINDS_S3)
def test_kill9_the_leader_twice(kind: str, tmp_path: Path,
                                request: pytest.FixtureRequest) -> None:
    """Three candidates and two workers: kill -9 the leader, then the next one; each time
    another candidate leads within a lease and a cycle, merges, and the islands never stop."""
    url = run_url(kind, tmp_path, request)
    with Cluster(url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        init_run(cl.store, cluster_spec())
        with cl.recorder(ISLANDS) as rec:
            for n in range(3):
                cl.coordinator(f"c{n}")
            cl.worker("w0")
            cl.worker("w1")
            try:
                wait_for(lambda: rec.assignments() and len(rec.elite_epochs) >= 2, 60,
                         "a leader's first assignment and elites")
                wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0", "w1"}, timeout=60)
                wait_hosting(rec, ISLANDS, {"w0", "w1"})
                failovers = [kill_the_leader(cl, rec) for _ in range(2)]
                check_working(rec, ["w0", "w1"])
            finally:
                cl.stop()
        cl.check_clean_exits()
        check_lineage(rec)
        check_elites(rec, min_epochs=4)
        rec.check_single_leader_per_term()
        check_heads_readable(cl.store, ISLANDS)
        # a lease plus a cycle, with 2 s for scheduling on a busy 2-core machine
        assert max(failovers) <= LEASE_S + INTERVAL_S + 2.0, failovers
