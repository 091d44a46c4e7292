"""The leader's records in the bucket: ``assignment.json`` and the elite epochs.

Both carry the lease term that wrote them: the fencing token. A reader that has seen a higher
term (in ``lease.json`` or in any record) ignores a record of a lower one, so a leader that was
paused past its lease and wakes up cannot move islands or replace migrants. Both are replaced
only by compare-and-swap on the generation the leader last read.

Elite epochs are immutable blobs ``elite/<epoch, 12 digits>.isz`` (frames ``genomes``,
``scores``, ``ids``, ``origin``; scores are minimisation scores) named by ``elite/HEAD.json``.
"""

from __future__ import annotations

import secrets
import time

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from islandsync.bucket import codec
from islandsync.bucket.checkpoints import MAX_RECORD_BYTES
from islandsync.bucket.layout import ASSIGNMENT_KEY, ELITE_HEAD_KEY, elite_key, parse_elite_key
from islandsync.errors import CheckpointError, NotFound
from islandsync.store import BlobStore

ELITE_FRAMES = ("genomes", "scores", "ids", "origin")


class Assignment(BaseModel):
    """Which worker hosts which island, as decided by the leader of ``term``.

    ``workers`` are the workers the leader believed alive: an island's new owner takes it at
    once from an owner not on that list, and waits for a listed owner to release it first.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    term: int = Field(ge=1)
    epoch: int = Field(ge=1)
    leader: str
    islands: dict[int, str] = Field(default_factory=dict)
    workers: list[str] = Field(default_factory=list)
    draining: list[str] = Field(default_factory=list)
    written_at: float = 0.0  # the leader's wall clock, for display only
    nonce: str = ""

    def of(self, worker: str) -> set[int]:
        return {i for i, w in self.islands.items() if w == worker}


class EliteHead(BaseModel):
    """The content of ``elite/HEAD.json``: the newest merged global top-N."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    epoch: int = Field(ge=1)
    key: str
    term: int = Field(ge=0)
    size: int = Field(ge=0)
    best: float | None = None  # in the problem's own direction
    duplicates: int = 0  # duplicate ids removed while merging this epoch
    candidates: int = 0
    written_at: float = 0.0
    nonce: str = ""


def _read_model(store: BlobStore, key: str, model: type[BaseModel]) -> tuple[BaseModel, int] | None:
    try:
        blob = store.get(key, start=0, end=MAX_RECORD_BYTES + 1)
    except NotFound:
        return None
    if len(blob.data) > MAX_RECORD_BYTES:
        raise CheckpointError(f"{store.url}/{key}: larger than {MAX_RECORD_BYTES} bytes")
    try:
        return model.model_validate_json(blob.data), blob.generation
    except ValidationError as err:
        raise CheckpointError(f"{store.url}/{key}: not a valid {model.__name__} "
                              f"({err.error_count()} problems, first: "
                              f"{err.errors()[0]['msg']})") from None


def read_assignment(store: BlobStore) -> tuple[Assignment, int] | None:
    """(assignment, generation), None when none was written; garbage raises CheckpointError."""
    return _read_model(store, ASSIGNMENT_KEY, Assignment)  # type: ignore[return-value]


def write_assignment(store: BlobStore, assignment: Assignment, *, if_generation: int) -> int:
    body = assignment.model_copy(update={"nonce": secrets.token_hex(8), "written_at": time.time()})
    return store.put(ASSIGNMENT_KEY, body.model_dump_json().encode(), if_generation=if_generation)


def read_elite_head(store: BlobStore) -> tuple[EliteHead, int] | None:
    return _read_model(store, ELITE_HEAD_KEY, EliteHead)  # type: ignore[return-value]


def write_elite_head(store: BlobStore, head: EliteHead, *, if_generation: int) -> int:
    body = head.model_copy(update={"nonce": secrets.token_hex(8), "written_at": time.time()})
    return store.put(ELITE_HEAD_KEY, body.model_dump_json().encode(), if_generation=if_generation)


def encode_elite(elite: tuple[np.ndarray, ...], *, epoch: int, term: int) -> bytes:
    return codec.encode({"epoch": epoch, "term": term}, dict(zip(ELITE_FRAMES, elite)))


def read_elite(store: BlobStore, key: str) -> tuple[np.ndarray, ...]:
    """(genomes, scores, ids, origin) of an elite epoch. A corrupt blob, missing frames or
    frames of inconsistent lengths raise CheckpointError naming it; a missing one NotFound."""
    _, frames = codec.decode(store.get(key).data, name=key)
    try:
        arrays = tuple(frames[n] for n in ELITE_FRAMES)
    except KeyError as err:
        raise CheckpointError(f"elite {key}: missing frame {err}") from None
    n = arrays[1].shape[0] if arrays[1].ndim == 1 else -1
    if n < 0 or any(a.shape[:1] != (n,) for a in arrays) or arrays[0].ndim != 2:
        raise CheckpointError(f"elite {key}: frames of inconsistent shapes "
                              f"{[a.shape for a in arrays]}")
    return arrays


__all__ = [
    "ASSIGNMENT_KEY", "ELITE_FRAMES", "ELITE_HEAD_KEY", "Assignment", "EliteHead", "elite_key",
    "encode_elite", "parse_elite_key", "read_assignment", "read_elite", "read_elite_head",
    "write_assignment", "write_elite_head",
]
