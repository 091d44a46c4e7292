"""The leader's observer (islandsync.leader.observer): named hooks, no forwarding by name, one
composition for ``islandsync coordinate`` and a worker's companion candidate."""

from __future__ import annotations

import inspect
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import islandsync.api
from islandsync.api import MetricsObserver, leader_candidate
from islandsync.bucket.layout import FINISHED_KEY, heartbeat_key
from islandsync.bucket.records import Finished, write_record
from islandsync.bucket.run import init_run
from islandsync.cli import main
from islandsync.leader.coordinator import Coordinator
from islandsync.leader.history import HistoryObserver
from islandsync.leader.observer import CompositeObserver, CycleSeen, LeaderObserver
from islandsync.leader.settings import LeaderSettings
from islandsync.store import LocalStore
from islandsync.testing.cluster import cluster_spec


class Recording(LeaderObserver):
    """Every hook called, by name, with its arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def on_lease(self, *args: Any) -> None:
        self.calls.append(("on_lease", args))

    def on_store_ops(self, *args: Any) -> None:
        self.calls.append(("on_store_ops", args))

    def on_islands_moved(self, *args: Any) -> None:
        self.calls.append(("on_islands_moved", args))

    def on_merge(self, *args: Any) -> None:
        self.calls.append(("on_merge", args))

    def on_global_best(self, *args: Any) -> None:
        self.calls.append(("on_global_best", args))

    def on_cycle(self, *args: Any) -> None:
        self.calls.append(("on_cycle", args))

    def on_stop(self, *args: Any) -> None:
        self.calls.append(("on_stop", args))

    def named(self, hook: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == hook]


class Raising(LeaderObserver):
    def on_lease(self, term: int, leading: bool, renewal_failures: int) -> None:
        raise RuntimeError("an observer's bug")

    def on_merge(self, seconds: float, candidates: int, duplicates: int) -> None:
        raise RuntimeError("an observer's bug")


def test_the_hooks_are_the_base_classes_on_methods() -> None:
    declared = {n for n, _ in inspect.getmembers(LeaderObserver, inspect.isfunction)
                if n.startswith("on_")}
    assert declared == set(LeaderObserver.HOOKS)
    # every hook is fanned out by the composite, and recorded by the test's observer
    for cls in (CompositeObserver, Recording):
        assert set(LeaderObserver.HOOKS) <= set(vars(cls)), cls


def test_a_misspelt_hook_fails_at_once() -> None:
    """Calling a hook that does not exist is an AttributeError (the old HistoryTap answered
    any name with a no-op, so a typo was swallowed), and defining one is a TypeError."""
    history_observer = HistoryObserver(_history_stub())
    for observer in (LeaderObserver(), CompositeObserver(Recording()), history_observer,
                     MetricsObserver(object())):  # type: ignore[arg-type]
        with pytest.raises(AttributeError):
            observer.on_mreg(0.1, 10, 0)  # type: ignore[attr-defined]
        with pytest.raises(AttributeError):
            observer.observe_merge(0.1, 10, 0)  # type: ignore[attr-defined] - the old name
    with pytest.raises(TypeError, match="on_merged"):
        class Misspelt(LeaderObserver):  # noqa: F841 - defining it is the test
            def on_merged(self, seconds: float, candidates: int, duplicates: int) -> None:
                pass


def _history_stub() -> Any:
    class Stub:
        is_leader = None
    return Stub()


def test_the_composite_calls_each_observer_and_survives_a_failing_one(caplog) -> None:
    recording = Recording()
    composite = CompositeObserver(Raising(), None, recording)
    seen = CycleSeen(term=1, leader="c", heartbeats={}, alive=frozenset(), heads={})
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            composite.on_lease(1, True, 0)
            composite.on_merge(0.1, 10, 2)
        composite.on_store_ops({"ops": {"A": 1}})
        composite.on_islands_moved("dead", 2)
        composite.on_global_best(0.5)
        composite.on_cycle(seen)
        composite.on_stop()
    assert [name for name, _ in recording.calls] == [
        "on_lease", "on_merge", "on_lease", "on_merge", "on_store_ops", "on_islands_moved",
        "on_global_best", "on_cycle", "on_stop"]
    assert recording.named("on_merge")[0] == (0.1, 10, 2)
    # logged with its traceback once per observer and hook, then one line
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2 and "Raising.on_lease" in tracebacks[0].getMessage()


def test_the_coordinator_tells_its_observer_what_it_does(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    init_run(store, cluster_spec(islands=2))
    store.put(heartbeat_key("w0"), b'{"state": "running", "rate": 10, "max_islands": 4}')
    recording = Recording()
    now = [0.0]
    c = Coordinator(store, candidate="c", settings=LeaderSettings(lease_s=3.0, cycle_s=0.5),
                    observer=CompositeObserver(Raising(), recording), clock=lambda: now[0])
    for _ in range(3):
        c.step()
        now[0] += 0.5
        store.put(heartbeat_key("w0"), b'{"state": "running", "rate": 10, "max_islands": 4}')
    assert c.lease.is_leader  # the raising observer cost the leader nothing
    assert recording.named("on_lease")[-1] == (1, True, 0)
    assert recording.named("on_islands_moved") == [("new", 2)]
    seen = recording.named("on_cycle")[-1][0]
    assert (seen.term, seen.leader, seen.alive) == (1, "c", frozenset({"w0"}))
    assert seen.heartbeats["w0"].rate == 10
    stop = threading.Event()
    stop.set()
    c.run(stop)  # stops at once: the observers are told before the lease goes
    assert recording.calls[-1] == ("on_stop", ())


def test_cli_and_api_compose_the_same_observers(tmp_path: Path, monkeypatch) -> None:
    """``islandsync coordinate`` and a worker's companion candidate both go through
    ``api.leader_observers``, and get the same observers from the same settings."""
    composed: list[tuple[str, LeaderSettings, list[type]]] = []
    real = islandsync.api.leader_observers

    def recording(store, spec, settings):  # noqa: ANN001, ANN202
        observer, url = real(store, spec, settings)
        composed.append((spec.problem.name, settings,
                         [type(o) for o in observer.observers]))
        return observer, url

    monkeypatch.setattr(islandsync.api, "leader_observers", recording)
    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec(islands=2))
    write_record(store, FINISHED_KEY, Finished(reason="max_evals", evals=10), if_generation=0)
    assert main(["coordinate", str(tmp_path / "run"), "--interval", "0.2s", "--lease", "2s",
                 "--metrics-port", "-1", "--duration", "30s"]) == 0
    stop = leader_candidate()(store, "w0")
    stop()
    (_, cli_settings, cli_observers), (_, api_settings, api_observers) = composed
    assert cli_observers == api_observers == [HistoryObserver]
    assert cli_settings.history_every_s == api_settings.history_every_s
