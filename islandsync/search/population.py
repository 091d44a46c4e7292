"""Population tensors: genome content-hash ids, per-island elites, migrant selection and injection.

Pure tensor maths (no I/O). Every function works on islands stacked along the leftmost
dimension, ``[K, P, ...]``, and is vectorised over islands and individuals: the worker calls
them on whatever device its islands live on.

Genome ids are a 64-bit content hash computed on the device. :func:`device_genome_ids`
(torch, any device) and :func:`genome_ids_numpy` (numpy, for the coordinator's merge, which
runs without torch) produce bit-identical values, so "equal genomes have equal ids" holds on
every worker and device; :func:`genome_ids` takes the faster of the two for the genomes'
device (numpy on a CPU, on the tensor's own memory). The hash::

    v_j   = canonical 64-bit value of gene j  (float: float32 bits, -0.0 -> 0.0, one NaN;
                                               int: the value as int64)
    h     = sum_j mix(v_j * C_j + S_j)        (mod 2**64; C_j odd, S_j from splitmix64)
    id    = mix(h + D * GOLDEN)               (as int64)

where ``mix`` is the splitmix64 finaliser. Only int64 multiply, add, xor, shift and mask are
used; torch's int64 arithmetic wraps modulo 2**64 on CPU and CUDA alike, and integer sums are
order-independent, so the result does not depend on the device or on reduction order.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from islandsync.bucket.ids import (  # the numpy twin and the hash's constants
    _GOLDEN,
    _M1,
    _M2,
    _consts_np,
    _signed,
    genome_ids_numpy,
)
from islandsync.errors import ConfigError

try:
    import torch
    from torch import Tensor
except ImportError as err:  # pragma: no cover - torch is needed only where islands step
    raise ImportError(
        "islandsync.search.population needs torch (pip install torch); the coordinator can use "
        "genome_ids_numpy without it"
    ) from err

from islandsync.search.state import IslandState  # noqa: E402 (torch first, with its message)


def _mix_(z: Tensor) -> Tensor:
    """The splitmix64 finaliser in place on int64 ``z``: one scratch tensor, no temporaries."""
    t = torch.empty_like(z)
    for shift, mult in ((30, _signed(_M1)), (27, _signed(_M2)), (31, None)):
        # torch's >> on int64 is arithmetic; masking off the sign-extended bits makes it logical.
        torch.bitwise_right_shift(z, shift, out=t)
        t &= (1 << (64 - shift)) - 1
        z ^= t
        if mult is not None:
            z *= mult
    return z


_NAN, _INF = float("nan"), float("inf")

_t_consts: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}
_lock = threading.Lock()

# On a CPU the hash's dozen int64 passes run over blocks of about this many genes, which stay
# in cache: 9x faster than whole-tensor passes at 8 x 1024 x 1000 (73 ms vs 665 ms, 2 cores).
# A GPU takes the whole tensor at once (each block would be a dozen kernel launches).
_CPU_BLOCK = 1 << 15


def _consts_t(d: int, device: torch.device) -> tuple[Tensor, Tensor]:
    key = (d, device)
    c = _t_consts.get(key)
    if c is None:
        mult, salt = _consts_np(d)
        c = (torch.from_numpy(mult.view(np.int64).copy()).to(device),
             torch.from_numpy(salt.view(np.int64).copy()).to(device))
        with _lock:
            _t_consts[key] = c
    return c


def genome_ids(genomes: Tensor) -> Tensor:
    """64-bit content-hash ids of ``genomes [..., D]`` as int64 ``[...]``, on their device.

    Float genomes are hashed by their float32 bits (so -0.0 and 0.0, and all NaNs, hash
    alike); integer and bool genomes by their values. Equal to :func:`genome_ids_numpy`,
    which computes them for CPU genomes of a numpy dtype (on the same memory: 1.5-3x the
    speed of torch's int64 passes, whose right shifts need a mask to be logical);
    :func:`device_genome_ids` elsewhere.
    """
    _check(genomes)
    if genomes.device.type == "cpu" and genomes.dtype in _NUMPY_DTYPES \
            and not genomes.requires_grad:
        return torch.from_numpy(genome_ids_numpy(genomes.numpy()))
    return device_genome_ids(genomes)


_NUMPY_DTYPES = frozenset((torch.float16, torch.float32, torch.float64, torch.bool,
                           torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64))


def _check(genomes: Tensor) -> None:
    if genomes.dim() == 0:
        raise ConfigError("genome_ids: genomes must have at least one dimension [..., D]")
    if genomes.is_complex():
        raise ConfigError("genome_ids: complex genomes are not supported")


def device_genome_ids(genomes: Tensor) -> Tensor:
    """:func:`genome_ids` in torch on any device (a GPU's way; equal to the numpy twin)."""
    _check(genomes)
    d = genomes.shape[-1]
    n = math.prod(genomes.shape[:-1])
    flat = genomes.reshape(n, d)
    mult, salt = _consts_t(d, genomes.device)
    out = torch.empty(n, dtype=torch.int64, device=genomes.device)
    rows = max(1, _CPU_BLOCK // max(d, 1)) if genomes.device.type == "cpu" else max(n, 1)
    for a in range(0, n, rows):
        x = flat[a : a + rows]
        if x.is_floating_point():
            x = x.to(torch.float32) + 0.0  # IEEE: -0.0 + 0.0 == +0.0
            # Every NaN to the one NaN (float32 of Python's nan: 0x7fc00000, numpy's too);
            # nan_to_num is a vectorised pass, where() over a bool mask five times slower.
            torch.nan_to_num_(x, nan=_NAN, posinf=_INF, neginf=-_INF)
            v = x.view(torch.int32).to(torch.int64)
        else:
            v = x.to(torch.int64)
        v = torch.addcmul(salt, v, mult)  # v * C_j + S_j in one pass (wraps mod 2**64)
        torch.sum(_mix_(v), dim=-1, dtype=torch.int64, out=out[a : a + rows])
    out += _signed(d * _GOLDEN)
    return _mix_(out).reshape(genomes.shape[:-1])


def with_ids(state: IslandState) -> IslandState:
    """``state`` with its ids computed if they are None (see :class:`IslandState`)."""
    if state.ids is not None:
        return state
    return state._replace(ids=genome_ids(state.genomes))


def elite(state: IslandState, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The best ``k`` individuals of every island, best first.

    Returns ``(genomes [K, k, D], scores [K, k], ids [K, k], origin [K, k])``. Ties keep
    population order (stable sort), so the result is deterministic. Where the state's ids
    are None only the ``k`` elites are hashed.
    """
    p = state.scores.shape[1]
    if not 0 <= k <= p:
        raise ConfigError(f"elite: k={k} must be within [0, pop={p}]")
    order = torch.sort(state.scores, dim=1, stable=True).indices[:, :k]
    d = state.genomes.shape[-1]
    g = torch.gather(state.genomes, 1, order[..., None].expand(-1, -1, d))
    ids = genome_ids(g) if state.ids is None else torch.gather(state.ids, 1, order)
    return g, torch.gather(state.scores, 1, order), ids, torch.gather(state.origin, 1, order)


def _member(values: Tensor, rows: Tensor) -> Tensor:
    """``out[k, c] = values[c] in rows[k]`` for values [C] and rows [K, P], without [K, C, P]."""
    v = values[None, :].expand(rows.shape[0], -1).contiguous()
    if rows.shape[1] == 0:
        return torch.zeros(v.shape, dtype=torch.bool, device=v.device)
    srt = torch.sort(rows, dim=1).values
    pos = torch.searchsorted(srt, v).clamp_(max=rows.shape[1] - 1)
    return torch.gather(srt, 1, pos) == v


def select_migrants(
    cand_scores: Tensor,
    cand_ids: Tensor,
    cand_origin: Tensor,
    island_ids: Tensor,
    resident_ids: Tensor,
    migrants: int,
    topology: str,
    n_islands: int,
) -> tuple[Tensor, Tensor]:
    """Choose up to ``migrants`` candidates for each target island, best (lowest score) first.

    A candidate ``c`` is eligible for island ``k`` when its score is finite, its id is not
    among ``resident_ids[k]``, and ``cand_origin`` (the island that sends it: where it lives
    now, not where it was born) fits the topology: ``"pool"`` takes from any
    island but ``k`` itself, ``"ring"`` only from island ``(island_ids[k] - 1) % n_islands``.
    Among eligible candidates sharing an id only the best copy counts, so no id is chosen
    twice for one island.

    Returns ``(idx [K, m], valid [K, m])``: ``idx`` indexes the candidates; where ``valid``
    is False the slot is padding (idx 0) and must be ignored. Valid slots come first.
    """
    if migrants < 0:
        raise ConfigError(f"select_migrants: migrants={migrants} must be >= 0")
    if topology not in ("pool", "ring"):
        raise ConfigError(f"select_migrants: unknown topology {topology!r} (pool | ring)")
    if n_islands < 1:
        raise ConfigError(f"select_migrants: n_islands={n_islands} must be >= 1")
    dev = cand_scores.device
    k_count, c = island_ids.shape[0], cand_scores.shape[0]
    # Order candidates by (id, score, index) with two stable sorts, so that copies of one id
    # are contiguous and the best copy of each comes first within its run.
    p1 = torch.sort(cand_scores, stable=True).indices
    p2 = torch.sort(cand_ids[p1], stable=True).indices
    perm = p1[p2]
    s_ids, s_scores, s_origin = cand_ids[perm], cand_scores[perm], cand_origin[perm]

    isl = island_ids.to(s_origin.dtype)[:, None]
    if topology == "pool":
        ok = s_origin[None, :] != isl
    else:
        ok = s_origin[None, :] == torch.remainder(isl - 1, n_islands)
    ok = ok & torch.isfinite(s_scores)[None, :] & ~_member(s_ids, resident_ids)

    # Keep a candidate only if no eligible copy of its id comes earlier in its run: compare
    # the exclusive running count of eligible candidates with its value at the run's start.
    ar = torch.arange(c, device=dev)
    new_run = torch.ones(c, dtype=torch.bool, device=dev)
    if c > 1:
        new_run[1:] = s_ids[1:] != s_ids[:-1]
    run_start = torch.cummax(torch.where(new_run, ar, torch.zeros_like(ar)), dim=0).values
    oki = ok.to(torch.int64)
    excl = torch.cumsum(oki, dim=1) - oki
    keep = ok & (excl == excl[:, run_start])

    inf = torch.full((), float("inf"), dtype=s_scores.dtype, device=dev)
    masked = torch.where(keep, s_scores[None, :], inf)
    order = torch.sort(masked, dim=1, stable=True).indices[:, :migrants]
    valid = torch.gather(keep, 1, order)
    idx = torch.where(valid, perm[order], torch.zeros_like(order))
    m_got = order.shape[1]
    if m_got < migrants:  # fewer candidates than slots: pad
        pad = migrants - m_got
        idx = torch.cat([idx, idx.new_zeros(k_count, pad)], dim=1)
        valid = torch.cat([valid, valid.new_zeros(k_count, pad)], dim=1)
    return idx, valid


def inject(
    state: IslandState,
    island_rows: Tensor | None,
    migrant_genomes: Tensor,
    migrant_scores: Tensor,
    migrant_ids: Tensor,
    migrant_origin: Tensor,
    valid: Tensor,
    extra_defaults: dict[str, float],
    valid_first: bool = False,
) -> IslandState:
    """Replace each island's worst individuals with its valid migrants.

    ``island_rows``: distinct row indices ``[R]`` into the state's island dimension that the
    migrant tensors (``[R, m, ...]``) are meant for, or None for all ``K`` rows (R = K).
    Island ``r`` loses its ``valid[r].sum()`` worst individuals (highest score, ties broken
    by position), which become its valid migrants with their scores, ids and origin as
    given; every ``extra`` field of an injected individual is set to ``extra_defaults``.
    Everything else is unchanged. Returns a new state; the input is not modified.
    ``valid_first``: the caller vouches that each row's valid slots come first (as
    :func:`select_migrants` returns them), which saves sorting them there.
    """
    p = state.genomes.shape[1]
    m = valid.shape[1]
    if m > p:
        raise ConfigError(f"inject: {m} migrant slots exceed the population size {p}")
    missing = [name for name in state.extra if name not in extra_defaults]
    if missing:
        raise ConfigError(f"inject: extra_defaults lacks a value for {missing}")
    state = with_ids(state)
    rows = island_rows
    sub = state if rows is None else state._replace(
        genomes=state.genomes[rows], scores=state.scores[rows], ids=state.ids[rows],
        origin=state.origin[rows], extra={n: t[rows] for n, t in state.extra.items()})
    r = sub.scores.shape[0]
    if valid.shape[0] != r or migrant_genomes.shape[:2] != (r, m):
        raise ConfigError(f"inject: migrant tensors {tuple(migrant_genomes.shape)} / valid "
                          f"{tuple(valid.shape)} do not match {r} target rows")

    # Valid migrants first (stable), paired with the worst residents first.
    if valid_first:
        mo, ok = None, valid
    else:
        mo = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
        ok = torch.gather(valid, 1, mo)
    worst = torch.sort(sub.scores, dim=1, descending=True, stable=True).indices[:, :m]

    def put(cur: Tensor, new: Tensor | float) -> Tensor:
        return _put(cur, new, worst, mo, ok)

    out = sub._replace(
        genomes=put(sub.genomes, migrant_genomes),
        scores=put(sub.scores, migrant_scores),
        ids=put(sub.ids, migrant_ids),
        origin=put(sub.origin, migrant_origin),
        extra={n: put(t, float(extra_defaults[n])) for n, t in sub.extra.items()},
    )
    if rows is None:
        return out
    return state._replace(
        genomes=state.genomes.index_copy(0, rows, out.genomes),
        scores=state.scores.index_copy(0, rows, out.scores),
        ids=state.ids.index_copy(0, rows, out.ids),
        origin=state.origin.index_copy(0, rows, out.origin),
        extra={n: t.index_copy(0, rows, out.extra[n]) for n, t in state.extra.items()},
    )


def _put(cur: Tensor, new: Tensor | float, worst: Tensor, mo: Tensor | None,
         ok: Tensor) -> Tensor:
    """``cur`` (``[R, P]`` or ``[R, P, D]``) with its ``worst`` rows replaced by ``new`` where
    ``ok`` (``new`` reordered by ``mo`` first, unless None). Slots without a valid migrant write
    back the resident's own value: a no-op scatter with distinct indices per row, hence
    deterministic on every device."""
    if cur.dim() == 3:
        d = cur.shape[2]
        wi = worst[..., None].expand(-1, -1, d)
        old = torch.gather(cur, 1, wi)
        if isinstance(new, Tensor):
            new = new.to(cur.dtype)
            if mo is not None:
                new = torch.gather(new, 1, mo[..., None].expand(-1, -1, d))
        return cur.scatter(1, wi, torch.where(ok[..., None], new, old))
    old = torch.gather(cur, 1, worst)
    if isinstance(new, Tensor):
        new = new.to(cur.dtype)
        if mo is not None:
            new = torch.gather(new, 1, mo)
    return cur.scatter(1, worst, torch.where(ok, new, old))


__all__ = ["device_genome_ids", "elite", "genome_ids", "genome_ids_numpy", "inject",
           "select_migrants", "with_ids"]
