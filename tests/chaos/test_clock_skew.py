"""Workers whose wall clock is an hour ahead and an hour behind (``time.time`` and
``time.time_ns`` patched by a ``python -c`` wrapper around the CLI), beside one on time, and a
coordinator candidate an hour ahead beside the leader. Liveness and leases are judged by blob
generations on each observer's own monotonic clock, so nobody is declared dead, every worker
gets islands, and the skewed candidate never takes a live lease."""

from __future__ import annotations

import time
from pathlib import Path

from islandsync.bucket.records import read_heartbeat
from islandsync.bucket.run import init_run
from islandsync.testing.cluster import Cluster, cluster_spec
from islandsync.testing.invariants import (
    check_elites,
    check_heads_readable,
    check_lineage,
    check_working,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for

from .conftest import CHAOS_PATH

ISLANDS = 6
HOUR = 3600.0
SKEWS = {"w-now": None, "w-ahead": HOUR, "w-behind": -HOUR}


def test_workers_an_hour_off_are_judged_by_heartbeat_generations(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    spec = cluster_spec()
    with Cluster(url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        init_run(cl.store, spec)
        with cl.recorder(ISLANDS) as rec:
            cl.coordinator("c0")
            try:
                wait_for(lambda: rec.assignments(), 60, "c0 leading")
                cl.coordinator("c-ahead", clock_offset=HOUR)
                for worker, offset in SKEWS.items():
                    cl.worker(worker, clock_offset=offset)
                wait_for(lambda: rec.assignment_records and set(
                    rec.assignment_records[-1][1].islands.values()) == set(SKEWS), 60,
                    "an assignment that gives islands to all three workers")
                wait_islands_advance(rec, cl.store, ISLANDS, owners=set(SKEWS), timeout=30)
                wait_for(lambda: {rec.latest(i).owner for i in range(ISLANDS)} == set(SKEWS),
                         30, "every worker hosting islands")
                # The skew is real: each worker's own stamps are an hour off.
                for worker, offset in SKEWS.items():
                    sent = read_heartbeat(cl.store, worker)[0].written_at
                    assert abs(sent - time.time() - (offset or 0.0)) < 60, (worker, sent)

                # Watch for three worker timeouts: nobody dead, nothing moved.
                start, assignments_before = time.monotonic(), len(rec.assignment_records)
                owners = {i: rec.latest(i).owner for i in range(ISLANDS)}
                lease_term = rec.leases[-1][2].get("term")
                time.sleep(3 * spec.worker_timeout_s)
                for _, a in rec.assignment_records[assignments_before:]:
                    assert set(SKEWS) <= set(a.workers), f"a worker judged dead: {a}"
                    assert set(a.islands.values()) == set(SKEWS), a
                for i in range(ISLANDS):
                    moved = [s for s in rec.heads[i] if s.at > start and s.owner != owners[i]]
                    assert not moved, f"island {i} moved from {owners[i]}: {moved}"
                check_working(rec, list(SKEWS))
                assert {body.get("holder") for _, _, body in rec.leases} == {"c0"}
                assert rec.leases[-1][2].get("term") == lease_term == 1
            finally:
                cl.stop()
        cl.check_clean_exits()
        assert "'dead'" not in cl.procs["c0"].text()
        check_lineage(rec)
        check_elites(rec, min_epochs=3)
        rec.check_single_leader_per_term()
        check_heads_readable(cl.store, ISLANDS)
