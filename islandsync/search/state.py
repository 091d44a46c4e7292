"""The state of a worker's islands, stacked: one home, imported by the population maths
(``population``) and by every algorithm (``algorithms/``), so neither imports the other for it."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor


class IslandState(NamedTuple):
    """Every island of a worker, stacked. All tensors live on one device.

    genomes: [K, P, D]; float32 (or the run's ``dtype``, float64) for real genomes, int64
             for tokens.
    scores:  [K, P] float32 (float64 with float64 genomes), minimisation (lower is better;
             +inf is worst / unevaluated).
    ids:     [K, P] int64 content-hash ids, ``genome_ids(genomes)``; or None where they have not
             been computed since the genomes changed (a step need not hash its offspring: the
             engine computes ids only where they are read, with :func:`~islandsync.search.
             population.with_ids`). Never stale: either right or None.
    origin:  [K, P] int64 global island number where each genome was born.
    extra:   algorithm-specific per-individual state, each tensor [K, P] (DE: "F", "CR"; GA: {}).
    island:  algorithm-specific per-island state, each tensor [K, ...] (CMA-ES: mean [K, D],
             sigma [K], cov [K, D, D], paths, restart counters; SHADE: archive [K, P, D] and
             its success memories; GA and DE: {}). Shapes and dtypes are those the settings
             model declares (``island_frames``): a checkpoint stores one frame of each, and
             a resumed island continues from them exactly.
    """

    genomes: Tensor
    scores: Tensor
    ids: Tensor | None
    origin: Tensor
    extra: dict[str, Tensor]
    island: dict[str, Tensor] = {}  # never mutated: states are replaced, not changed
