"""Liveness from heartbeat versions on our own monotonic clock (``bucket/liveness.py``): a
worker is dead once its heartbeat's generation has stood still for ``timeout`` seconds of
*our* clock; a worker never seen gets a whole timeout first; our own blindness is not counted
against anyone."""

from __future__ import annotations

from islandsync.bucket.liveness import Liveness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_heartbeat_that_stands_still_for_the_timeout_is_dead() -> None:
    clock = Clock()
    live = Liveness(10.0, clock)
    live.observe("w", 1)
    clock.now += 9.9
    assert live.alive("w")
    live.observe("w", 1)  # the same generation again: no sign of life
    clock.now += 0.1
    assert not live.alive("w")


def test_a_new_generation_starts_the_timeout_again() -> None:
    clock = Clock()
    live = Liveness(10.0, clock)
    live.observe("w", 1)
    clock.now += 9.0
    live.observe("w", 2)
    clock.now += 9.0
    assert live.alive("w")
    assert live.since("w") == 109.0


def test_a_worker_never_seen_gets_a_whole_timeout_before_it_counts_as_dead() -> None:
    clock = Clock()
    live = Liveness(10.0, clock)
    assert live.alive("ghost")
    clock.now += 9.0
    assert live.alive("ghost")
    clock.now += 1.0
    assert not live.alive("ghost")


def test_only_a_change_seen_by_us_confirms_a_worker_beats_now() -> None:
    """A stale blob of a worker that died before we started watching is not confirmed."""
    live = Liveness(10.0, Clock())
    live.observe("w", 5)
    assert not live.confirmed("w")
    live.observe("w", 5)
    assert not live.confirmed("w")
    live.observe("w", 6)
    assert live.confirmed("w")
    # First seen by alive() (a placeholder), then its blob: not yet a change.
    assert live.alive("v")
    live.observe("v", 1)
    assert not live.confirmed("v")


def test_a_gap_in_our_own_listings_restarts_every_clock() -> None:
    clock = Clock()
    live = Liveness(10.0, clock)
    live.watched(gap_limit=5.0)
    live.observe("w", 1)
    clock.now += 30.0  # we could not list for 30 s: our outage, not theirs
    live.watched(gap_limit=5.0)
    assert live.alive("w")
    assert live.since("w") == clock.now
    clock.now += 10.0
    live.watched(gap_limit=20.0)  # looked in time: the clocks run on
    assert not live.alive("w")
