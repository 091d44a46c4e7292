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

from islandsync.config import CROSSOVERS, MUTATIONS, GAConfig, RealGenome, TokenGenome
from islandsync.search.state import IslandState
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box


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
    Config = GAConfig

    def __init__(self, config: GAConfig, genome: RealGenome | TokenGenome,
                 dtype: str = "float32") -> None:
        """``config`` is the run spec's ``algorithm`` (it holds every limit); ``genome`` its
        ``problem.genome``. Raises ConfigError for settings that do not fit the genome."""
        check_settings(self, config, genome)
        kind = self.kind = genome.kind
        self.config, self.dim = config, genome.width
        self.lower = genome.lower if isinstance(genome, RealGenome) else None
        self.upper = genome.upper if isinstance(genome, RealGenome) else None
        self.vocab = genome.vocab if isinstance(genome, TokenGenome) else None
        self.box = Box(genome, dtype) if isinstance(genome, RealGenome) else None
        self.pop_size, self.elite, self.tournament = config.pop, config.elite, config.tournament
        # None in the settings: the genome kind's first (default) operator.
        self.crossover = config.crossover or CROSSOVERS[kind][0]
        self.mutation = config.mutation or MUTATIONS[kind][0]
        self.crossover_rate, self.sbx_eta = config.crossover_rate, config.sbx_eta
        self.mutation_rate = 1.0 / self.dim if config.mutation_rate is None \
            else config.mutation_rate
        self.mutation_sigma, self.poly_eta = config.mutation_sigma, config.poly_eta
        self.extra_defaults: dict[str, float] = {}
        self._vocab = self.vocab or 0  # a plain int for the token operators

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
        return self.box.uniform(generator, (k, self.pop_size, self.dim))

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
        if self.box is not None:
            children = self.box.repair(children)  # integer genes, after the bounds

        child_scores = evaluate(children).to(scores.dtype)
        origin = island_ids.to(device=genomes.device, dtype=torch.int64)[:, None].expand(k, n)

        def survivors(t: Tensor) -> Tensor:
            idx = keep if t.dim() == 2 else keep[..., None].expand(-1, -1, d)
            return torch.gather(t, 1, idx)

        return IslandState(
            genomes=torch.cat([survivors(genomes), children], dim=1),
            scores=torch.cat([survivors(scores), child_scores], dim=1),
            ids=None,  # hashed by the engine only where read (migration, snapshots)
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
        lo, hi = self.box.bounds(a.device)
        eta = self.sbx_eta
        k, m, d = a.shape
        u = _rand(g, k, m, d)
        # One draw decides both: a gene is crossed when r < 1/2 (probability 1/2), and the
        # side only matters for crossed genes, where r < 1/4 is a fair coin independent of
        # being crossed. A [K, m, D] draw is the costliest op here, so two, not three.
        r = _rand(g, k, m, d)
        var, swap = r < 0.5, r < 0.25
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
        h = _rand(g, *x.shape)
        hit = h < self.mutation_rate
        if self.kind == "tokens":
            new = torch.randint(0, self._vocab, x.shape, generator=g, device=g.device)
            return torch.where(hit, new, x)
        lo, hi = self.box.bounds(x.device)
        rng = hi - lo
        if self.mutation == "resample":
            new = lo + rng * _rand(g, *x.shape)
        elif self.mutation == "gaussian":
            new = x + self.mutation_sigma * rng * torch.randn(
                x.shape, generator=g, device=g.device, dtype=torch.float32)
        else:  # Deb's bounded polynomial mutation
            eta = self.poly_eta
            # Given a hit (h < rate), h / rate is uniform on [0, 1) and independent of it:
            # the step's uniform without a second draw (only hit genes use it).
            u = (h / self.mutation_rate).clamp_(max=1.0 - 2.0**-24)
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
