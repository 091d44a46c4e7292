"""The demo's ``--kill-one`` story (``islandsync/demo.py``), without processes: the worker
hosting the most islands is killed once its time comes, and recovery is declared only when
every island it had evolves on another worker past the generation it was killed at. (The
whole demo runs as processes in tests/leader/test_coordinator.py.)"""

from __future__ import annotations

import signal
from pathlib import Path

from islandsync.bucket.records import Head, read_head, write_head
from islandsync.demo import _KillOne
from islandsync.store import LocalStore


class Process:
    def __init__(self) -> None:
        self.signals: list[int] = []

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)


def _own(store: LocalStore, island: int, owner: str, generation: int) -> None:
    found = read_head(store, island)
    write_head(store, Head(island=island, owner=owner, generation=generation),
               if_generation=found[1] if found else 0)


def test_the_busiest_worker_is_killed_and_recovery_waits_for_every_island(
        tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    procs = {"w0": Process(), "w1": Process()}
    for island, owner in enumerate(["w0", "w1", "w1", "w0", "w1"]):
        _own(store, island, owner, 5)
    said: list[str] = []
    kill = _KillOne(store, 5, procs, 0.0, said.append, kill_at=10.0)
    kill.look(9.0)
    assert kill.victim is None and procs["w1"].signals == []  # not yet
    kill.look(10.0)
    assert kill.victim == "w1" and procs["w1"].signals == [signal.SIGKILL]
    assert procs["w0"].signals == [] and kill.lost == {1: 5, 2: 5, 4: 5}
    assert said == ["[ 10.0s] kill -9 w1 (islands 1-2, 4)"]
    _own(store, 1, "w0", 6)
    _own(store, 2, "w0", 5)  # taken over but not evolved yet
    _own(store, 4, "w0", 7)
    kill.look(12.0)
    assert kill.recovered_at is None
    _own(store, 2, "w0", 6)
    kill.look(13.5)
    assert kill.recovered_at == 13.5 and procs["w1"].signals == [signal.SIGKILL]
    assert said[-1] == "[ 13.5s] recovered in 3.5s: islands 1 -> w0, 2 -> w0, 4 -> w0 evolving again"


def test_without_kill_one_nobody_is_killed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    procs = {"w0": Process()}
    _own(store, 0, "w0", 1)
    kill = _KillOne(store, 1, procs, 0.0, print, kill_at=None)
    kill.look(1e9)
    assert kill.victim is None and procs["w0"].signals == []
