"""Island checkpoints and HEAD pointers in the bucket (numpy only: the coordinator uses it too).

``islands/<i>/HEAD.json`` names the island's latest checkpoint and its owner; it is advanced
only by compare-and-swap on the generation its writer saw last, which is what fences island
ownership. Checkpoint blobs are immutable and named
``islands/<i>/<generation, 12 digits>-<writer tag>.isz``: the writer tag (an improvement on
DESIGN.md's ``<generation>.isz``) keeps a partitioned former owner, whose HEAD CAS is about to
fail, from overwriting the blob the new owner's HEAD points to at the same generation.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from islandsync.bucket import codec
from islandsync.bucket.layout import head_key, island_prefix, parse_checkpoint_key
from islandsync.errors import CheckpointError, NotFound
from islandsync.store import BlobStore

log = logging.getLogger(__name__)

#: Frames read by migrant readers and the merge come first, so one ranged read gets them.
ELITE_FRAMES = ("elite.genomes", "elite.scores", "elite.ids", "elite.origin")
MAX_HEAD_BYTES = 64 * 1024
MAX_PREVIOUS = 3


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


class Head(BaseModel):
    """The content of ``islands/<i>/HEAD.json``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    island: int
    checkpoint: str | None = None
    generation: int = 0
    evals: int = 0
    best: float | None = None  # in the problem's own direction
    owner: str | None = None
    released: bool = False
    saved_at: float = 0.0  # writer's wall clock, for display only
    nonce: str = ""
    # The checkpoints before ``checkpoint`` on this island's lineage, newest first: where a
    # reader falls back to when ``checkpoint`` is corrupt. Only these: a blob that no HEAD
    # named (a killed owner's last upload) is a branch off the lineage, never a fallback.
    previous: list[str] = Field(default_factory=list, max_length=MAX_PREVIOUS)

    def lineage(self) -> list[str]:
        return ([self.checkpoint] if self.checkpoint else []) + list(self.previous)


MAX_RECORD_BYTES = 1 << 20


def read_record(store: BlobStore, key: str) -> dict[str, Any] | None:
    """A small JSON object blob (heartbeat, lease, finished, elite HEAD), or None when it does
    not exist. At most MAX_RECORD_BYTES are fetched; anything that is not a JSON object raises
    CheckpointError naming the blob."""
    try:
        blob = store.get(key, start=0, end=MAX_RECORD_BYTES + 1)
    except NotFound:
        return None
    try:
        if len(blob.data) > MAX_RECORD_BYTES:
            raise ValueError("too large")
        value = json.loads(blob.data)
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{store.url}/{key}: not a JSON record") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{store.url}/{key}: not a JSON object")
    return value


def read_head(store: BlobStore, island: int) -> tuple[Head, int] | None:
    """(HEAD, its blob generation), or None when the island has never been claimed.
    A HEAD that does not parse raises CheckpointError naming it."""
    key = head_key(island)
    try:
        blob = store.get(key)
    except NotFound:
        return None
    if len(blob.data) > MAX_HEAD_BYTES:
        raise CheckpointError(f"{store.url}/{key}: {len(blob.data)} bytes, too large for a HEAD")
    try:
        head = Head.model_validate_json(blob.data)
    except ValidationError as err:
        raise CheckpointError(f"{store.url}/{key}: not a valid HEAD ({err.error_count()} "
                              f"problems, first: {err.errors()[0]['msg']})") from None
    if head.island != island:
        raise CheckpointError(f"{store.url}/{key}: says island {head.island}")
    return head, blob.generation


def write_head(store: BlobStore, head: Head, *, if_generation: int) -> int:
    """CAS the island's HEAD; PreconditionFailed means the island is someone else's now."""
    body = head.model_copy(update={"nonce": secrets.token_hex(8), "saved_at": time.time()})
    return store.put(head_key(head.island), body.model_dump_json().encode(),
                     if_generation=if_generation)


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


def decode_island(data: bytes, *, key: str) -> IslandSnapshot:
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


def load_island(store: BlobStore, island: int, head: Head) -> IslandSnapshot | None:
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
            snap = decode_island(store.get(key).data, key=key)
        except (CheckpointError, NotFound) as err:
            log.warning("island %d: skipping checkpoint %s: %s", island, key, err)
            continue
        if snap.island != island:
            log.warning("island %d: checkpoint %s belongs to island %d", island, key, snap.island)
            continue
        snap.meta["key"] = key
        return snap
    return None
