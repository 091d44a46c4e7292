"""The algorithm plug point: functional island state and the :class:`Algorithm` protocol.

State is a NamedTuple of tensors whose two leftmost dimensions are ``[K islands, P
individuals]`` (EvoTorch's batch-leftmost convention), so one ``step`` advances every island a
worker hosts in a single vectorised update. Algorithms are pure tensor code: the worker owns
time, I/O, checkpoints and migration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from islandsync.config import RealGenome, TokenGenome
from islandsync.errors import ConfigError
from islandsync.search.population import genome_ids
from islandsync.search.state import IslandState


Evaluate = Callable[[Tensor], Tensor]
"""genomes [K, N, D] -> scores [K, N] float32, minimisation, NaN already replaced by the caller."""


@runtime_checkable
class Algorithm(Protocol):
    """What an island algorithm is. Any object with these members plugs in (pygmo-style);
    :func:`check_algorithm` verifies one when it is plugged, not when it first fails.

    Must implement:
        name: str
            Short name, recorded in checkpoints and metrics.
        pop_size: int
            P, individuals per island.
        extra_defaults: dict[str, float]
            One entry per ``IslandState.extra`` field: the value an individual gets when it
            arrives from elsewhere (a migrant) or is created by :func:`initial_state`.
            ``{}`` when the algorithm keeps no per-individual state.
        init(island_ids [K] int64, generator) -> Tensor [K, P, D]
            Random genomes on ``generator.device``, within the genome's bounds or vocabulary.
        step(state, island_ids [K], evaluate, generator) -> IslandState
            One generation of all K islands at once. Calls ``evaluate`` exactly once, with
            one batch ``[K, N, D]`` of new genomes (a GA with elitism passes only its
            P - elite offspring). Returns a new state of the same shapes and dtypes;
            new genomes get ``origin = island_ids[:, None]``, survivors keep theirs. ``ids``
            is None (the engine hashes genomes when it needs their ids: the built-ins do
            this) or ``genome_ids(genomes)`` for all of them, never partly updated. Must
            be deterministic given the generator, and contain no Python loop over islands
            or individuals. The input state is not modified.

    May implement:
        start(state) -> IslandState
            Called by :func:`initial_state` on fresh, evaluated islands (extra fields at their
            defaults): returns the state with its ``island`` tensors (and extra fields) as a
            first generation needs them. Without it, ``island`` is ``{}``.

    ``step`` may evaluate any number N of genomes per island (a distribution-based algorithm
    samples lambda, which need not be P, and keeps the best P it has seen as its population).
    Nothing else is called. Calls are never concurrent for one object.
    """

    name: str
    pop_size: int
    extra_defaults: dict[str, float]

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor: ...

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState: ...


def check_algorithm(obj: object) -> None:
    """Raise :class:`ConfigError` naming the first missing or malformed required member."""
    label = f"algorithm {type(obj).__name__}"
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{label}: must have a non-empty str attribute 'name'")
    pop = getattr(obj, "pop_size", None)
    if isinstance(pop, bool) or not isinstance(pop, int) or pop < 1:
        raise ConfigError(f"{label}: must have an int attribute 'pop_size' >= 1")
    extra = getattr(obj, "extra_defaults", None)
    if not isinstance(extra, Mapping) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) for k, v in extra.items()):
        raise ConfigError(f"{label}: must have 'extra_defaults', a dict of str -> float")
    for method in ("init", "step"):
        if not callable(getattr(obj, method, None)):
            raise ConfigError(f"{label}: must implement method {method!r}")


def check_settings(algorithm: Any, config: Any, genome: Any) -> None:
    """What a built-in algorithm checks of its arguments, and all it checks: that ``config``
    is its own settings model (:mod:`islandsync.config.algorithms`, which declares every
    limit and has validated them) and ``genome`` a genome model of a kind the settings fit.

    Raises:
        ConfigError: naming the setting (``algorithm.crossover: sbx does not apply to a
            tokens genome``) or the wrong type.
    """
    name, model = algorithm.name, type(algorithm).Config
    if not isinstance(config, model):
        raise ConfigError(f"algorithm {name}: settings must be a {model.__name__}, "
                          f"got {type(config).__name__}")
    if not isinstance(genome, (RealGenome, TokenGenome)):
        raise ConfigError(f"algorithm {name}: genome must be a RealGenome or TokenGenome, "
                          f"got {type(genome).__name__}")
    if bad := config.genome_conflicts(genome.kind):
        raise ConfigError("; ".join(f"algorithm.{field}: {msg}" for field, msg in bad))


class Uniforms:
    """A buffer of one shape, device and float dtype, refilled with uniforms on [0, 1) by
    each :meth:`draw` (scratch: what a draw returns is overwritten by the next one). Kept
    from one generation to the next: a fresh buffer was a page-faulting allocation every
    time. A float64 draw is ``torch.rand``'s, value for value.

    float32 on a CPU, with an even number of elements: 23-bit uniforms built from random bits, two
    from each 64-bit draw of ``random_()`` (which gives 63 random bits: bits 0-22 and 32-54
    are used), as ``1.m - 1`` from a float32 with mantissa ``m``. torch's ``uniform_()``
    costs one generator call per value, which was a quarter of a small DE generation; this
    is 0.6-0.8x its time (one ``random_`` of half the count and three vectorised passes in
    place, on bit views made once). Elsewhere (a GPU's generator is fast, odd sizes):
    ``uniform_()``. Deterministic given the generator's state either way.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device,
                 dtype: torch.dtype = torch.float32) -> None:
        self.out = torch.empty(shape, dtype=dtype, device=device)
        self._bits: tuple[Tensor, Tensor] | None = None
        if self.out.device.type == "cpu" and self.out.numel() % 2 == 0 \
                and dtype == torch.float32:
            wide = self.out.view(-1).view(torch.int64)
            self._bits = (wide, wide.view(torch.int32))

    def draw(self, generator: torch.Generator) -> Tensor:
        if self._bits is None:
            return self.out.uniform_(generator=generator)
        wide, narrow = self._bits
        wide.random_(generator=generator)
        # [1, 2): 23 random mantissa bits. 0-dim operands: a Python number costs a wrapping
        # tensor each call, which at small sizes is a third of the op.
        narrow.bitwise_and_(_MANTISSA).bitwise_or_(_ONE_BITS)
        return self.out.sub_(_ONE)


