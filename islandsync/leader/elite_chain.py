"""The global elite of a leader's term: loaded from the bucket, merged, written as epochs.

At a term's start the newest readable epoch is loaded (older ones when it is corrupt); each
merge takes it with the elite frames of islands whose HEAD moved, and writes a new immutable
epoch, then ``elite/HEAD.json`` by CAS, when the result differs. Every write is made only
while ``leading()`` holds (the coordinator's lease check), and ``elite/HEAD.json`` no more
than once a second (``paced``). The previous global elite takes part in every merge, so the
global best never gets worse from one epoch to the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ContextManager

import numpy as np

from islandsync.bucket.elites import encode_elite, read_elite
from islandsync.bucket.heads import DEFAULT_READERS
from islandsync.bucket.layout import ELITE_HEAD_KEY, ELITE_PREFIX, elite_key, parse_elite_key
from islandsync.bucket.records import (
    EliteHead,
    Head,
    read_elite_head,
    stamp,
    write_fenced,
)
from islandsync.config import RunSpec, to_fitness
from islandsync.errors import CheckpointError, NotFound, PreconditionFailed, StoreError
from islandsync.leader.merge import Elite, IslandElites, merge_elites
from islandsync.leader.observer import LeaderObserver
from islandsync.store import BlobStore

log = logging.getLogger("islandsync.leader.coordinator")  # one logger for the leader's story

KEEP_ELITE_EPOCHS = 3


class EliteChain:
    """See module doc. ``head`` is (elite HEAD, its generation) as last read or written."""

    def __init__(self, store: BlobStore, spec: RunSpec, *, leading: Callable[[], bool],
                 paced: Callable[[str], ContextManager[None]], delete: Callable[[str], None],
                 observer: LeaderObserver | None = None, readers: int = DEFAULT_READERS,
                 forged: Callable[[int, str], bool] = lambda term, key: False) -> None:
        self.store, self.spec, self.readers = store, spec, readers
        self.observer = observer if observer is not None else LeaderObserver()
        self.leading, self.paced, self.delete = leading, paced, delete
        #: (a record's term above ours, its key) -> whether no lease vouches for it
        self.forged = forged
        self.newest_listed = 0  # the newest epoch listed: a new chain goes on after it
        self.islands = IslandElites(store, spec)
        self.global_elite: Elite | None = None
        self.head: tuple[EliteHead, Any] | None = None
        self.head_generation: Any = 0  # of an unreadable elite HEAD we will replace
        self.loaded = False
        self.term = 0
        #: Elite epochs in the bucket as this chain knows them (the load's one listing, then
        #: its own writes): pruning needs no listing of its own, a class A call per epoch.
        self.epochs: set[int] = set()

    def _load(self) -> None:
        """The newest readable elite epoch, falling back to older ones when it is corrupt.
        Marked loaded only once done: a StoreError on the way leaves it unloaded, and the
        merge waits, because merging without the previous global elite loses its best."""
        self.head_generation = 0
        try:
            self.head = read_elite_head(self.store)
        except CheckpointError as err:
            log.warning("coordinator: %s; starting a new elite chain", err)
            info = self.store.stat(ELITE_HEAD_KEY)
            self.head = None
            self.head_generation = info.generation if info else 0
        if self.head is not None and self.head[0].term > self.term \
                and self.forged(self.head[0].term, ELITE_HEAD_KEY):
            self.head, self.head_generation = None, self.head[1]
        keys = sorted((i.key for i in self.store.list(ELITE_PREFIX) if parse_elite_key(i.key)),
                      reverse=True)
        self.newest_listed = parse_elite_key(keys[0]) or 0 if keys else 0
        self.epochs = {e for k in keys if (e := parse_elite_key(k)) is not None}
        if self.head is not None:
            keys = [self.head[0].key] + [k for k in keys if k != self.head[0].key]
        for key in keys:
            try:
                elite = read_elite(self.store, key, spec=self.spec)
            except (CheckpointError, NotFound) as err:
                log.warning("coordinator: elite %s unreadable: %s", key, err)
                continue
            self.global_elite = elite  # type: ignore[assignment]
            break
        self.loaded = True

    def merge(self, heads: dict[int, Head], term: int) -> None:
        """Merge the elites of islands whose HEAD moved (and the global elite) into a new
        epoch, written for ``term`` while leading; nothing is written when nothing changed."""
        self.term = term
        try:
            if self.loaded:
                # One stat a cycle: elite/HEAD.json replaced behind our back (garbage, a
                # forged term) is read again, and replaced below even if nothing moved.
                info = self.store.stat(ELITE_HEAD_KEY)
                ours = self.head[1] if self.head is not None else self.head_generation
                self.loaded = info is not None and info.generation == ours or (
                    info is None and ours == 0)
            if not self.loaded:
                self._load()
        except StoreError as err:
            log.warning("coordinator: cannot read the global elite (%s); no merge this "
                        "cycle", err)
            return
        # elite/HEAD.json holds garbage (unreadable, or a term no lease vouches for): the
        # global elite is written again as a new epoch, whether or not anything moved.
        replace = self.head is None and self.head_generation != 0
        read = self.islands.refresh(heads, readers=self.readers)
        if read == 0 and self.global_elite is not None and not replace:
            return
        parts = self.islands.parts() + ([self.global_elite] if self.global_elite is not None else [])
        if not any(p[1].shape[0] for p in parts):
            return
        t0 = time.perf_counter()
        result = merge_elites(parts, self.spec.elite_size)
        seconds = time.perf_counter() - t0
        self.observer.on_merge(seconds, result.candidates, result.duplicates)
        if self.global_elite is not None and _same(result.elite, self.global_elite) \
                and not replace:
            return
        self._write(result.elite, result.candidates, result.duplicates)

    def _write(self, elite: Elite, candidates: int, duplicates: int) -> None:
        head = self.head
        gen = head[1] if head else self.head_generation
        # A new chain (the HEAD was garbage) starts after the newest epoch listed: epochs
        # are create-only names, and going back would only collide with them.
        epoch = (head[0].epoch if head else self.newest_listed) + 1
        for _ in range(5):  # a stale leader may have left a blob under the next name
            if not self.leading():
                return
            try:
                self.store.put(elite_key(epoch), encode_elite(elite, epoch=epoch,
                                                              term=self.term),
                               if_generation=0)
                break
            except PreconditionFailed:
                epoch += 1
        else:
            return
        best = to_fitness(self.spec.problem.direction, elite[1][0]) if elite[1].shape[0] \
            else None
        new = stamp(EliteHead(epoch=epoch, key=elite_key(epoch), term=self.term,
                              size=int(elite[1].shape[0]), best=best, duplicates=duplicates,
                              candidates=candidates))
        with self.paced(ELITE_HEAD_KEY):
            if not self.leading():
                return
            # Read back by nonce after a lost reply or our own resent write's 412: then
            # HEAD names our epoch, which must not be deleted.
            new_gen = write_fenced(self.store, ELITE_HEAD_KEY, new, EliteHead,
                                   if_generation=gen)
        if new_gen is None:
            log.warning("coordinator: elite HEAD changed under us; re-reading next cycle")
            self.loaded = False
            self.delete(elite_key(epoch))
            return
        self.head, self.global_elite = (new, new_gen), elite
        self.observer.on_global_best(best)
        log.info("merge: elite epoch %d (term %d): %d genomes from %d candidates, %d "
                 "duplicates dropped, best %s", epoch, self.term, new.size, candidates,
                 duplicates, "-" if best is None else f"{best:.6g}")
        self._prune(epoch)

    def _prune(self, newest: int) -> None:
        self.epochs.add(newest)
        for epoch in sorted(e for e in self.epochs if e <= newest - KEEP_ELITE_EPOCHS):
            self.delete(elite_key(epoch))
            self.epochs.discard(epoch)


def _same(a: Elite, b: Elite) -> bool:
    return a[2].shape == b[2].shape and bool(np.array_equal(a[2], b[2])) \
        and bool(np.array_equal(a[1], b[1]))


__all__ = ["KEEP_ELITE_EPOCHS", "EliteChain"]
