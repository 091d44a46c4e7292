"""The leader's view of the workers: their heartbeats and who is alive.

A look reads every known worker's heartbeat by GET (class B, several at a time): its version
for liveness, its body for rates. A listing of ``workers/`` (class A, twelve times the price)
finds new workers: at the first look, every ``listing_s``, and every ``waiting_s`` while
islands wait for a worker; after a listing only the heartbeats whose version moved are read.
So liveness costs one class B call per worker a cycle, and no listing. Liveness is judged on
this process's monotonic clock by whether a heartbeat's version moves (:class:`~islandsync.bucket.liveness.Liveness`); no other machine's
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
                 clock: Callable[[], float], readers: int = DEFAULT_READERS,
                 listing_s: float = 0.0, waiting_s: float = 0.0) -> None:
        self.store, self.clock, self.readers = store, clock, readers
        self.liveness = Liveness(timeout, clock)
        self.timeout = timeout
        #: worker -> (version, heartbeat) as of the last look
        self.heartbeats: dict[str, tuple[Any, Heartbeat]] = {}
        self._known: set[str] | None = None  # workers whose heartbeats we read; None: list
        #: A listing at most every ``listing_s`` (0: every look), and every ``waiting_s``
        #: while islands wait for a worker (a new one's first heartbeat shows within that).
        self.listing_s, self.waiting_s = listing_s, waiting_s
        self._listed_at = float("-inf")  # our clock

    def look(self, gap_limit: float, *, waiting: bool = False,
             ) -> tuple[dict[str, tuple[Any, Heartbeat]], set[str]]:
        """(every readable heartbeat, the workers alive). ``waiting``: islands wait for a
        worker, so new ones are looked for sooner. ``gap_limit``: a look later than this
        after the last one means we were blind in between (our own outage): that time is
        not counted against the workers. StoreError passes (the cycle retries); a bad record
        skips its worker only, with one warning."""
        since = self.clock() - self._listed_at
        if self._known is None or since >= self.listing_s or (waiting
                                                              and since >= self.waiting_s):
            seen, reads = self._listed()
            self._listed_at = self.clock()
        else:
            seen, reads = {}, [(w, heartbeat_key(w), None) for w in sorted(self._known)]
        for (worker, key, version), result in read_concurrently(
                lambda item: read_record(self.store, item[1], Heartbeat), reads,
                readers=self.readers):
            if isinstance(result, StoreError):
                raise result
            if isinstance(result, Exception):
                log.warning("coordinator: ignoring heartbeat %s: %s", key, _brief(result))
                continue
            if result is None:  # gone since we learnt of it: a worker long dead, deleted
                self._known.discard(worker)  # type: ignore[union-attr]
                continue
            if version is None:
                self.liveness.observe(worker, result[1])
            seen[worker] = (result[1], result[0])
        self.liveness.watched(gap_limit)
        self.heartbeats = seen
        return seen, {w for w, (_, hb) in seen.items()
                      if hb.state not in NOT_WORKING and self.liveness.alive(w)}

    def _listed(self) -> tuple[dict[str, tuple[Any, Heartbeat]], list[tuple[str, str, Any]]]:
        """One listing: every worker's version observed; the heartbeats unchanged since the
        last look as they were, and the changed ones to read."""
        seen: dict[str, tuple[Any, Heartbeat]] = {}
        changed = []
        self._known = set()
        for info in self.store.list(WORKERS_PREFIX):
            worker = parse_heartbeat_key(info.key)
            if worker is None:
                continue
            self._known.add(worker)
            self.liveness.observe(worker, info.generation)
            cached = self.heartbeats.get(worker)
            if cached is not None and cached[0] == info.generation:
                seen[worker] = cached
            else:
                changed.append((worker, info.key, info.generation))
        return seen, changed

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
