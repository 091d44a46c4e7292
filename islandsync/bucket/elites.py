"""Merged elite epochs: immutable blobs ``elite/<epoch, 12 digits>.isz`` named by
``elite/HEAD.json`` (:class:`~islandsync.bucket.records.EliteHead`).

Frames ``genomes``, ``scores``, ``ids``, ``origin``; scores are minimisation scores. The
epoch's header carries the term of the leader that wrote it (the fencing token).
"""

from __future__ import annotations

import numpy as np

from islandsync.bucket import codec
from islandsync.config import RunSpec
from islandsync.errors import CheckpointError
from islandsync.store.base import BlobStore

ELITE_FRAMES = ("genomes", "scores", "ids", "origin")
_WIDEST = 8  # bytes per item of the codec's widest dtype


def encode_elite(elite: tuple[np.ndarray, ...], *, epoch: int, term: int) -> bytes:
    return codec.encode({"epoch": epoch, "term": term}, dict(zip(ELITE_FRAMES, elite)))


def max_elite_blob(width: int, max_size: int) -> int:
    """The most stored bytes an elite epoch of ``max_size`` genomes ``width`` wide can take
    (every frame at the codec's widest dtype, at zstd's compress bound)."""
    return codec.max_blob_size(_WIDEST * max_size * (width + 3), len(ELITE_FRAMES))


def read_elite(store: BlobStore, key: str, *, spec: RunSpec | None = None,
               width: int | None = None, max_size: int | None = None,
               kind: str | None = None) -> tuple[np.ndarray, ...]:
    """(genomes, scores, ids, origin) of an elite epoch. A corrupt blob, missing frames,
    frames of inconsistent lengths or unexpected dtypes, or genomes not ``width`` wide, more
    than ``max_size`` rows, or not of the genome ``kind``'s dtype family ("real": float,
    "tokens": int) raise CheckpointError naming it; a missing one NotFound. ``spec`` gives all
    three from the run (what every reader in a run passes). At most what those shapes allow
    is downloaded (:func:`max_elite_blob`; without them :data:`codec.MAX_UNSHAPED_BLOB`), and
    shapes and dtypes are checked from the header, before any frame is decompressed."""
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"elite {key}: {why}")

    if spec is not None:
        width, max_size = spec.problem.genome.width, spec.elite_size
        kind = spec.problem.genome.kind
    cap = codec.MAX_UNSHAPED_BLOB if width is None or max_size is None \
        else max_elite_blob(width, max_size)
    data = codec.read_capped(store, key, cap)
    _, infos = codec.read_header(data, name=key, blob_size=len(data))
    by_name = {i.name: i for i in infos}
    if missing := [n for n in ELITE_FRAMES if n not in by_name]:
        raise fail(f"missing frames {missing}")
    shapes = [by_name[n].shape for n in ELITE_FRAMES]
    dtypes = [np.dtype(by_name[n].dtype) for n in ELITE_FRAMES]
    n = shapes[1][0] if len(shapes[1]) == 1 else -1
    if n < 0 or len(shapes[0]) != 2 or any(s[:1] != (n,) for s in shapes) \
            or len(shapes[2]) != 1 or len(shapes[3]) != 1:
        raise fail(f"frames of inconsistent shapes {[list(s) for s in shapes]}")
    if width is not None and shapes[0][1] != width:
        raise fail(f"genomes {shapes[0][1]} wide, the run's are {width}")
    if max_size is not None and n > max_size:
        raise fail(f"{n} genomes, more than the run's {max_size}")
    genes = {"real": "f", "tokens": "iu", None: "fiub"}.get(kind, "")
    if dtypes[0].kind not in genes or dtypes[1].kind != "f" or dtypes[2] != np.int64 \
            or dtypes[3].kind not in "iu":
        raise fail(f"frames of unexpected dtypes {[d.str for d in dtypes]}")
    _, frames = codec.decode(data, name=key)
    return tuple(frames[n] for n in ELITE_FRAMES)


__all__ = ["ELITE_FRAMES", "encode_elite", "max_elite_blob", "read_elite"]