_MANTISSA = torch.tensor(0x7FFFFF, dtype=torch.int32)
_ONE_BITS = torch.tensor(0x3F800000, dtype=torch.int32)
_ONE = torch.tensor(1.0)


def initial_state(algorithm: Algorithm, island_ids: Tensor, evaluate: Evaluate,
                  generator: torch.Generator, genomes: Tensor | None = None) -> IslandState:
    """Fresh islands: ``algorithm.init`` (unless ``genomes`` are given), one ``evaluate`` of
    all of them, ids, origin and extra fields at their defaults."""
    if genomes is None:
        genomes = algorithm.init(island_ids, generator)
    k, p = genomes.shape[:2]
    # Scores of the genomes' float dtype (the run's dtype); float32 for token genomes.
    floats = genomes.dtype if genomes.is_floating_point() else torch.float32
    scores = evaluate(genomes).to(floats)
    origin = island_ids.to(device=genomes.device, dtype=torch.int64)[:, None].expand(k, p)
    extra = {n: torch.full((k, p), float(v), dtype=torch.float32, device=genomes.device)
             for n, v in algorithm.extra_defaults.items()}
    state = IslandState(genomes, scores, genome_ids(genomes), origin.contiguous(), extra, {})
    start = getattr(algorithm, "start", None)
    return start(state) if callable(start) else state


__all__ = ["Algorithm", "Evaluate", "IslandState", "Uniforms", "check_algorithm", "check_settings",
           "initial_state"]
