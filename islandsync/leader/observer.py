"""What the leader reports as it runs: :class:`LeaderObserver`, one named no-op hook per event.

In the style of EvoX's ``Monitor``: an observer subclasses :class:`LeaderObserver` and
overrides the hooks it cares about; the coordinator calls every hook on the one observer it
was given (:class:`CompositeObserver` fans out to several). There is no forwarding by name:
calling a hook that does not exist is an ``AttributeError`` at once, and a subclass that
defines an ``on_*`` method the base does not have (a misspelt hook, never to be called) is a
``TypeError`` when the class is made.

The run's observers are the Prometheus metrics (composed at the edge, ``api.MetricsObserver``:
the leader may not import the views) and the run's history
(:class:`~islandsync.leader.history.HistoryObserver`); ``api.leader_observers`` builds them
for both ``islandsync coordinate`` and a worker's companion candidate.

Hooks run on the leader's threads (the loop; none on the lease thread) and must be quick. An
observer's error never costs the leader a cycle: :class:`CompositeObserver` logs it (once
per observer and hook, with its traceback) and carries on with the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from islandsync.bucket.records import Head, Heartbeat

log = logging.getLogger("islandsync.leader.coordinator")  # one logger for the leader's story


@dataclass(frozen=True)
class CycleSeen:
    """What one leading cycle read: the argument of :meth:`LeaderObserver.on_cycle`."""

    term: int
    leader: str  # this candidate's id
    heartbeats: Mapping[str, Heartbeat]  # every worker's heartbeat as last read (validated)
    alive: frozenset[str]  # the workers judged alive
    heads: Mapping[int, Head]  # every island's HEAD as the cycle's merge round read it


class LeaderObserver:
    """The leader's hooks, each a no-op here (see module doc). Override what you need."""

    #: The hooks, in the order a cycle calls them (held by a test against the methods).
    HOOKS = ("on_lease", "on_store_ops", "on_islands_moved", "on_merge", "on_global_best",
             "on_cycle", "on_stop")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        unknown = sorted(name for name in vars(cls)
                         if name.startswith("on_") and name not in LeaderObserver.HOOKS)
        if unknown:
            raise TypeError(f"{cls.__name__} defines {', '.join(unknown)}, not a leader hook "
                            f"(hooks: {', '.join(LeaderObserver.HOOKS)})")

    def on_lease(self, term: int, leading: bool, renewal_failures: int) -> None:
        """Every step, leading or standing by: the lease's term as this candidate knows it,
        whether it leads, and its failed renewals so far (a total, not an increment)."""

    def on_store_ops(self, counts: Mapping[str, Any]) -> None:
        """The leader's own bucket operations so far (``CountingStore.counts()``: ``ops`` by
        pricing class, ``errors`` by operation), every step, when its store counts them."""

    def on_islands_moved(self, reason: str, count: int) -> None:
        """A new assignment moved ``count`` islands for ``reason`` (placement's reasons:
        dead, drain, balance, new, unplaced)."""

    def on_merge(self, seconds: float, candidates: int, duplicates: int) -> None:
        """A merge round took ``seconds`` over ``candidates`` genomes, ``duplicates`` of
        them dropped (whether or not a new elite epoch followed)."""

    def on_global_best(self, best: float | None) -> None:
        """A new elite epoch was written; ``best`` in the problem's direction."""

    def on_cycle(self, seen: CycleSeen) -> None:
        """The end of a leading cycle that read the heartbeats."""

    def on_stop(self) -> None:
        """The candidate is stopping, still holding its lease if it led: flush what waits."""


class CompositeObserver(LeaderObserver):
    """Several observers as one: each hook is called on each, in order; one's error is
    logged and skipped (see module doc)."""

    def __init__(self, *observers: LeaderObserver | None) -> None:
        self.observers = tuple(o for o in observers if o is not None)
        self._failed: set[tuple[int, str]] = set()

    def _each(self, hook: str, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:  # noqa: BLE001 - an observer's bug must not stop the leader
                if (id(observer), hook) in self._failed:
                    log.warning("leader observer %s.%s failed again", type(observer).__name__,
                                hook)
                    continue
                self._failed.add((id(observer), hook))
                log.exception("leader observer %s.%s failed (the leader carries on)",
                              type(observer).__name__, hook)

    def on_lease(self, term: int, leading: bool, renewal_failures: int) -> None:
        self._each("on_lease", term, leading, renewal_failures)

    def on_store_ops(self, counts: Mapping[str, Any]) -> None:
        self._each("on_store_ops", counts)

    def on_islands_moved(self, reason: str, count: int) -> None:
        self._each("on_islands_moved", reason, count)

    def on_merge(self, seconds: float, candidates: int, duplicates: int) -> None:
        self._each("on_merge", seconds, candidates, duplicates)

    def on_global_best(self, best: float | None) -> None:
        self._each("on_global_best", best)

    def on_cycle(self, seen: CycleSeen) -> None:
        self._each("on_cycle", seen)

    def on_stop(self) -> None:
        self._each("on_stop")


__all__ = ["CompositeObserver", "CycleSeen", "LeaderObserver"]
