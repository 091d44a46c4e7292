"""Genome ids in numpy: the 64-bit content hash of a genome's canonical bytes.

Used by both roles without torch (the leader's merge, ``status``, tests); the torch twin in
:mod:`islandsync.search.population` produces bit-identical values from the same constants, so
"equal genomes have equal ids" holds on every worker, device and coordinator. See that module
for the hash's definition.
"""

from __future__ import annotations

import threading

import numpy as np

from islandsync.errors import ConfigError

_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB
# Fixed seeds: changing them changes every id ever written, so they are part of the format.
_SEED_MULT = 0x15A4D57E01D5
_SEED_SALT = 0x6E03E51DBA5E


def _signed(u: int) -> int:
    """A uint64 value as the int64 with the same bits (torch has no uint64 arithmetic)."""
    u &= _U64
    return u - (1 << 64) if u >= 1 << 63 else u



def _splitmix64(seed: int, n: int) -> np.ndarray:
    """The first ``n`` outputs of splitmix64 from ``seed``, as uint64."""
    with np.errstate(over="ignore"):
        x = np.uint64(seed & _U64) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
        return _mix_np(x)



def _mix_np(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(_M1)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(_M2)
        return z ^ (z >> np.uint64(31))



_np_consts: dict[int, tuple[np.ndarray, np.ndarray]] = {}
_lock = threading.Lock()


def _consts_np(d: int) -> tuple[np.ndarray, np.ndarray]:
    c = _np_consts.get(d)
    if c is None:
        c = (_splitmix64(_SEED_MULT, d) | np.uint64(1), _splitmix64(_SEED_SALT, d))
        with _lock:
            _np_consts[d] = c
    return c



def genome_ids_numpy(genomes: np.ndarray) -> np.ndarray:
    """numpy twin of :func:`genome_ids`: the same int64 ids for the same genomes."""
    a = np.asarray(genomes)
    if a.ndim == 0:
        raise ConfigError("genome_ids_numpy: genomes must have at least one dimension [..., D]")
    d = a.shape[-1]
    if np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float32) + np.float32(0.0)
        x = np.where(np.isnan(x), np.float32(np.nan), x).astype(np.float32)
        v = np.ascontiguousarray(x).view(np.int32).astype(np.int64).view(np.uint64)
    elif np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        v = a.astype(np.int64).view(np.uint64)
    else:
        raise ConfigError(f"genome_ids_numpy: unsupported dtype {a.dtype}")
    mult, salt = _consts_np(d)
    with np.errstate(over="ignore"):
        h = _mix_np(v * mult + salt).sum(axis=-1, dtype=np.uint64)
        out = _mix_np(np.asarray(h + np.uint64(d * _GOLDEN & _U64), dtype=np.uint64))
    return out.view(np.int64)


__all__ = ["genome_ids_numpy"]
