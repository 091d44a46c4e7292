"""The background checkpoint writer of a worker.

At most one upload is in flight and each island keeps at most one pending snapshot: a newer
one replaces it (the newest wins, memory stays bounded however long the bucket is down). Each
upload writes the immutable checkpoint blob, then advances the island's HEAD by CAS.

A failed CAS is read back before anything is decided: a write of ours whose reply was lost
may have landed (the stamped HEAD is kept across retries, so its nonce tells). Only when
HEAD is someone else's is the island lost, which the worker hears through ``on_lost``. Only
blobs this uploader wrote are ever deleted, and only once no HEAD's lineage names them.
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
from islandsync.bucket.layout import (
    checkpoint_key,
    checkpoint_tag,
    tag_writer,
)
from islandsync.bucket.records import (
    MAX_PREVIOUS,
    UPLOAD_BUCKETS,
    Head,
    read_head,
    stamp,
    write_head,
)
from islandsync.errors import (
    CheckpointError,
    IslandSyncError,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from islandsync.store import BlobStore
from islandsync.worker.health import Restarts

log = logging.getLogger(__name__)




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
    uploaded_generation: int = -1
    current_key: str | None = None  # the checkpoint HEAD names
    previous: list = field(default_factory=list)  # the lineage before current_key
    best: float | None = None
    # Blobs this uploader wrote (or may have: a put whose reply was lost) for the island,
    # oldest first: the only blobs it ever deletes, and only once off HEAD's lineage.
    written: list = field(default_factory=list)
    stored: str | None = None  # the last blob whose put returned
    # The stamped HEAD of a write whose outcome is unknown (its reply was lost): retried as
    # is, so that reading HEAD back and finding its nonce tells that it landed.
    attempt: Head | None = None
    nonces: collections.deque = field(default_factory=lambda: collections.deque(maxlen=64))


#: HEAD writes one upload makes at most: a landed write of ours found by reading HEAD back
#: is built upon once; a HEAD that keeps changing under us is retried later.
MAX_REBASES = 3
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
        on_fatal: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.owner, self.tag = store, owner, tag
        # ``keep`` is no longer used: retention keeps HEAD's whole lineage (see _retain).
        self.elite, self.meta, self.keep = elite, meta, keep
        self.to_user, self.on_lost = to_user, on_lost
        self.max_backoff = max_backoff
        self.stats = UploadStats()
        self.restarts = Restarts("uploader", on_fatal)
        self._islands: dict[int, _Island] = {}
        self._pending: dict[int, tuple[IslandSnapshot, bool]] = {}
        self._busy = False
        self._closing = False
        self._stopped = False
        self._backoff = 0.0
        self._cond = threading.Condition()
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="islandsync-uploader", daemon=True)
        self._thread.start()

    # -- called by the worker loop -------------------------------------------------------

    def adopt(self, island: int, head_generation: int, keys: list[str] | None = None,
              resumed: tuple[int, str] | None = None, lineage: list[str] | None = None) -> None:
        """Start writing for an island just claimed at HEAD generation ``head_generation``;
        ``resumed`` is (generation, key) of the checkpoint it was loaded from, so that a
        checkpoint at that same generation is not written a second time. ``keys`` (the
        island's checkpoints when claimed) are not ours, so never deleted here: the leader's
        housekeeping sweeps what no lineage names."""
        state = _Island(head_generation)
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

    def also_ours(self, island: int, nonce: str) -> None:
        """A HEAD write of this process made elsewhere (a duplicate claim by our bucket
        thread): reading HEAD back, the uploader takes it for its own (see ``_is_ours``)."""
        with self._cond:
            state = self._islands.get(island)
            if state is not None and nonce:
                state.nonces.append(nonce)

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

    def alive(self) -> bool:
        """False once the thread has given up after repeated unexpected failures."""
        return self.restarts.error is None and (self._thread.is_alive() or self._closing)

    @property
    def error(self) -> str | None:
        """Why the thread stopped, when it stopped on an unexpected error."""
        return self.restarts.error

    def flush(self, timeout: float) -> bool:
        """Wait until everything submitted is written (or given up); False on timeout, or at
        once when the thread is dead (nothing would ever write it)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (self._pending or self._busy) and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return not (self._pending or self._busy)

    def close(self, timeout: float = 60.0) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        return done

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                try:
                    if not self._step():
                        return
                except Exception as err:  # a bug, not the bucket: restart, or stop the worker
                    if not self.restarts.failed(err):
                        return
                    self._pause(1.0)
        finally:
            with self._cond:
                self._stopped, self._busy = True, False
                self._cond.notify_all()

    def _step(self) -> bool:
        """One upload; False when closing with nothing left to write."""
        with self._cond:
            while not self._pending and not self._closing:
                self._cond.wait()
            if self._closing and not self._pending:
                return False
            island = next(iter(self._pending))  # oldest submission first
            snap, release = self._pending.pop(island)
            self._busy = True
        try:
            self._upload(snap, release)
            self._backoff = 0.0
        except StoreError as err:
            self.stats.failures += 1
            self._warn(f"checkpoint of island {island} not written yet: {err}")
            self._requeue(island, snap, release)
            self._backoff = min(self.max_backoff, max(0.5, self._backoff * 2))
        except IslandSyncError as err:  # cannot encode: a bug, don't spin on it
            log.error("checkpoint of island %d dropped: %s", island, err)
        except Exception:
            self._requeue(island, snap, release)
            raise
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        if self._backoff:
            return self._pause(self._backoff)
        return True

    def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` whatever is submitted meanwhile (a ``submit()`` notifies the
        condition: were it to end the pause, every checkpoint interval would retry, and
        upload a blob, at the loop's pace through an outage); False when closing."""
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._closing and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            return not self._closing  # closing: the final flush gave up on the bucket

    def _requeue(self, island: int, snap: IslandSnapshot, release: bool) -> None:
        with self._cond:  # keep it unless a newer snapshot arrived meanwhile
            if island in self._islands and island not in self._pending:
                self._pending[island] = (snap, release)

    def _upload(self, snap: IslandSnapshot, release: bool) -> None:
        with self._cond:
            state = self._islands.get(snap.island)
        if state is None:
            return
        t0 = time.perf_counter()
        if snap.generation == state.uploaded_generation and state.current_key is not None:
            if not release:
                return
            key = state.current_key  # the same checkpoint, now released
        else:
            key = checkpoint_key(snap.island, snap.generation, self.tag)
            if state.stored != key and self._unsettled(state):
                # The blob already up waits for its HEAD write: settle that first, so that
                # an outage of HEAD writes leaves one blob above HEAD per island, not one per
                # checkpoint interval (nor does a worker that exits meanwhile leave more).
                if not self._settle(snap.island, state):
                    return  # lost, or released
            if state.stored != key:
                blob = encode_island(snap, elite=self.elite,
                                     meta={**self.meta, "owner": self.owner})
                if key not in state.written:  # before the put: its reply may be lost
                    state.written.append(key)
                self.store.put(key, blob)
                state.stored = key
                raw = sum(a.nbytes for a in snap.arrays.values())
                self.stats.last_raw, self.stats.last_compressed = raw, len(blob)
                self.stats.bytes_raw += raw
                self.stats.bytes_compressed += len(blob)
        for _ in range(MAX_REBASES):
            head = self._head_for(state, snap, key, release)
            try:
                generation = write_head(self.store, head, if_generation=state.head_generation)
            except PreconditionFailed:
                current = self._read_back(snap.island, state, head)
                if current is None:
                    return
                found, generation = current
                if found.nonce != head.nonce:
                    self._rebase(state, found, generation)
                    continue  # write this snapshot on top of the write of ours that landed
            self._landed(snap.island, state, head, generation, release)
            self.stats.observe(time.perf_counter() - t0)
            return
        raise StoreError(f"HEAD of island {snap.island} keeps changing under our writes")

    @staticmethod
    def _unsettled(state: _Island) -> bool:
        """Whether the last blob put waits for a HEAD write of unknown outcome."""
        return state.attempt is not None and state.stored is not None \
            and state.attempt.checkpoint == state.stored != state.current_key

    def _settle(self, island: int, state: _Island) -> bool:
        """Write (again) the HEAD naming the blob already up; False when the island is no
        longer ours to write (lost, or that HEAD released it). StoreError passes."""
        head = state.attempt
        if head is None:
            return True
        try:
            generation = write_head(self.store, head, if_generation=state.head_generation)
        except PreconditionFailed:
            current = self._read_back(island, state, head)
            if current is None:
                return False
            found, generation = current
            if found.nonce != head.nonce:
                self._rebase(state, found, generation)
                return True
        self._landed(island, state, head, generation, head.released)
        return not head.released

    def _read_back(self, island: int, state: _Island, head: Head) -> tuple[Head, int] | None:
        """After our HEAD write was refused: maybe another worker owns the island now; maybe
        an earlier write of ours landed and only its reply was lost. HEAD as read back when
        it is ours, else None (the island is dropped here). StoreError passes: the write is
        retried, and decided, later."""
        try:
            current = read_head(self.store, island)
        except CheckpointError as err:
            log.warning("island %d: HEAD unreadable after our write failed: %s", island, err)
            current = None
        if current is None or not self._is_ours(current[0], state, head):
            self._lose(island, state, current)
            return None
        return current

    def _head_for(self, state: _Island, snap: IslandSnapshot, key: str, release: bool) -> Head:
        """The HEAD to write: the attempt in flight when it says the same (so its nonce is
        kept across retries), else a freshly stamped one."""
        previous = state.previous
        if key != state.current_key and state.current_key is not None:
            previous = [state.current_key, *state.previous][:MAX_PREVIOUS]
        head = Head(island=snap.island, checkpoint=key, generation=snap.generation,
                    evals=snap.evals, best=self.to_user(snap.best_score), owner=self.owner,
                    released=release, previous=previous)
        if state.attempt is not None and _same(state.attempt, head):
            return state.attempt
        state.attempt = stamp(head)
        state.nonces.append(state.attempt.nonce)
        return state.attempt

    @staticmethod
    def _is_ours(found: Head, state: _Island, head: Head) -> bool:
        """Whether HEAD as read back is a write of this process: one of our nonces (ours, or
        a claim of this process's, :meth:`also_ours`), nothing else. Owner and blob tag do
        not vouch: a process restarted under our worker id claims the island with a HEAD of
        our owner naming our blob (a claim is stamped afresh, so it never carries our
        nonce), and a zombie that took that for its own wrote on top of the claim, forking
        the lineage."""
        return bool(found.nonce) and (found.nonce == head.nonce or found.nonce in state.nonces)

    def _rebase(self, state: _Island, found: Head, generation: int) -> None:
        state.head_generation = generation
        state.current_key, state.previous = found.checkpoint, list(found.previous)
        state.uploaded_generation, state.best = found.generation, found.best
        state.attempt = None
        state.nonces.clear()

    def _landed(self, island: int, state: _Island, head: Head, generation: int,
                release: bool) -> None:
        self._rebase(state, head, generation)
        self._retain(state)
        if release:
            with self._cond:
                self._islands.pop(island, None)

    def _retain(self, state: _Island) -> None:
        """Delete the blobs we wrote that HEAD's lineage (current and MAX_PREVIOUS previous)
        no longer names; every blob on it stays, for readers to fall back to."""
        lineage = {state.current_key, *state.previous}
        kept = []
        for key in state.written:
            if key in lineage:
                kept.append(key)
            else:
                self._delete_quietly(key)
        state.written = kept

    def _lose(self, island: int, state: _Island, current: tuple[Head, int] | None) -> None:
        log.info("island %d belongs to another worker now; dropping it", island)
        with self._cond:
            self._islands.pop(island, None)
            self._pending.pop(island, None)
        if current is not None:
            # Ours that the new owner's HEAD does not name will never be named again. With
            # HEAD unreadable we cannot tell: delete nothing, housekeeping sweeps later.
            named = set(current[0].lineage())
            for key in state.written:
                if key not in named:
                    self._delete_quietly(key)
        self.on_lost(island)

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


def _same(a: Head, b: Head) -> bool:
    stamp_fields = {"nonce", "written_at"}
    return a.model_dump(exclude=stamp_fields) == b.model_dump(exclude=stamp_fields)


# checkpoint_tag and tag_writer are the layout's, re-exported where callers have found them.
__all__ = ["UploadStats", "Uploader", "checkpoint_tag", "tag_writer"]
