"""How a ``.isz`` frame's bytes are compressed: zstd, after an optional byte shuffle, and the
per-frame choice of filter and level that ``encode(filter="auto")`` makes on a sample.

The format itself (header, frames, what a reader checks) is :mod:`islandsync.bucket.codec`;
this module only turns raw bytes into a zstd frame and back, and measures which filter and
level pay for an array.
"""

from __future__ import annotations

import numpy as np
import zstandard

from islandsync.errors import ConfigError

DEFAULT_LEVEL = 3
FILTERS = ("none", "shuffle")

# filter="auto" measures arrays up to SAMPLE_WHOLE_LIMIT whole, larger ones on SAMPLE_SLICES
# evenly spaced slices. Only the second half of the slices is counted, the first half priming
# zstd's window: populations repeat genes across distant rows, and a cold sample misses the
# long matches that make the real ratio.
SAMPLE_WHOLE_LIMIT = 2 << 20
SAMPLE_SLICES = 8
SAMPLE_SLICE_BYTES = 128 << 10
# Populations of copied genes shrink 20%+ more at level 6 than at 3, noisy floats ~1%. Pay for
# the slower level where the sample says it saves ESCALATE_MIN_GAIN (the tolerance that
# benchmarks/codec.py holds "auto" to against fixed choices), never past ESCALATE_MAX_LEVEL.
ESCALATE_STEP = 3
ESCALATE_MAX_LEVEL = 9
ESCALATE_MIN_GAIN = 0.02


def shuffle(raw: np.ndarray, itemsize: int) -> np.ndarray:
    """The bytes transposed from ``[n, itemsize]`` to ``[itemsize, n]``: equal high bytes of
    similar numbers end up side by side, where zstd finds them."""
    return np.ascontiguousarray(raw.reshape(-1, itemsize).T)


def unshuffle(raw: np.ndarray, itemsize: int) -> np.ndarray:
    planes, out = raw.reshape(itemsize, -1), np.empty(raw.size, np.uint8)
    for k in range(itemsize):  # a strided copy per byte plane is 3x faster than .T.copy()
        out[k::itemsize] = planes[k]
    return out


def compress(payload: np.ndarray, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(payload.data)


def check_level(level: object) -> int:
    """``level`` when zstd has it; ConfigError otherwise (a writer's bug, not bad data)."""
    if type(level) is not int or not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
        raise ConfigError(f"zstd level must be an int in 1..{zstandard.MAX_COMPRESSION_LEVEL}, "
                          f"got {level!r}")
    return level


def _estimate(raw: np.ndarray, itemsize: int, shuffled: bool, level: int) -> int:
    """Compressed bytes of the measured part of the sample with this filter and level."""
    if raw.size <= SAMPLE_WHOLE_LIMIT:
        return len(compress(shuffle(raw, itemsize) if shuffled else raw, level))
    per = SAMPLE_SLICE_BYTES // itemsize * itemsize
    starts = np.linspace(0, raw.size // itemsize - per // itemsize, SAMPLE_SLICES).astype(np.int64)
    slices = [raw[s * itemsize:s * itemsize + per] for s in starts]
    prime = np.concatenate(slices[:SAMPLE_SLICES // 2])
    measured = np.concatenate(slices[SAMPLE_SLICES // 2:])
    if shuffled:  # each half alone, so the measured half spans all byte planes like the frame
        prime, measured = shuffle(prime, itemsize), shuffle(measured, itemsize)
    cobj = zstandard.ZstdCompressor(level=level).compressobj(size=prime.size + measured.size)
    cobj.compress(prime.data)
    cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return len(cobj.compress(measured.data)) + len(cobj.flush())


def choose(raw: np.ndarray, itemsize: int, level: int) -> tuple[str, int]:
    """``(filter, level)`` for the raw bytes of an array of ``itemsize``-byte items: both
    filters measured at ``level`` on a sample, the smaller then tried ``ESCALATE_STEP`` levels
    higher and kept there where it gains ``ESCALATE_MIN_GAIN``."""
    if raw.size == 0:
        return "none", level
    sizes = {"none": _estimate(raw, itemsize, False, level)}
    if itemsize > 1:  # shuffling 1-byte items is the identity
        sizes["shuffle"] = _estimate(raw, itemsize, True, level)
    best = min(sizes, key=lambda f: sizes[f])
    high = min(level + ESCALATE_STEP, ESCALATE_MAX_LEVEL)
    if high > level and _estimate(raw, itemsize, best == "shuffle", high) \
            <= sizes[best] * (1 - ESCALATE_MIN_GAIN):
        return best, high
    return best, level


__all__ = [
    "DEFAULT_LEVEL", "ESCALATE_MAX_LEVEL", "ESCALATE_MIN_GAIN", "ESCALATE_STEP", "FILTERS",
    "SAMPLE_SLICES", "SAMPLE_SLICE_BYTES", "SAMPLE_WHOLE_LIMIT", "check_level", "choose",
    "compress", "shuffle", "unshuffle",
]
