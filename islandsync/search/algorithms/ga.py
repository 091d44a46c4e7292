"""Generational genetic algorithm with elitism, vectorised over islands and individuals.

Per island and generation: the best ``elite`` parents survive unchanged (not re-evaluated);
the other ``P - elite`` places go to offspring bred by tournament selection, crossover and
mutation, evaluated in one batch ``[K, P - elite, D]``.

Real genomes: SBX crossover (Deb & Agrawal 1995, the bounded form used by NSGA-II and
pygmo's sga, each gene crossed with probability 1/2) and Deb's bounded polynomial mutation;
or uniform / one-point crossover and Gaussian / resampling mutation. Children are clamped
into the box. Token genomes: uniform or one-point crossover and per-gene resampling.
"""

from __future__ import annotations

import torch
from torch import Tensor

from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import Evaluate, IslandState
from islandsync.search.population import genome_ids

REAL_CROSSOVERS: tuple[str, ...] = ("sbx", "uniform", "one_point")
TOKEN_CROSSOVERS: tuple[str, ...] = ("uniform", "one_point")
REAL_MUTATIONS: tuple[str, ...] = ("polynomial", "gaussian", "resample")
TOKEN_MUTATIONS: tuple[str, ...] = ("resample",)


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    # float32 whatever torch's default dtype is: states are float32 by contract.
    return torch.rand(shape, generator=g, device=g.device, dtype=torch.float32)


