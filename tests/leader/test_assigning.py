"""The cycle's assignment phase (islandsync.leader.assigning): islands placed on the live,
confirmed workers and written by CAS only when something changed; a garbage assignment is
replaced, a newer leader's is left alone; moves are told to the observer."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from islandsync.bucket.layout import ASSIGNMENT_KEY
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import Assignment, Heartbeat, read_assignment, write_record
from islandsync.bucket.run import init_run
from islandsync.leader.assigning import AssignmentPhase
from islandsync.leader.observer import LeaderObserver
from islandsync.leader.placement import Policy
from islandsync.store import LocalStore
from islandsync.testing.cluster import cluster_spec


class Moves(LeaderObserver):
    def __init__(self) -> None:
        self.moved: list[tuple[str, int]] = []

    def on_islands_moved(self, reason: str, count: int) -> None:
        self.moved.append((reason, count))


def _phase(store: LocalStore, *, term: int = 1, forged: bool = False,
           observer: LeaderObserver | None = None) -> tuple[AssignmentPhase, Liveness]:
    liveness = Liveness(10.0, clock=lambda: 0.0)
    for generation in (1, 2):  # seen to beat: confirmed
        liveness.observe("w0", generation)
    phase = AssignmentPhase(
        store, cluster_spec(islands=3), candidate="lead", term=term, policy=Policy(),
        drain_s=120.0, liveness=liveness, leading=lambda: True,
        paced=lambda key: contextlib.nullcontext(), forged=lambda term, key: forged,
        observer=observer or LeaderObserver(), clock=lambda: 0.0)
    return phase, liveness


def _beats() -> dict[str, tuple[Any, Heartbeat]]:
    return {"w0": (2, Heartbeat(worker="w0", state="running", rate=10.0))}


def test_islands_go_to_the_live_worker_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    init_run(store, cluster_spec(islands=3))
    moves = Moves()
    phase, _ = _phase(store, observer=moves)
    phase.assign(_beats(), {"w0"}, (640, 1.5))
    written, generation = read_assignment(store)
    assert (written.term, written.epoch, written.leader) == (1, 1, "lead")
    assert written.islands == {0: "w0", 1: "w0", 2: "w0"} and written.workers == ["w0"]
    assert (written.evaluations, written.best) == (640, 1.5)
    assert moves.moved == [("new", 3)] and not phase.hurry and not phase.unplaced
    phase.assign(_beats(), {"w0"}, (640, 1.5))  # nothing changed: nothing written
    assert read_assignment(store)[1] == generation


def test_a_garbage_assignment_is_replaced_and_a_newer_leaders_left_alone(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    init_run(store, cluster_spec(islands=3))
    store.put(ASSIGNMENT_KEY, b"{not json")
    phase, _ = _phase(store)
    phase.assign(_beats(), {"w0"}, None)
    assert read_assignment(store)[0].islands == {0: "w0", 1: "w0", 2: "w0"}
    newer = Assignment(term=5, epoch=9, leader="other", islands={}, workers=[])
    write_record(store, ASSIGNMENT_KEY, newer, if_generation=read_assignment(store)[1])
    phase.assign(_beats(), set(), None)  # the lease vouches for term 5: not ours to touch
    assert read_assignment(store)[0].leader == "other"
    forged, _ = _phase(store, forged=True)  # no lease vouches for it: replaced
    forged.assign(_beats(), {"w0"}, None)
    assert read_assignment(store)[0].leader == "lead"
