"""The leader's heartbeat watch: liveness and the hour-dead sweep on our own clock."""

from __future__ import annotations

import os
import time
from pathlib import Path

from islandsync.bucket.layout import heartbeat_key
from islandsync.bucket.records import Heartbeat, write_record
from islandsync.leader.heartbeats import DEAD_HEARTBEAT_S, HeartbeatWatch
from islandsync.store import LocalStore


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _beat(store: LocalStore, worker: str, **kw) -> None:
    write_record(store, heartbeat_key(worker), Heartbeat(worker=worker, **kw))


def test_a_silent_heartbeat_is_dead_after_the_timeout_and_swept_after_an_hour(
        tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path / "run"), Clock()
    watch = HeartbeatWatch(store, timeout=10.0, clock=clock)
    _beat(store, "a")
    _beat(store, "b")
    assert watch.look(gap_limit=1e9)[1] == {"a", "b"}
    for _ in range(3):
        clock.t += 5.0
        _beat(store, "a")  # a beats, b is silent
        seen, alive = watch.look(gap_limit=1e9)
    assert alive == {"a"} and set(seen) == {"a", "b"}
    assert watch.long_dead(alive) == []
    clock.t += DEAD_HEARTBEAT_S
    _beat(store, "a")
    _, alive = watch.look(gap_limit=1e9)
    assert watch.long_dead(alive) == [heartbeat_key("b")]


def test_a_heartbeat_the_bucket_stamped_long_ago_is_not_swept_by_a_new_watcher(
        tmp_path: Path) -> None:
    """The bucket's stamps are never compared with our clock: a new leader watches a silent
    heartbeat for the whole hour before deleting it, however old the blob says it is."""
    store, clock = LocalStore(tmp_path / "run"), Clock()
    _beat(store, "old")
    path = tmp_path / "run" / heartbeat_key("old")
    week = time.time() - 7 * 86400
    os.utime(path, (week, week))
    watch = HeartbeatWatch(store, timeout=10.0, clock=clock)
    watch.look(gap_limit=1e9)
    clock.t += 60.0
    _, alive = watch.look(gap_limit=1e9)
    assert alive == set() and watch.long_dead(alive) == []


def test_a_bad_heartbeat_skips_that_worker_only(tmp_path: Path) -> None:
    store, clock = LocalStore(tmp_path / "run"), Clock()
    _beat(store, "good")
    store.put(heartbeat_key("bad"), b"{ not json")
    seen, alive = HeartbeatWatch(store, timeout=10.0, clock=clock).look(gap_limit=1e9)
    assert set(seen) == {"good"} and alive == {"good"}


def test_a_worker_that_says_it_stalled_is_not_alive_at_once(tmp_path: Path) -> None:
    """Its heartbeat is fresh, but it vouches for no work: its islands move now, not a worker
    timeout later; once it beats ``running`` again it is alive again."""
    store, clock = LocalStore(tmp_path / "run"), Clock()
    watch = HeartbeatWatch(store, timeout=10.0, clock=clock)
    _beat(store, "w", state="running")
    assert watch.look(gap_limit=1e9)[1] == {"w"}
    _beat(store, "w", state="stalled")
    assert watch.look(gap_limit=1e9)[1] == set()
    _beat(store, "w", state="running")
    assert watch.look(gap_limit=1e9)[1] == {"w"}
