"""Island checkpoints in the bucket (numpy only: the coordinator uses it too).

``islands/<i>/HEAD.json`` (:class:`~islandsync.bucket.records.Head`) names the island's
latest checkpoint and its owner; it is advanced only by compare-and-swap on the generation
its writer saw last, which is what fences island ownership. Checkpoint blobs are immutable
and named
``islands/<i>/<generation, 12 digits>-<writer tag>.isz``: the writer tag (an improvement on
the shared DESIGN.md's ``<generation>.isz``; see docs/design.md) keeps a partitioned former
owner, whose HEAD CAS is about to fail, from overwriting the blob the new owner's HEAD points
to at the same generation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
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
#: Header counts (island, generation, evals, nan_count) stay below this, as records' do.
MAX_COUNT = 1 << 62
#: Per-individual algorithm state frames (``extra.<name>``) a checkpoint may carry.
MAX_EXTRA_FRAMES = 16
_WIDEST = 8  # bytes per item of the codec's widest dtype


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


#: The population's four per-genome frames. A checkpoint stores each genome once: the best
#: ``elite`` rows, best first, as ``elite.*`` (first, so a ranged read fetches just them), the
#: other rows as ``rest.*``, and ``order`` (each stored row's index in the population) so that
#: a resumed island continues exactly as the uninterrupted one would have.
ROW_FRAMES = ("genomes", "scores", "ids", "origin")


def encode_island(snap: IslandSnapshot, *, elite: int, meta: dict[str, Any]) -> bytes:
    a = snap.arrays
    n = a["scores"].size
    perm = np.argsort(a["scores"], kind="stable")
    k = max(1, min(elite, n)) if n else 0
    frames: dict[str, np.ndarray] = {f"elite.{f}": a[f][perm[:k]] for f in ROW_FRAMES}
    frames.update({f"rest.{f}": a[f][perm[k:]] for f in ROW_FRAMES})
    frames["order"] = perm.astype(np.int64)
    frames.update({name: v for name, v in a.items() if name not in ROW_FRAMES})
    # Which algorithm wrote it (the engine's snapshot says): a portfolio's islands differ.
    wrote = {"algorithm": snap.meta["algorithm"]} if "algorithm" in snap.meta else {}
    header = {
        **meta, **wrote, "island": snap.island, "generation": snap.generation, "evals": snap.evals,
        "nan_count": snap.nan_count,
    }
    return codec.encode(header, frames)


def _population(frames: dict[str, np.ndarray], key: str) -> dict[str, np.ndarray]:
    """The population's arrays in their original order, from either layout: ``elite.*`` +
    ``rest.*`` + ``order`` (each genome once), or whole frames beside a copied elite (the
    layout before, still read)."""
    arrays = {k: v for k, v in frames.items()
              if not k.startswith(("elite.", "rest.")) and k != "order"}
    if "order" not in frames:
        return arrays
    order = frames["order"]
    n = order.shape[0]
    if order.ndim != 1 or not np.array_equal(np.sort(order), np.arange(n)):
        raise CheckpointError(f"checkpoint {key}: frame 'order' is not a permutation")
    for name in ROW_FRAMES:
        try:
            stored = np.concatenate([frames[f"elite.{name}"], frames[f"rest.{name}"]])
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"checkpoint {key}: frames of {name!r} do not fit "
                                  f"({type(err).__name__})") from None
        if stored.shape[0] != n:
            raise CheckpointError(f"checkpoint {key}: {stored.shape[0]} rows of {name!r} for "
                                  f"a population of {n}")
        whole = np.empty_like(stored)
        whole[order] = stored
        arrays[name] = whole
    return arrays


def _count(meta: dict[str, Any], name: str, key: str, default: int | None = None) -> int:
    # type(), not isinstance: True is no generation. A float is refused too: a crafted
    # "generation": Infinity made int() raise OverflowError, which no reader expects.
    value = meta.get(name, default)
    if type(value) is not int or not 0 <= value < MAX_COUNT:
        raise CheckpointError(f"checkpoint {key}: header field {name!r} must be an int in "
                              f"[0, 2**62), got {_short(value)}")
    return value


def _short(value: object) -> str:
    text = repr(value)  # a hostile header may hold 64 KiB where a number belongs
    return text if len(text) <= 40 else text[:37] + "..."


def island_frames(spec: RunSpec, island: int | None = None, dtype: str | None = None
                  ) -> dict[str, tuple[tuple[int, ...], str]]:
    """The per-island state frames (``island.<name>``) a checkpoint of ``island`` holds, by
    frame name: shape and numpy dtype, as its algorithm's settings model declares them (a
    portfolio gives islands different algorithms: :meth:`RunSpec.algorithm_of`). ``island``
    None: the run's first algorithm. ``dtype``: the checkpoint's genome dtype (a run of
    ``dtype = "auto"`` holds either; None: the run's, float64 for "auto": the widest)."""
    alg = spec.algorithm_of(0 if island is None else island)
    dtype = dtype or ("float64" if spec.dtype == "auto" else spec.dtype)
    declared = alg.island_frames(spec.problem.genome.width, dtype)
    return {f"island.{name}": value for name, value in declared.items()}


def max_checkpoint_bytes(spec: RunSpec, island: int | None = None) -> int:
    """The most raw (decompressed) bytes a checkpoint of ``island`` can hold (``None``: of
    any island of the run): every frame it may have at the codec's widest dtype. A blob
    claiming more is refused unread."""
    islands = range(len(spec.algorithms)) if island is None else (island,)
    return max(_max_bytes(spec, i) for i in islands)


def _max_bytes(spec: RunSpec, island: int) -> int:
    pop, width = spec.algorithm_of(island).pop, spec.problem.genome.width
    elite = min(spec.elite_size, pop)
    state = sum(math.prod(shape) for shape, _ in island_frames(spec, island).values())
    return _WIDEST * ((pop + elite) * (width + 3) + MAX_EXTRA_FRAMES * pop + state)


def max_checkpoint_blob(spec: RunSpec, island: int | None = None) -> int:
    """The most stored bytes a checkpoint of ``island`` (``None``: of any island) can take
    (every frame it may have, at zstd's compress bound): a larger blob is refused before
    download."""
    islands = range(len(spec.algorithms)) if island is None else (island,)
    frames = 2 * len(ROW_FRAMES) + 1 + MAX_EXTRA_FRAMES + max(
        len(island_frames(spec, i)) for i in islands)
    return codec.max_blob_size(max_checkpoint_bytes(spec, island), frames)


#: The numpy dtype of a real genome's genes and of scores, by the run's ``dtype``.
FLOAT_DTYPES = {"float32": "<f4", "float64": "<f8"}


def _kinds(*kinds: str) -> Callable[[np.dtype], bool]:
    return lambda dtype: dtype.kind in kinds


def _exactly(want: str) -> Callable[[np.dtype], bool]:
    return lambda dtype: dtype == np.dtype(want)


def _int64(dtype: np.dtype) -> bool:
    return dtype == np.int64


def _any(dtype: np.dtype) -> bool:
    return True


def _checkpoint_dtype(spec: RunSpec, by_name: dict[str, codec.FrameInfo]) -> str:
    """The genome dtype a checkpoint's frames must all agree with: the run's, or for a run of
    ``dtype = "auto"`` (real genomes) whichever of float32 and float64 its scores are (each
    worker writes its own, ``config.genome_dtype``); anything else is checked as float32 and
    so refused."""
    if spec.dtype != "auto":
        return spec.dtype
    scores = by_name.get("elite.scores")
    wrote = np.dtype(scores.dtype) if scores is not None else None
    return "float64" if wrote == np.dtype(FLOAT_DTYPES["float64"]) else "float32"


def check_frames(frames: list[codec.FrameInfo], *, key: str, spec: RunSpec,
                 island: int) -> None:
    """Refuse, before anything is decompressed, a frame list that does not fit the run:
    ``genomes`` ``(pop, width)`` of the run's ``dtype`` for real genomes (float32 unless the
    run says float64; either for "auto", every float frame alike) or of an int dtype for
    tokens, ``scores`` ``(pop,)`` of that float dtype, ``ids`` ``(pop,)`` int64, ``origin`` ``(pop,)`` int,
    at most :data:`MAX_EXTRA_FRAMES` ``extra.*`` of ``(pop,)``, the ``elite.*`` four alike
    with one row count of at most ``min(elite_size, pop)``, exactly the ``island.*`` frames
    the algorithm declares at exactly their shapes and dtypes (:func:`island_frames`: none
    for GA and DE, so their checkpoints, old ones included, read as before), no other frame,
    and in all at most :func:`max_checkpoint_bytes`. Any misfit raises CheckpointError naming ``key``."""
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {key}: {why}")

    pop, width = spec.algorithm_of(island).pop, spec.problem.genome.width
    by_name = {f.name: f for f in frames}
    dtype = _checkpoint_dtype(spec, by_name)
    floats = _exactly(FLOAT_DTYPES[dtype])
    genes = floats if spec.problem.genome.kind == "real" else _kinds("i", "u")
    scores = by_name.get("elite.scores")
    rows = scores.shape[0] if scores is not None and len(scores.shape) == 1 else None
    most = min(spec.elite_size, pop)
    if rows is None or rows > most:
        raise fail(f"elite of {'no' if rows is None else rows} rows; the run keeps 0 to {most}")
    expected: dict[str, tuple[tuple[int, ...], Callable[[np.dtype], bool]]] = {}
    # Each genome once (elite.* + rest.* + order), or whole frames beside a copied elite.
    parts = ((("elite.", rows), ("rest.", pop - rows)) if "order" in by_name
             else (("", pop), ("elite.", rows)))
    if "order" in by_name:
        expected["order"] = ((pop,), _kinds("i", "u"))
    expected.update({name: (shape, _exactly(frame_dtype)) for name, (shape, frame_dtype)
                     in island_frames(spec, island, dtype).items()})
    for prefix, n in parts:
        expected.update({f"{prefix}genomes": ((n, width), genes),
                         f"{prefix}scores": ((n,), floats),
                         f"{prefix}ids": ((n,), _int64),
                         f"{prefix}origin": ((n,), _kinds("i", "u"))})
    if missing := sorted(set(expected) - set(by_name)):
        raise fail(f"missing frames {missing}")
    extras = [f.name for f in frames if f.name.startswith("extra.")]
    if len(extras) > MAX_EXTRA_FRAMES:
        raise fail(f"{len(extras)} extra.* frames, at most {MAX_EXTRA_FRAMES}")
    for f in frames:
        if f.name in expected:
            shape, fits = expected[f.name]
        elif f.name.startswith("extra."):
            shape, fits = (pop,), _any
        else:
            raise fail(f"unexpected frame {_short(f.name)}")
        if f.shape != shape or not fits(np.dtype(f.dtype)):
            raise fail(f"frame {_short(f.name)} is {list(f.shape)} {f.dtype}, which does not "
                       f"fit the run ({list(shape)}, a {spec.problem.genome.kind} genome)")
    total = sum(f.raw_length for f in frames)
    if total > (cap := max_checkpoint_bytes(spec, island)):
        raise fail(f"{total} bytes decompressed, over the run's {cap}")


def decode_island(data: bytes, *, key: str, spec: RunSpec | None = None) -> IslandSnapshot:
    """A checkpoint's snapshot. Its header's counts are checked always; with ``spec``, the
    frame list is checked against the run's shapes (:func:`check_frames`) before any frame
    is decompressed. Any failure raises CheckpointError naming ``key``."""
    meta, infos = codec.read_header(data, name=key, blob_size=len(data))
    island, generation = _count(meta, "island", key), _count(meta, "generation", key)
    evals, nan_count = _count(meta, "evals", key), _count(meta, "nan_count", key, 0)
    if spec is not None:
        # Shapes by the header's island: a checkpoint of another island is refused anyway.
        check_frames(infos, key=key, spec=spec, island=island)
        wrote, runs = meta.get("algorithm"), spec.algorithm_of(island).name
        if wrote is not None and wrote != runs:
            raise CheckpointError(f"checkpoint {key}: written by algorithm {_short(wrote)}, "
                                  f"but island {island} of the run runs {runs}")
    _, frames = codec.decode(data, name=key)
    arrays = _population(frames, key)
    missing = {"genomes", "scores", "ids", "origin"} - set(arrays)
    if missing:
        raise CheckpointError(f"checkpoint {key}: missing frames {sorted(missing)}")
    return IslandSnapshot(island, generation, evals, nan_count, arrays, meta)


def _try(store: BlobStore, island: int, key: str, spec: RunSpec | None) -> IslandSnapshot | None:
    cap = codec.MAX_UNSHAPED_BLOB if spec is None else max_checkpoint_blob(spec, island)
    try:
        snap = decode_island(codec.read_capped(store, key, cap), key=key, spec=spec)
    except (CheckpointError, NotFound) as err:
        log.warning("island %d: skipping checkpoint %s: %s", island, key, err)
        return None
    if snap.island != island:
        log.warning("island %d: checkpoint %s belongs to island %d", island, key, snap.island)
        return None
    snap.meta["key"] = key
    return snap


def load_island(store: BlobStore, island: int, head: Head, *,
                spec: RunSpec | None = None) -> IslandSnapshot | None:
    """The newest readable checkpoint of an island: the one HEAD names, then the rest of
    HEAD's lineage, then (only when all of those are unreadable or gone) any other checkpoint
    of the island at or below HEAD's generation, newest first: resuming a stray blob of a
    writer that lost the island beats restarting from the seed. A blob above HEAD's
    generation is never resumed: its writer lost the island, and resuming it would fork the
    lineage. None when nothing is readable. StoreError passes through (retry later)."""
    tried: set[str] = set()
    for key in head.lineage():
        if key not in tried:
            tried.add(key)
            if (snap := _try(store, island, key, spec)) is not None:
                return snap
    rest = sorted(
        ((p[1], i.key) for i in store.list(island_prefix(island))
         if (p := parse_checkpoint_key(i.key)) and p[0] == island and p[1] <= head.generation
         and i.key not in tried),
        reverse=True,
    )
    for _, key in rest:
        if (snap := _try(store, island, key, spec)) is not None:
            if head.lineage():
                log.warning("island %d: every checkpoint HEAD names is unreadable; resuming "
                            "from %s, which it does not name", island, key)
            return snap
    return None
