"""Forged and runaway terms (issue 18, N3): a term is trusted only as far as the lease's CAS
chain vouches for it. In-process, with injected clocks: the leader keeps assigning, a worker
that joins afterwards gets islands, workers ignore what no lease vouches for, and a lease at
the term cap is taken over."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from islandsync.bucket.elites import encode_elite
from islandsync.bucket.layout import ASSIGNMENT_KEY, ELITE_HEAD_KEY, LEASE_KEY, elite_key
from islandsync.bucket.records import (
    MAX_TERM,
    Assignment,
    EliteHead,
    LeaseRecord,
    next_term,
    read_assignment,
    read_elite_head,
    read_lease,
    write_assignment,
    write_record,
)
from islandsync.bucket.run import init_run
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.lease import Lease
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.testing.cluster import cluster_spec
from islandsync.views.status import collect_status
from islandsync.worker.bucket_thread import BucketLink


def beat(store: LocalStore, worker: str) -> None:
    store.put(f"workers/{worker}.json", b'{"state": "running", "rate": 10, "max_islands": 4}')


def forge(store: LocalStore, key: str, **fields: object) -> None:
    """What a notebook with the run's credentials can do: overwrite a record, any term."""
    record = json.loads(store.get(key).data)
    store.put(key, json.dumps({**record, **fields}).encode())


def link_for(store: LocalStore, spec, worker: str) -> BucketLink:
    return BucketLink(store, spec, worker_id=worker, solo=False, max_islands=4,
                      stats=lambda: {}, hosted=set)


def put_elite(store: LocalStore, spec, *, epoch: int, term: int) -> None:
    width = spec.problem.genome.width
    elite = (np.zeros((2, width), np.float32), np.array([1.0, 2.0], np.float32),
             np.array([1, 2], np.int64), np.array([0, 0], np.int32))
    store.put(elite_key(epoch), encode_elite(elite, epoch=epoch, term=term))
    write_record(store, ELITE_HEAD_KEY, EliteHead(epoch=epoch, key=elite_key(epoch), term=term,
                                                  size=2, best=1.0))


def test_forged_terms_never_stop_the_leader(tmp_path: Path, monkeypatch) -> None:
    """The done-when of N3: an assignment.json and an elite/HEAD.json of term 10^15 written
    into a live run, then a lease of term 2^62: the leader keeps assigning, a worker joining
    afterwards gets islands within a minute (of the leader's clock), and the term status
    shows is the lease's."""
    monkeypatch.setattr("islandsync.leader.coordinator.MIN_WRITE_GAP_S", 0.0)
    store, spec = LocalStore(tmp_path / "run"), cluster_spec(islands=4)
    init_run(store, spec)
    now = [0.0]
    leader = Coordinator(store, candidate="c0", spec=spec,
                         settings=LeaderSettings(lease_s=3.0, cycle_s=0.5),
                         clock=lambda: now[0])
    beat(store, "w0")
    leader.step()
    assert read_assignment(store)[0].term == 1
    put_elite(store, spec, epoch=1, term=1)

    workers = ["w0"]

    def cycles(seconds: float) -> None:
        for _ in range(int(seconds / 0.5)):
            now[0] += 0.5
            for w in workers:
                beat(store, w)
            leader.step()

    forge(store, ASSIGNMENT_KEY, term=10**15)
    forge(store, ELITE_HEAD_KEY, term=10**15)
    cycles(2.0)
    forge(store, ASSIGNMENT_KEY, term=1 + 999)  # below the cap, above the lease: forged too
    forge(store, ELITE_HEAD_KEY, term=1 + 999)
    cycles(2.0)
    assert read_assignment(store)[0].term == 1 and read_assignment(store)[0].leader == "c0"
    assert read_elite_head(store)[0].term == 1  # replaced too, though nothing moved
    forge(store, LEASE_KEY, term=2**62)  # runaway: term + 1 is no valid term
    cycles(10.0)
    lease = read_lease(store)[0]
    assert lease.holder == "c0" and lease.term == 2  # taken over, the chain going on
    workers.append("w1")
    cycles(60.0)
    assignment = read_assignment(store)[0]
    assert assignment.term == lease.term and "w1" in assignment.islands.values()
    joined = link_for(store, spec, "w1")
    joined._follow_assignment(set())
    assert {c.island for c in joined.take().claims} == assignment.of("w1") != set()
    assert collect_status(store)["leader"]["term"] == read_lease(store)[0].term == 2


def test_a_worker_follows_only_the_lease_term(tmp_path: Path) -> None:
    """Records above the lease's term are garbage to a worker; a forged elite HEAD does not
    raise its idea of the term, so the real leader's next assignment is still followed."""
    store, spec = LocalStore(tmp_path / "run"), cluster_spec(islands=2)
    init_run(store, spec)
    write_record(store, LEASE_KEY, LeaseRecord(holder="c0", term=3, lease_s=3.0))
    put_elite(store, spec, epoch=1, term=10**9)  # under the cap, vouched for by no lease
    link = link_for(store, spec, "w")
    link._read_elite()
    assert link.take().foreign is None and link.lease_term == 3
    write_assignment(store, Assignment(term=10**9, epoch=9, leader="forger",
                                       islands={0: "w", 1: "w"}, workers=["w"]),
                     if_generation=0)
    link._follow_assignment(set())
    assert link.take().claims == []  # the forged one is not followed
    gen = read_assignment(store)[1]
    write_assignment(store, Assignment(term=3, epoch=10, leader="c0", islands={1: "w"},
                                       workers=["w"]), if_generation=gen)
    link._follow_assignment(set())
    assert [c.island for c in link.take().claims] == [1]


def test_terms_stay_below_the_cap(tmp_path: Path) -> None:
    """A lease at or above the cap is garbage, taken over once it stood still; the chain goes
    on from the last valid term the candidate saw, and wraps instead of reaching the cap."""
    assert next_term(5) == 6 and next_term(MAX_TERM - 2) == MAX_TERM - 1
    assert next_term(MAX_TERM - 1) == 1
    with pytest.raises(ValueError):
        LeaseRecord(holder="x", term=MAX_TERM, lease_s=3.0)
    store = LocalStore(tmp_path / "run")
    now = [0.0]
    lease = Lease(store, "c", lease_s=3.0, clock=lambda: now[0])
    write_record(store, LEASE_KEY, LeaseRecord(holder="x", term=MAX_TERM - 1, lease_s=3.0))
    assert not lease.step()
    now[0] += 3.0
    assert lease.step() and lease.term == 1
    for forged in (MAX_TERM, 2**62):
        store = LocalStore(tmp_path / str(forged))
        lease = Lease(store, "c", lease_s=3.0, clock=lambda: now[0])
        assert lease.step() and lease.term == 1
        forge(store, LEASE_KEY, term=forged)
        now[0] += 1.0
        assert not lease.step()  # the renewal is refused: the blob moved
        lease.step()
        now[0] += 3.0
        assert lease.step() and lease.term == 2, forged
