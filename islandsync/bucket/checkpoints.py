"""Island checkpoints in the bucket (numpy only: the coordinator uses it too).

``islands/<i>/HEAD.json`` (:class:`~islandsync.bucket.records.Head`) names the island's
latest checkpoint and its owner; it is advanced only by compare-and-swap on the generation
its writer saw last, which is what fences island ownership. Checkpoint blobs are immutable
and named
``islands/<i>/<generation, 12 digits>-<writer tag>.isz``: the writer tag (an improvement on
DESIGN.md's ``<generation>.isz``) keeps a partitioned former owner, whose HEAD CAS is about to
fail, from overwriting the blob the new owner's HEAD points to at the same generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from islandsync.bucket import codec
from islandsync.bucket.layout import island_prefix, parse_checkpoint_key
from islandsync.bucket.records import Head
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError, NotFound
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

#: Frames read by migrant readers and the merge come first, so one ranged read gets them.
ELITE_FRAMES = ("elite.genomes", "elite.scores", "elite.ids", "elite.origin")


@dataclass
class IslandSnapshot:
    """One island's state on the host: what a checkpoint holds. ``scores`` are minimisation
    scores (the negated fitness for a maximised problem)."""

    island: int
    generation: int
    evals: int
    nan_count: int
    arrays: dict[str, np.ndarray]  # genomes, scores, ids, origin, extra.<name>
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def best_score(self) -> float:
        scores = self.arrays["scores"]
        return float(scores.min()) if scores.size else float("inf")


def encode_island(snap: IslandSnapshot, *, elite: int, meta: dict[str, Any]) -> bytes:
    a = snap.arrays
    order = np.argsort(a["scores"], kind="stable")[: max(1, min(elite, a["scores"].size))]
    frames: dict[str, np.ndarray] = {
        "elite.genomes": a["genomes"][order],
        "elite.scores": a["scores"][order],
        "elite.ids": a["ids"][order],
        "elite.origin": a["origin"][order],
    }
    frames.update(a)
    header = {
        **meta, "island": snap.island, "generation": snap.generation, "evals": snap.evals,
        "nan_count": snap.nan_count,
    }
    return codec.encode(header, frames)


def decode_island(data: bytes, *, key: str, spec: RunSpec | None = None) -> IslandSnapshot:
    """A checkpoint's snapshot; with ``spec``, its frames must fit the run's shapes."""
    meta, frames = codec.decode(data, name=key)
    try:
        island, generation = int(meta["island"]), int(meta["generation"])
        evals, nan_count = int(meta["evals"]), int(meta.get("nan_count", 0))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {key}: header lacks island fields ({err})") from None
    arrays = {k: v for k, v in frames.items() if not k.startswith("elite.")}
    missing = {"genomes", "scores", "ids", "origin"} - set(arrays)
    if missing:
        raise CheckpointError(f"checkpoint {key}: missing frames {sorted(missing)}")
    return IslandSnapshot(island, generation, evals, nan_count, arrays, meta)


def load_island(store: BlobStore, island: int, head: Head, *,
                spec: RunSpec | None = None) -> IslandSnapshot | None:
    """The newest readable checkpoint of an island, starting from the one HEAD names and
    falling back to older ones when a blob is corrupt or missing. None when there is none."""
    tried: set[str] = set()
    candidates = head.lineage()
    older: list[str] = []
    if not head.previous:
        # A HEAD written before lineages were recorded: any blob at or below its generation
        # (a newer blob HEAD never named is an orphan of a writer that lost the island).
        older = sorted(
            (i.key for i in store.list(island_prefix(island))
             if (p := parse_checkpoint_key(i.key)) and p[1] <= head.generation),
            reverse=True,
        )
    for key in candidates + older:
        if key in tried:
            continue
        tried.add(key)
        try:
            snap = decode_island(store.get(key).data, key=key, spec=spec)
        except (CheckpointError, NotFound) as err:
            log.warning("island %d: skipping checkpoint %s: %s", island, key, err)
            continue
        if snap.island != island:
            log.warning("island %d: checkpoint %s belongs to island %d", island, key, snap.island)
            continue
        snap.meta["key"] = key
        return snap
    return None
