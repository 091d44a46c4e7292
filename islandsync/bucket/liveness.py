"""Liveness judged from heartbeat versions on this process's own monotonic clock.

Both roles use it: the leader to find dead workers, a solo worker to find islands without a
live owner. No clocks of other machines are ever compared.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Liveness:
    """Who is alive, judged the Kubernetes way: a heartbeat blob whose generation has not
    changed for ``timeout`` seconds on *our* monotonic clock is dead. No clocks of other
    machines are compared. (A worker that exits cleanly releases its islands in their HEADs,
    so nobody has to wait for it.)"""

    def __init__(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout, self.clock = timeout, clock
        self._seen: dict[str, tuple[int, float]] = {}
        self._changes: dict[str, int] = {}
        self._last_look: float | None = None

    def observe(self, worker: str, generation: int) -> None:
        last = self._seen.get(worker)
        if last is None or last[0] != generation:
            if last is not None and last[0] != -1:
                self._changes[worker] = self._changes.get(worker, 0) + 1
            self._seen[worker] = (generation, self.clock())

    def alive(self, worker: str) -> bool:
        last = self._seen.get(worker)
        # Never seen: we cannot tell yet, so wait a whole timeout before calling it dead.
        if last is None:
            self._seen[worker] = (-1, self.clock())
            return True
        return self.clock() - last[1] < self.timeout

    def restart(self) -> None:
        """Start every worker's timeout again from now: call it after a time in which we could
        not look (our own outage), so that our blindness is not counted against them."""
        now = self.clock()
        self._seen = {w: (gen, now) for w, (gen, _) in self._seen.items()}

    def watched(self, gap_limit: float) -> None:
        """Note that a listing of heartbeats just succeeded; when the previous one is more
        than ``gap_limit`` ago, we were blind in between: restart the clocks."""
        now = self.clock()
        last = self._last_look
        if last is not None and now - last > gap_limit:
            self.restart()
        self._last_look = now

    def confirmed(self, worker: str) -> bool:
        """Whether we have seen its heartbeat change at least once: only then do we know it
        is beating now, not a stale blob of a worker that died before we started watching."""
        return self._changes.get(worker, 0) >= 1

    def since(self, worker: str) -> float:
        """When (our clock) the worker's heartbeat generation last changed."""
        last = self._seen.get(worker)
        return last[1] if last is not None else self.clock()


__all__ = ["Liveness"]