class GeneticAlgorithm:
    """Generational GA with elitism. See the module docstring; the Algorithm protocol is in
    :mod:`islandsync.search.algorithms.base`.

    Defaults are the NSGA-II real-coded settings (SBX eta 15 at rate 0.9, polynomial mutation
    eta 20 at rate 1/D), a widely used and robust baseline; tournaments of 3 add a little more
    selection pressure than binary ones, which pays off at the small budgets of an island.
    """

    name = "ga"

    def __init__(self, *, kind: str, dim: int, lower: float | None = None,
                 upper: float | None = None, vocab: int | None = None, pop: int = 64,
                 elite: int = 2, tournament: int = 3, crossover: str | None = None,
                 crossover_rate: float = 0.9, sbx_eta: float = 15.0,
                 mutation: str | None = None, mutation_rate: float | None = None,
                 mutation_sigma: float = 0.1, poly_eta: float = 20.0) -> None:
        if kind not in ("real", "tokens"):
            raise ConfigError(f"ga: genome kind {kind!r} must be 'real' or 'tokens'")
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"ga: genome dim/length={dim!r} must be an int >= 1")
        if kind == "real":
            if lower is None or upper is None or not float(lower) < float(upper):
                raise ConfigError(f"ga: genome lower={lower!r} must be below upper={upper!r}")
            crossover = crossover or "sbx"
            mutation = mutation or "polynomial"
            allowed_x, allowed_m = REAL_CROSSOVERS, REAL_MUTATIONS
        else:
            if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
                raise ConfigError(f"ga: genome vocab={vocab!r} must be an int >= 1")
            crossover = crossover or "uniform"
            mutation = mutation or "resample"
            allowed_x, allowed_m = TOKEN_CROSSOVERS, TOKEN_MUTATIONS
        if crossover not in allowed_x:
            raise ConfigError(f"ga: crossover={crossover!r} is not valid for {kind} genomes "
                              f"(choose from {allowed_x})")
        if mutation not in allowed_m:
            raise ConfigError(f"ga: mutation={mutation!r} is not valid for {kind} genomes "
                              f"(choose from {allowed_m})")
        if isinstance(pop, bool) or not isinstance(pop, int) or pop < 2:
            raise ConfigError(f"ga: pop={pop!r} must be an int >= 2")
        if isinstance(elite, bool) or not isinstance(elite, int) or not 0 <= elite < pop:
            raise ConfigError(f"ga: elite={elite!r} must be an int in [0, pop={pop})")
        if isinstance(tournament, bool) or not isinstance(tournament, int) \
                or not 1 <= tournament <= pop:
            raise ConfigError(f"ga: tournament={tournament!r} must be an int in [1, pop={pop}]")
        if mutation_rate is None:
            mutation_rate = 1.0 / dim
        for field, value, lo, hi in (("crossover_rate", crossover_rate, 0.0, 1.0),
                                     ("mutation_rate", mutation_rate, 0.0, 1.0),
                                     ("sbx_eta", sbx_eta, 0.0, float("inf")),
                                     ("poly_eta", poly_eta, 0.0, float("inf")),
                                     ("mutation_sigma", mutation_sigma, 0.0, float("inf"))):
            if not isinstance(value, (int, float)) or not lo <= float(value) <= hi:
                raise ConfigError(f"ga: {field}={value!r} must be a number in [{lo}, {hi}]")
        self.kind, self.dim, self.vocab = kind, dim, vocab
        self.lower = None if lower is None else float(lower)
        self.upper = None if upper is None else float(upper)
        self.pop_size, self.elite, self.tournament = pop, elite, tournament
        self.crossover, self.mutation = crossover, mutation
        self.crossover_rate, self.sbx_eta = float(crossover_rate), float(sbx_eta)
        self.mutation_rate, self.mutation_sigma = float(mutation_rate), float(mutation_sigma)
        self.poly_eta = float(poly_eta)
        self.extra_defaults: dict[str, float] = {}
        # Plain floats/ints for the operators (validated above for the genome kind in use).
        self._lo, self._hi = self.lower or 0.0, self.upper or 0.0
        self._vocab = vocab or 0

    def __repr__(self) -> str:
        return (f"GeneticAlgorithm(kind={self.kind!r}, dim={self.dim}, pop={self.pop_size}, "
                f"elite={self.elite}, tournament={self.tournament}, crossover={self.crossover!r}"
                f", mutation={self.mutation!r}, mutation_rate={self.mutation_rate:.4g})")

    # ------------------------------------------------------------------ protocol

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        k = island_ids.shape[0]
        if self.kind == "tokens":
            return torch.randint(0, self._vocab, (k, self.pop_size, self.dim),
                                 generator=generator, device=generator.device)
        lo, hi = self._lo, self._hi
        return lo + (hi - lo) * _rand(generator, k, self.pop_size, self.dim)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        genomes, scores = state.genomes, state.scores
        k, p, d = genomes.shape
        n = p - self.elite
        order = torch.sort(scores, dim=1, stable=True).indices
        keep = order[:, : self.elite]

        pairs = (n + 1) // 2
        # Tournament selection with replacement: t random entrants, the lowest score wins.
        entrants = torch.randint(0, p, (k, 2 * pairs, self.tournament), generator=g,
                                 device=g.device)
        won = torch.gather(scores[:, None, :].expand(k, 2 * pairs, p), 2, entrants).argmin(dim=2)
        parents_idx = torch.gather(entrants, 2, won[..., None])[..., 0]
        parents = torch.gather(genomes, 1, parents_idx[..., None].expand(-1, -1, d))
        a, b = parents[:, 0::2], parents[:, 1::2]
        c1, c2 = self._crossover(a, b, g)
        children = self._mutate(torch.cat([c1, c2], dim=1)[:, :n], g)

        child_scores = evaluate(children).to(torch.float32)
        origin = island_ids.to(device=genomes.device, dtype=torch.int64)[:, None].expand(k, n)

        def survivors(t: Tensor) -> Tensor:
            idx = keep if t.dim() == 2 else keep[..., None].expand(-1, -1, d)
            return torch.gather(t, 1, idx)

        return IslandState(
            genomes=torch.cat([survivors(genomes), children], dim=1),
            scores=torch.cat([survivors(scores), child_scores], dim=1),
            ids=torch.cat([survivors(state.ids), genome_ids(children)], dim=1),
            origin=torch.cat([survivors(state.origin), origin], dim=1),
            extra={},
        )

    # ------------------------------------------------------------------ operators

    def _crossover(self, a: Tensor, b: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        k, m, d = a.shape
        # One draw per pair decides whether it is crossed at all.
        crossed = _rand(g, k, m, 1) < self.crossover_rate
        if self.crossover == "sbx":
            c1, c2 = self._sbx(a, b, g)
        else:
            if self.crossover == "uniform":
                swap = _rand(g, k, m, d) < 0.5
            else:  # one point: genes at or after a cut in [1, D-1] come from the other parent
                cut = torch.randint(1, max(d, 2), (k, m, 1), generator=g, device=g.device)
                swap = torch.arange(d, device=a.device) >= cut
            c1, c2 = torch.where(swap, b, a), torch.where(swap, a, b)
        return torch.where(crossed, c1, a), torch.where(crossed, c2, b)

    def _sbx(self, a: Tensor, b: Tensor, g: torch.Generator) -> tuple[Tensor, Tensor]:
        lo, hi, eta = self._lo, self._hi, self.sbx_eta
        k, m, d = a.shape
        u = _rand(g, k, m, d)
        var = _rand(g, k, m, d) < 0.5  # each gene crossed with probability 1/2
        swap = _rand(g, k, m, d) < 0.5  # which child gets which side
        y1, y2 = torch.minimum(a, b), torch.maximum(a, b)
        diff = y2 - y1
        active = var & (diff > 1e-14)
        span = torch.where(active, diff, torch.ones_like(diff))
        inv = 1.0 / (eta + 1.0)

        def betaq(beta: Tensor) -> Tensor:
            # Spread factor with the distribution truncated so the child stays in the box.
            alpha = 2.0 - beta.pow(-(eta + 1.0))
            ua = u * alpha
            # Pick the branch before the (costly) power: one pow per gene, not two.
            base = torch.where(u <= 1.0 / alpha, ua, 1.0 / (2.0 - ua).clamp(min=1e-30))
            return base.clamp(min=0.0).pow(inv)

        c1 = 0.5 * (y1 + y2 - betaq(1.0 + 2.0 * (y1 - lo) / span) * diff)
        c2 = 0.5 * (y1 + y2 + betaq(1.0 + 2.0 * (hi - y2) / span) * diff)
        c1, c2 = c1.clamp(lo, hi), c2.clamp(lo, hi)
        c1, c2 = torch.where(swap, c2, c1), torch.where(swap, c1, c2)
        return torch.where(active, c1, a), torch.where(active, c2, b)

    def _mutate(self, x: Tensor, g: torch.Generator) -> Tensor:
        hit = _rand(g, *x.shape) < self.mutation_rate
        if self.kind == "tokens":
            new = torch.randint(0, self._vocab, x.shape, generator=g, device=g.device)
            return torch.where(hit, new, x)
        lo, hi = self._lo, self._hi
        rng = hi - lo
        if self.mutation == "resample":
            new = lo + rng * _rand(g, *x.shape)
        elif self.mutation == "gaussian":
            new = x + self.mutation_sigma * rng * torch.randn(
                x.shape, generator=g, device=g.device, dtype=torch.float32)
        else:  # Deb's bounded polynomial mutation
            eta = self.poly_eta
            u = _rand(g, *x.shape)
            lower_half = u < 0.5
            # Distance to the bound the step heads for, as a fraction of the range.
            near = torch.where(lower_half, x - lo, hi - x) / rng
            xy = (1.0 - near).clamp(min=0.0).pow(eta + 1.0)
            val = torch.where(lower_half, 2.0 * u + (1.0 - 2.0 * u) * xy,
                              2.0 * (1.0 - u) + 2.0 * (u - 0.5) * xy)
            q = val.clamp(min=0.0).pow(1.0 / (eta + 1.0))
            dq = torch.where(lower_half, q - 1.0, 1.0 - q)
            new = x + dq * rng
        return torch.where(hit, new.clamp(lo, hi), x)


__all__ = ["GeneticAlgorithm"]
