"""Genome ids in numpy: the 64-bit content hash of a genome's canonical bytes.

Used by both roles without torch (the leader's merge, ``status``, tests); the torch twin in
:mod:`islandsync.search.population` produces bit-identical values from the same constants, so
"equal genomes have equal ids" holds on every worker, device and coordinator. See that module
for the hash's definition.
"""

from __future__ import annotations

import math
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
        return _mix_np_(x, np.empty_like(x))


_STEPS = ((np.uint64(30), np.uint64(_M1)), (np.uint64(27), np.uint64(_M2)),
          (np.uint64(31), None))


def _mix_np_(z: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser in place on uint64 ``z``, with ``t`` (its shape) as scratch
    (array arithmetic wraps modulo 2**64 without a warning)."""
    for shift, mult in _STEPS:
        np.right_shift(z, shift, out=t)  # logical: uint64
        z ^= t
        if mult is not None:
            z *= mult
    return z


# Genes per block of genome_ids_numpy: its passes over a block stay in cache.
_BLOCK = 1 << 15

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
    """numpy twin of :func:`genome_ids`: the same int64 ids for the same genomes.

    Computed in place over blocks of rows of about :data:`_BLOCK` genes, whose dozen uint64
    passes stay in cache (uint64 shifts are logical, which torch's int64 ones are not): so
    this is also the engine's fastest way to hash CPU genomes (torch's twin calls it there).
    """
    a = np.asarray(genomes)
    if a.ndim == 0:
        raise ConfigError("genome_ids_numpy: genomes must have at least one dimension [..., D]")
    floating = np.issubdtype(a.dtype, np.floating)
    if not (floating or np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise ConfigError(f"genome_ids_numpy: unsupported dtype {a.dtype}")
    d = a.shape[-1]
    n = math.prod(a.shape[:-1])
    flat = a.reshape(n, d)
    mult, salt = _consts_np(d)
    rows = max(1, min(n, _BLOCK // max(d, 1)))
    z, t = np.empty((rows, d), np.uint64), np.empty((rows, d), np.uint64)
    f = np.empty((rows, d), np.float32) if floating else None
    h = np.empty(n, np.uint64)
    # Quietly: a float64 gene beyond float32's range hashes as inf, a signalling NaN as NaN.
    with np.errstate(over="ignore", invalid="ignore"):
        for at in range(0, n, rows):
            x = flat[at:at + rows]
            zb = z[:len(x)]
            if f is not None:
                # The float32 value (-0.0 -> 0.0, every NaN the one NaN), as int32 bits
                # sign-extended to 64.
                fb = f[:len(x)]
                fb[...] = x
                fb += np.float32(0.0)
                np.copyto(fb, np.float32(np.nan), where=np.isnan(fb))
                zb[...] = fb.view(np.int32)
            else:
                zb[...] = x  # the integer's value, modulo 2**64
            zb *= mult
            zb += salt
            np.add.reduce(_mix_np_(zb, t[:len(x)]), axis=1, dtype=np.uint64,
                          out=h[at:at + len(x)])
        h += np.uint64(d * _GOLDEN & _U64)
        _mix_np_(h, np.empty_like(h))
    return h.view(np.int64).reshape(a.shape[:-1])


__all__ = ["genome_ids_numpy"]
