"""Every island's HEAD for the cost of one listing: only HEADs that moved are read.

A listing of ``islands/`` returns the version of every island's HEAD (and every checkpoint
key), so a reader that keeps the HEADs it read, by the version the listing showed, needs per
look one listing (a page per 1000 blobs on GCS and S3) plus one read per HEAD that moved
since its last look, instead of one read per island. Versions are compared only for
equality, and always listing against listing (a store may spell a version differently in a
listing and in a read; comparing like with like costs at most one extra read).

The reads that remain go out concurrently on a bounded pool of threads: a look at 512 islands
is a few round trips, not 512 (every store is safe to share between threads).

Used by the leader, ``status`` and solo workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from islandsync.bucket.layout import ISLANDS_PREFIX, parse_checkpoint_key, parse_head_key
from islandsync.bucket.records import Head, read_head
from islandsync.errors import CheckpointError, StoreError
from islandsync.store.base import BlobInfo, BlobStore, Version

log = logging.getLogger(__name__)

#: Reads in flight at once: enough to hide a 50 ms round trip behind 16, few enough that a
#: leader never opens a connection storm against a bucket (or a notebook's small pool).
DEFAULT_READERS = 16

I = TypeVar("I")
R = TypeVar("R")


#: The reader threads, shared by every caller in this process and kept between calls: a
#: store keeps one client (and its open connections) per thread, so threads made afresh for
#: each call would open new connections, and build new clients, every cycle.
_pools: dict[int, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()
_in_reader = threading.local()


def _pool(readers: int) -> ThreadPoolExecutor:
    with _pools_lock:
        pool = _pools.get(readers)
        if pool is None:
            pool = _pools[readers] = ThreadPoolExecutor(
                max_workers=readers, thread_name_prefix="islandsync-read")
        return pool


def read_concurrently(fn: Callable[[I], R], items: Iterable[I], *,
                      readers: int = DEFAULT_READERS) -> list[tuple[I, R | Exception]]:
    """``fn(item)`` for every item, at most ``readers`` at a time, in the items' order; an
    exception is returned in place of its result (the caller decides, per item, what a
    failure means). One item, ``readers <= 1``, or a call from a reader thread itself (which
    must not wait on its own pool) runs on the calling thread."""
    items = list(items)

    def one(item: I) -> R | Exception:
        try:
            return fn(item)
        except Exception as err:  # noqa: BLE001 - handed to the caller, per item
            return err

    def marked(item: I) -> R | Exception:
        _in_reader.active = True
        return one(item)

    if len(items) <= 1 or readers <= 1 or getattr(_in_reader, "active", False):
        return [(item, one(item)) for item in items]
    return list(zip(items, _pool(readers).map(marked, items)))


@dataclass
class HeadView:
    """What one look saw."""

    heads: dict[int, Head]  # every readable HEAD (those that failed to read: as last seen)
    #: Islands whose entry in ``heads`` (or absence from it) is as of this listing. A HEAD
    #: that could not be read is served from the last look and is *not* fresh: nothing that
    #: deletes blobs may trust it.
    fresh: set[int]
    #: island -> [(generation, key)] of its checkpoints, as the same listing showed them.
    checkpoints: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    read: int = 0  # HEADs read in this look
    failed: int = 0  # HEAD reads that met bucket trouble (retried on the next look)
    listed: dict[int, BlobInfo] = field(default_factory=dict)  # each HEAD's listing entry
    #: Islands whose HEAD is there but not a valid record (skipped), with why.
    invalid: dict[int, str] = field(default_factory=dict)
    #: The version each HEAD in ``heads`` was read at (what a CAS on it must name).
    read_at: dict[int, Version] = field(default_factory=dict)


class HeadWatch:
    """The HEADs of islands ``0..islands-1``, re-read only when their version moves."""

    def __init__(self, store: BlobStore, islands: int, *, readers: int = DEFAULT_READERS,
                 what: str = "heads") -> None:
        self.store, self.islands, self.readers, self.what = store, islands, readers, what
        # island -> (version the listing showed when we read it, the HEAD or None if invalid,
        # the version the read returned: newer than the listing's when HEAD moved in between)
        self._cache: dict[int, tuple[Version, Head | None, Version]] = {}
        self._why: dict[int, str] = {}  # why an island's cached HEAD is None

    def look(self, skip: Collection[int] = ()) -> HeadView:
        """One listing, then the HEADs that moved, except those of islands in ``skip`` (a
        worker's own: it knows them, and they move with every upload), which stay as last
        read and are not fresh. A failed listing raises StoreError (the bucket is
        unreachable); a failed read keeps that island's previous HEAD, not fresh."""
        listing = self.store.list(ISLANDS_PREFIX)
        versions: dict[int, Version] = {}
        listed: dict[int, BlobInfo] = {}
        checkpoints: dict[int, list[tuple[int, str]]] = {}
        for info in listing:
            island = parse_head_key(info.key)
            if island is not None:
                if island < self.islands:  # a stray HEAD beyond the run is never read
                    versions[island], listed[island] = info.generation, info
                continue
            parsed = parse_checkpoint_key(info.key)
            if parsed is not None and parsed[0] < self.islands:
                checkpoints.setdefault(parsed[0], []).append((parsed[1], info.key))
        for island in [i for i in self._cache if i not in versions]:
            del self._cache[island]  # its HEAD is gone
            self._why.pop(island, None)
        moved = sorted(i for i, v in versions.items()
                       if (i not in self._cache or self._cache[i][0] != v) and i not in skip)
        failed = 0
        for island, result in read_concurrently(lambda i: read_head(self.store, i), moved,
                                                readers=self.readers):
            if isinstance(result, StoreError):
                failed += 1  # keep what we had; the version still differs, so retried next look
                continue
            if isinstance(result, Exception):
                # A bad record skips that island until its HEAD moves again: warned once per
                # version, not once per look.
                why = result if isinstance(result, CheckpointError) \
                    else f"{type(result).__name__}: {result}"
                log.warning("%s: island %d skipped: %s", self.what, island, why)
                self._cache[island] = (versions[island], None, versions[island])
                self._why[island] = str(why)
                continue
            self._cache[island] = (versions[island], *result) if result is not None \
                else (versions[island], None, versions[island])
            self._why.pop(island, None)
        heads = {i: h for i, (_, h, _) in self._cache.items() if h is not None}
        read_at = {i: v for i, (_, h, v) in self._cache.items() if h is not None}
        invalid = {i: why for i, why in self._why.items() if i in listed and i in self._cache
                   and self._cache[i][1] is None}
        fresh = {i for i in range(self.islands)
                 if i not in versions or (i in self._cache and self._cache[i][0] == versions[i])}
        return HeadView(heads, fresh, checkpoints, read=len(moved) - failed, failed=failed,
                        listed=listed, invalid=invalid, read_at=read_at)


__all__ = ["DEFAULT_READERS", "HeadView", "HeadWatch", "read_concurrently"]
