"""How a worker's background threads survive a bug, and when they give up.

Each background thread (uploader, bucket poll, heartbeat) runs its loop one iteration at a
time; an exception nobody expected (a bug, not a bucket outage) is logged with its traceback
and the loop goes on. Past :data:`MAX_RESTARTS` such failures within :data:`WINDOW_S`
seconds the thread stops and asks its worker to stop with the real error: a worker whose
checkpoints, claims or heartbeats silently stopped would evolve for nothing while its
heartbeat said all was well.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: Unexpected failures a thread survives within :data:`WINDOW_S` before it gives up.
MAX_RESTARTS = 3
WINDOW_S = 300.0


def _ignore(reason: str) -> None:
    """A thread without a worker to stop (tests, tools): the log line is all there is."""


class Restarts:
    """Counts one thread's unexpected failures on this process's monotonic clock."""

    def __init__(self, name: str, on_fatal: Callable[[str], None] | None = None, *,
                 limit: int = MAX_RESTARTS, window: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.on_fatal = name, on_fatal or _ignore
        self.limit, self.window, self.clock = limit, window, clock
        self._times: collections.deque[float] = collections.deque()
        self.error: str | None = None  # set once the thread has given up

    def failed(self, err: BaseException) -> bool:
        """Note an unexpected exception (call it from the ``except`` block, so the traceback
        is logged); True while the thread may carry on, False once it must stop."""
        now = self.clock()
        self._times.append(now)
        while self._times and now - self._times[0] > self.window:
            self._times.popleft()
        if len(self._times) <= self.limit:
            log.exception("%s thread failed (%d of %d allowed within %.0f s); restarting it",
                          self.name, len(self._times), self.limit, self.window)
            return True
        self.error = f"{self.name} thread failed: {type(err).__name__}: {err}"
        log.exception("%s thread failed %d times within %.0f s; stopping the worker",
                      self.name, len(self._times), self.window)
        self.on_fatal(self.error)
        return False


__all__ = ["MAX_RESTARTS", "Restarts", "WINDOW_S"]
