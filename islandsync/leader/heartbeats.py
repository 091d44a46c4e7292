"""The leader's view of the workers: their heartbeats and who is alive.

One listing of ``workers/`` per look; only heartbeats whose version moved since the last look
are read (several at a time), so a cycle costs a listing plus the changes, whatever the
number of workers. Liveness is judged on this process's monotonic clock by whether a
heartbeat's version moves (:class:`~islandsync.bucket.liveness.Liveness`); no other machine's
clock is compared, and neither is the bucket's against ours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from islandsync.bucket.heads import DEFAULT_READERS, read_concurrently
from islandsync.bucket.layout import WORKERS_PREFIX, heartbeat_key, parse_heartbeat_key
from islandsync.bucket.liveness import Liveness
from islandsync.bucket.records import Heartbeat, read_record
from islandsync.errors import CheckpointError, StoreError
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

#: A worker's heartbeat is deleted once it has not moved for this long, as we watched it.
DEAD_HEARTBEAT_S = 3600.0
#: Heartbeat states of a worker whose islands are not evolving: ``exited`` (it released them)
#: and ``stalled`` (its loop or a thread of it stopped; it says so once, then falls silent).
#: Either is not alive at once, rather than a worker timeout later: its islands move now.
NOT_WORKING = ("exited", "stalled")


class HeartbeatWatch:
    """The workers' heartbeats, re-read only when their version moves (see module doc)."""

    def __init__(self, store: BlobStore, timeout: float, *,
                 clock: Callable[[], float], readers: int = DEFAULT_READERS) -> None:
        self.store, self.clock, self.readers = store, clock, readers
        self.liveness = Liveness(timeout, clock)
        self.timeout = timeout
        #: worker -> (version, heartbeat) as of the last look
        self.heartbeats: dict[str, tuple[Any, Heartbeat]] = {}

    def look(self, gap_limit: float) -> tuple[dict[str, tuple[Any, Heartbeat]], set[str]]:
        """(every readable heartbeat, the workers alive). ``gap_limit``: a look later than
        this after the last one means we were blind in between (our own outage): that time is
        not counted against the workers. StoreError passes (the cycle retries); a bad record
        skips its worker only, with one warning."""
        listing = self.store.list(WORKERS_PREFIX)
        self.liveness.watched(gap_limit)
        seen: dict[str, tuple[Any, Heartbeat]] = {}
        changed = []
        for info in listing:
            worker = parse_heartbeat_key(info.key)
            if worker is None:
                continue
            self.liveness.observe(worker, info.generation)
            cached = self.heartbeats.get(worker)
            if cached is not None and cached[0] == info.generation:
                seen[worker] = cached
            else:
                changed.append((worker, info))
        for (worker, info), result in read_concurrently(
                lambda item: read_record(self.store, item[1].key, Heartbeat), changed,
                readers=self.readers):
            if isinstance(result, StoreError):
                raise result
            if isinstance(result, Exception):
                log.warning("coordinator: ignoring heartbeat %s: %s", info.key, _brief(result))
                continue
            if result is not None:
                seen[worker] = (info.generation, result[0])
        self.heartbeats = seen
        return seen, {w for w, (_, hb) in seen.items()
                      if hb.state not in NOT_WORKING and self.liveness.alive(w)}

    def next_death(self) -> float | None:
        """When (our clock) the first worker held alive is judged dead unless its heartbeat
        moves; None when none is alive."""
        return min((self.liveness.since(w) + self.timeout
                    for w, (_, hb) in self.heartbeats.items()
                    if hb.state not in NOT_WORKING and self.liveness.alive(w)),
                   default=None)

    def long_dead(self, alive: set[str], seconds: float = DEAD_HEARTBEAT_S) -> list[str]:
        """Heartbeat keys of workers not alive whose heartbeat has not moved for ``seconds``
        as we watched it (a new leader watches that long before deleting any)."""
        now = self.clock()
        return [heartbeat_key(w) for w in self.heartbeats
                if w not in alive and now - self.liveness.since(w) > seconds]


def _brief(err: Exception) -> str:
    return str(err) if isinstance(err, CheckpointError) else f"{type(err).__name__}: {err}"


__all__ = ["DEAD_HEARTBEAT_S", "NOT_WORKING", "HeartbeatWatch"]
