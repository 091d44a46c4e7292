"""SIGSTOP of the leader past its lease, then SIGCONT: a new leader takes over, and the old one
wakes up as a follower that writes nothing (local directory: the pause must not land inside a
LocalStore write, whose flock would block the new leader's writes of that key)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from islandsync.bucket.run import init_run
from islandsync.testing.cluster import LEASE_S, Cluster, cluster_spec, pause_outside_store_writes
from islandsync.testing.invariants import (
    check_elites,
    check_heads_readable,
    check_lineage,
    check_working,
    wait_hosting,
    wait_islands_advance,
)
from islandsync.testing.processes import wait_for

from .conftest import CHAOS_PATH

ISLANDS = 6


def test_sigstop_the_leader_past_its_lease(tmp_path: Path) -> None:
    url = str(tmp_path / "run")
    with Cluster(url, tmp_path, pythonpath=CHAOS_PATH) as cl:
        init_run(cl.store, cluster_spec())
        with cl.recorder(ISLANDS) as rec:
            c0 = cl.coordinator("c0")
            try:
                wait_for(lambda: rec.assignments(), 60, "c0's first assignment")
                cl.coordinator("c1")
                cl.worker("w0")
                cl.worker("w1")
                wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0", "w1"}, timeout=60)
                wait_hosting(rec, ISLANDS, {"w0", "w1"})
                wait_for(lambda: len(rec.elite_epochs) >= 2, 30, "c0's elites")
                before = rec.assignments()[-1]
                assert before.leader == "c0" and before.term == 1, before
                pause_outside_store_writes(c0.popen, Path(url))
                paused_at = time.monotonic()
                cl.mark("c0 paused")
                wait_for(lambda: rec.assignments()[-1].term >= 2, 3 * LEASE_S + 5,
                         "c1 taking over the paused leader's lease")
                wait_for(lambda: rec.elites() and rec.elites()[-1].term >= 2, 20,
                         "an elite merged by c1")
                # Well past c0's lease on c0's own clock before it may run again.
                time.sleep(max(0.0, paused_at + LEASE_S + 1.0 - time.monotonic()))
                woke_at = time.monotonic()
                c0.popen.send_signal(signal.SIGCONT)
                cl.mark("c0 resumed")
                wait_for(lambda: "no longer leader" in c0.text(), 10,
                         "c0 noticing that it lost the lease")
                wait_islands_advance(rec, cl.store, ISLANDS, owners={"w0", "w1"}, timeout=30,
                                     what="islands evolving under c1")
                check_working(rec, ["w0", "w1"])
                assert c0.running, "the woken leader should stay on as a candidate"
            finally:
                cl.stop()
        cl.check_clean_exits()
        check_lineage(rec)
        check_elites(rec, min_epochs=4)
        rec.check_single_leader_per_term()  # also: terms never go back as epochs go forward
        taken = next(s for s in rec.seen if s.term >= 2)
        late = [s for s in rec.seen if s.at >= taken.at and s.term < 2]
        assert not late, f"records of term 1 after term 2 began: {late}"
        assert all(s.leader == "c1" for s in rec.assignments() if s.term == 2)
        assert not [s for s in rec.seen if s.at > woke_at and s.term == 1]
        check_heads_readable(cl.store, ISLANDS)
