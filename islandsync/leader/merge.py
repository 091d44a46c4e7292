"""The leader's merge: every island's elite frame into one deduplicated global top-N.

Each island's newest checkpoint starts with its elite frames (``elite.*``), so the merge reads
a few KiB per island with a ranged read whatever the population size, and only for islands
whose HEAD moved since the last merge, several at a time. The previous global elite takes part in every merge,
so the global best can never get worse from one epoch to the next.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from islandsync.bucket import codec
from islandsync.bucket.checkpoints import ELITE_FRAMES, check_frames
from islandsync.bucket.heads import DEFAULT_READERS, read_concurrently
from islandsync.bucket.records import Head
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError, NotFound, StoreError
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

Elite = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # genomes, scores, ids, origin


@dataclass(frozen=True)
class MergeResult:
    elite: Elite
    candidates: int  # rows that took part
    duplicates: int  # rows dropped because a better (or equal) copy of the same id was kept


def empty_elite(width: int, dtype: np.dtype) -> Elite:
    return (np.zeros((0, width), dtype), np.zeros(0, np.float32), np.zeros(0, np.int64),
            np.zeros(0, np.int64))


def merge_elites(parts: Sequence[Elite], top: int) -> MergeResult:
    """Concatenate ``parts``, keep the best-scoring copy of each genome id, keep the ``top``
    lowest scores (minimisation scores), sorted best first. Rows with a non-finite score never
    enter the elite. Ties are broken by position, so the result is deterministic."""
    parts = [p for p in parts if p[1].shape[0]]
    if not parts:
        raise ValueError("merge_elites needs at least one non-empty part")
    genomes = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts]).astype(np.float64, copy=False)
    ids = np.concatenate([p[2] for p in parts]).astype(np.int64, copy=False)
    origin = np.concatenate([p[3] for p in parts]).astype(np.int64, copy=False)
    candidates = scores.shape[0]
    finite = np.flatnonzero(np.isfinite(scores))
    # Sort by id, then score: the first row of each run of equal ids is its best copy.
    order = finite[np.lexsort((scores[finite], ids[finite]))]
    sorted_ids = ids[order]
    first = np.ones(order.shape[0], bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    kept = order[first]
    duplicates = int(order.shape[0] - kept.shape[0])
    kept = kept[np.argsort(scores[kept], kind="stable")][:top]
    # float32 scores, unless a part has float64 ones (a run of dtype float64): its precision
    # is what that run is for.
    wide = any(p[1].dtype == np.float64 for p in parts)
    elite = (genomes[kept], scores[kept].astype(np.float64 if wide else np.float32), ids[kept],
             origin[kept])
    return MergeResult(elite, candidates, duplicates)


class IslandElites:
    """The newest elite frames of each island, read only when its HEAD names a new checkpoint.

    ``bytes_read`` counts what the ranged reads fetched (for the merge benchmark)."""

    def __init__(self, store: BlobStore, spec: RunSpec) -> None:
        self.store, self.spec = store, spec
        self.width = spec.problem.genome.width
        self._elites: dict[int, Elite] = {}
        self._keys: dict[int, str] = {}
        self.reads = 0

    def refresh(self, heads: dict[int, Head], *, readers: int = DEFAULT_READERS) -> int:
        """Read the elite of every island whose HEAD changed, ``readers`` at a time; returns
        how many were read. An unreadable checkpoint keeps the island's previous elite (and
        is logged); bucket trouble on one read leaves that island to the next refresh."""
        moved = [(island, head.checkpoint) for island, head in sorted(heads.items())
                 if head.checkpoint is not None and self._keys.get(island) != head.checkpoint]
        read = 0
        for (island, key), result in read_concurrently(lambda item: self._read(*item), moved,
                                                       readers=readers):
            if isinstance(result, StoreError) and not isinstance(result, NotFound):
                continue  # not remembered: read again next time
            if isinstance(result, Exception):
                # One bad island never stops the merge; a blob gone since HEAD named it is
                # as unreadable as a corrupt one (HEAD has moved on, or will).
                log.warning("merge: island %d: elite of %s unreadable, keeping the previous "
                            "one: %s", island, key,
                            result if isinstance(result, (CheckpointError, NotFound))
                            else f"{type(result).__name__}: {result}")
                self._keys[island] = key  # do not re-read a bad blob every cycle
                continue
            self._elites[island], self._keys[island] = result, key
            read += 1
        self.reads += read
        return read

    def _read(self, island: int, key: str) -> Elite:
        # The whole frame list must fit the run before a byte is decompressed.
        _, frames = codec.read_frames(
            self.store, key, ELITE_FRAMES,
            check=lambda _, infos: check_frames(infos, key=key, spec=self.spec, island=island))
        elite = tuple(frames[n] for n in ELITE_FRAMES)
        self._check(elite, key, island)
        return elite  # type: ignore[return-value]

    def _check(self, elite: tuple[np.ndarray, ...], key: str, island: int) -> None:
        """What merge_elites relies on, checked again on the decoded arrays."""
        g, s, i, o = elite
        n = s.shape[0] if s.ndim == 1 else -1
        if g.ndim != 2 or g.shape != (n, self.width) or i.shape != (n,) or o.shape != (n,):
            raise CheckpointError(f"checkpoint {key}: elite frames of shapes "
                                  f"{[a.shape for a in elite]} do not fit a {self.width}-gene run")
        genes = "f" if self.spec.problem.genome.kind == "real" else "iu"
        if g.dtype.kind not in genes or s.dtype.kind != "f" or i.dtype != np.int64 \
                or o.dtype.kind not in "iu":
            raise CheckpointError(f"checkpoint {key}: elite frames of dtypes "
                                  f"{[a.dtype.str for a in elite]} do not fit the run")
        most = min(self.spec.elite_size, self.spec.algorithm_of(island).pop)
        if n > most:
            raise CheckpointError(f"checkpoint {key}: elite of {n} rows, more than the run's "
                                  f"{most}")

    def parts(self) -> list[Elite]:
        return list(self._elites.values())


__all__ = ["Elite", "IslandElites", "MergeResult", "empty_elite", "merge_elites"]
