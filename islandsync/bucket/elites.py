"""Merged elite epochs: immutable blobs ``elite/<epoch, 12 digits>.isz`` named by
``elite/HEAD.json`` (:class:`~islandsync.bucket.records.EliteHead`).

Frames ``genomes``, ``scores``, ``ids``, ``origin``; scores are minimisation scores. The
epoch's header carries the term of the leader that wrote it (the fencing token).
"""

from __future__ import annotations

import numpy as np

from islandsync.bucket import codec
from islandsync.errors import CheckpointError
from islandsync.store.base import BlobStore

ELITE_FRAMES = ("genomes", "scores", "ids", "origin")


def encode_elite(elite: tuple[np.ndarray, ...], *, epoch: int, term: int) -> bytes:
    return codec.encode({"epoch": epoch, "term": term}, dict(zip(ELITE_FRAMES, elite)))


def read_elite(store: BlobStore, key: str, *, width: int | None = None,
               max_size: int | None = None) -> tuple[np.ndarray, ...]:
    """(genomes, scores, ids, origin) of an elite epoch. A corrupt blob, missing frames,
    frames of inconsistent lengths, or (when given) genomes not ``width`` wide or more than
    ``max_size`` rows raise CheckpointError naming it; a missing one NotFound."""
    _, frames = codec.decode(store.get(key).data, name=key)
    try:
        arrays = tuple(frames[n] for n in ELITE_FRAMES)
    except KeyError as err:
        raise CheckpointError(f"elite {key}: missing frame {err}") from None
    n = arrays[1].shape[0] if arrays[1].ndim == 1 else -1
    if n < 0 or any(a.shape[:1] != (n,) for a in arrays) or arrays[0].ndim != 2 \
            or arrays[2].ndim != 1 or arrays[3].ndim != 1:
        raise CheckpointError(f"elite {key}: frames of inconsistent shapes "
                              f"{[a.shape for a in arrays]}")
    if width is not None and arrays[0].shape[1] != width:
        raise CheckpointError(f"elite {key}: genomes {arrays[0].shape[1]} wide, the run's are "
                              f"{width}")
    if max_size is not None and n > max_size:
        raise CheckpointError(f"elite {key}: {n} genomes, more than the run's {max_size}")
    if arrays[1].dtype.kind != "f" or arrays[2].dtype != np.int64 or arrays[3].dtype.kind not in "iu":
        raise CheckpointError(f"elite {key}: frames of unexpected dtypes")
    return arrays


__all__ = ["ELITE_FRAMES", "encode_elite", "read_elite"]
