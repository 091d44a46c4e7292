"""The background checkpoint writer of a worker.

At most one upload is in flight and each island keeps at most one pending snapshot: a newer
one replaces it (the newest wins, memory stays bounded however long the bucket is down). Each
upload writes the immutable checkpoint blob, then advances the island's HEAD by CAS; a failed
CAS means another worker owns the island now, which the worker hears through ``on_lost``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.layout import checkpoint_key
from islandsync.bucket.records import MAX_PREVIOUS, Head, write_head
from islandsync.errors import IslandSyncError, NotFound, PreconditionFailed, StoreError
from islandsync.store import BlobStore

log = logging.getLogger(__name__)


#: Upper bounds (seconds) of the cumulative upload-time histogram heartbeats carry.
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass
class UploadStats:
    uploads: int = 0
    failures: int = 0
    upload_seconds: collections.deque = field(default_factory=lambda: collections.deque(maxlen=512))
    bytes_raw: int = 0
    bytes_compressed: int = 0
    last_raw: int = 0
    last_compressed: int = 0
    seconds_sum: float = 0.0
    seconds_buckets: list = field(default_factory=lambda: [0] * (len(UPLOAD_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        self.uploads += 1
        self.upload_seconds.append(seconds)
        self.seconds_sum += seconds
        for k, bound in enumerate(UPLOAD_BUCKETS):
            if seconds <= bound:
                self.seconds_buckets[k] += 1
        self.seconds_buckets[-1] += 1

    def heartbeat(self) -> dict:
        """The ``checkpoint`` field of a heartbeat: cumulative, Prometheus-style."""
        buckets = {f"{b:g}": n for b, n in zip(UPLOAD_BUCKETS, self.seconds_buckets)}
        buckets["+Inf"] = self.seconds_buckets[-1]
        return {"uploads": self.uploads, "failures": self.failures,
                "seconds_sum": round(self.seconds_sum, 6), "seconds_buckets": buckets,
                "bytes_raw_total": self.bytes_raw, "bytes_compressed_total": self.bytes_compressed}


@dataclass
class _Island:
    head_generation: int
    keys: collections.deque  # this island's checkpoint keys we know of, oldest first
    uploaded_generation: int = -1
    current_key: str | None = None  # the checkpoint HEAD names
    previous: list = field(default_factory=list)  # the lineage before current_key
    best: float | None = None


class Uploader:
    """Writes island checkpoints in a background thread (see module doc)."""

    def __init__(
        self,
        store: BlobStore,
        *,
        owner: str,
        tag: str,
        elite: int,
        meta: dict[str, Any],
        to_user: Callable[[float], float | None],
        on_lost: Callable[[int], None],
        keep: int = 3,
        max_backoff: float = 30.0,
    ) -> None:
        self.store, self.owner, self.tag = store, owner, tag
        self.elite, self.meta, self.keep = elite, meta, keep
        self.to_user, self.on_lost = to_user, on_lost
        self.max_backoff = max_backoff
        self.stats = UploadStats()
        self._islands: dict[int, _Island] = {}
        self._pending: dict[int, tuple[IslandSnapshot, bool]] = {}
        self._busy = False
        self._closing = False
        self._cond = threading.Condition()
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="islandsync-uploader", daemon=True)
        self._thread.start()

    # -- called by the worker loop -------------------------------------------------------

    def adopt(self, island: int, head_generation: int, keys: list[str],
              resumed: tuple[int, str] | None = None, lineage: list[str] | None = None) -> None:
        """Start writing for an island just claimed at HEAD generation ``head_generation``;
        ``resumed`` is (generation, key) of the checkpoint it was loaded from, so that a
        checkpoint at that same generation is not written a second time."""
        state = _Island(head_generation, collections.deque(sorted(keys)))
        lineage = list(lineage or [])
        if resumed is not None:
            state.uploaded_generation, state.current_key = resumed
            # The lineage continues from the checkpoint we resumed from (it may be an older
            # one than HEAD named, when that was corrupt).
            if resumed[1] in lineage:
                lineage = lineage[lineage.index(resumed[1]) + 1:]
            else:
                lineage = []
        state.previous = lineage[:MAX_PREVIOUS]
        with self._cond:
            self._islands[island] = state

    def submit(self, snap: IslandSnapshot, *, release: bool = False) -> None:
        with self._cond:
            if snap.island not in self._islands:
                return  # lost or never ours: never write for it again
            _, was_release = self._pending.get(snap.island, (None, False))
            self._pending[snap.island] = (snap, release or was_release)
            self._cond.notify_all()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending) + (1 if self._busy else 0)

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted is written (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 60.0) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        return done

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._closing and not self._pending:
                    return
                island = next(iter(self._pending))  # oldest submission first
                snap, release = self._pending.pop(island)
                self._busy = True
            try:
                self._upload(snap, release)
                backoff = 0.0
            except StoreError as err:
                self.stats.failures += 1
                self._warn(f"checkpoint of island {island} not written yet: {err}")
                with self._cond:  # keep it unless a newer snapshot arrived meanwhile
                    if island in self._islands and island not in self._pending:
                        self._pending[island] = (snap, release)
                backoff = min(self.max_backoff, max(0.5, backoff * 2))
            except IslandSyncError as err:  # cannot encode: a bug, don't spin on it
                log.error("checkpoint of island %d dropped: %s", island, err)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if backoff:
                with self._cond:
                    if self._closing:
                        return  # the final flush has given up on an unreachable bucket
                    self._cond.wait(backoff)

    def _upload(self, snap: IslandSnapshot, release: bool) -> None:
        with self._cond:
            state = self._islands.get(snap.island)
        if state is None:
            return
        t0 = time.perf_counter()
        key = state.current_key
        if snap.generation != state.uploaded_generation or key is None:
            key = checkpoint_key(snap.island, snap.generation, self.tag)
            blob = encode_island(snap, elite=self.elite, meta={**self.meta, "owner": self.owner})
            self.store.put(key, blob)
            raw = sum(a.nbytes for a in snap.arrays.values())
            self.stats.last_raw, self.stats.last_compressed = raw, len(blob)
            self.stats.bytes_raw += raw
            self.stats.bytes_compressed += len(blob)
        elif not release:
            return
        best = self.to_user(snap.best_score)
        previous = state.previous
        if key != state.current_key and state.current_key is not None:
            previous = [state.current_key, *state.previous][:MAX_PREVIOUS]
        head = Head(island=snap.island, checkpoint=key, generation=snap.generation,
                    evals=snap.evals, best=best, owner=self.owner, released=release,
                    previous=previous)
        try:
            state.head_generation = write_head(self.store, head,
                                               if_generation=state.head_generation)
        except PreconditionFailed:
            log.info("island %d belongs to another worker now; dropping it", snap.island)
            with self._cond:
                self._islands.pop(snap.island, None)
                self._pending.pop(snap.island, None)
            self._delete_quietly(key)  # an orphan nobody's HEAD will ever name
            self.on_lost(snap.island)
            return
        self.stats.observe(time.perf_counter() - t0)
        state.best = best
        if key != state.current_key:
            state.uploaded_generation, state.current_key = snap.generation, key
            state.previous = previous
            state.keys.append(key)
        while len(state.keys) > self.keep:
            self._delete_quietly(state.keys.popleft())
        if release:
            with self._cond:
                self._islands.pop(snap.island, None)

    def _delete_quietly(self, key: str) -> None:
        try:
            self.store.delete(key)
        except (NotFound, StoreError):
            pass  # housekeeping: the coordinator sweeps what is left

    def _warn(self, message: str) -> None:
        # Once a minute at most: an outage of hours must not flood a notebook.
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning(message)
