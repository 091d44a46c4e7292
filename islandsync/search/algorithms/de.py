"""jDE: self-adaptive differential evolution (Brest, Greiner, Boskovic, Mernik, Zumer 2006),
vectorised over islands and individuals.

DE/rand/1/bin. Every individual carries its own F and CR (``IslandState.extra``). Each
generation, with probability ``tau_f`` an individual's trial F is redrawn uniformly from
[f_lower, f_upper], and with probability ``tau_cr`` its trial CR uniformly from [0, 1]; the
mutant is ``x_r1 + F (x_r2 - x_r3)`` with r1, r2, r3 and i mutually distinct; binomial
crossover takes each gene from the mutant with probability CR and always gene ``jrand``.

Bounds: a mutant gene outside the box is redrawn uniformly between the parent's gene and the
violated bound ("random reinitialisation between parent and bound"), which keeps the search
near the boundary where the optimum may lie (schwefel's is close to it) without piling
individuals exactly on it the way clamping does.

Selection is greedy and one-to-one: the trial replaces its target when its score is <= the
target's, and the trial F and CR are kept only then. Real genomes only.
"""

from __future__ import annotations

import torch
from torch import Tensor

from islandsync.config import DEConfig, RealGenome
from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import Evaluate, IslandState, check_settings
from islandsync.search.population import genome_ids


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    # float32 whatever torch's default dtype is: states are float32 by contract.
    return torch.rand(shape, generator=g, device=g.device, dtype=torch.float32)


def distinct_indices(k: int, p: int, n: int, g: torch.Generator) -> Tensor:
    """``[k, p, n]`` indices in ``[0, p)``, uniform, such that ``out[.., i, :]`` and ``i`` are
    all distinct. Draw from the ``p - m`` values left after ``m`` exclusions, then step over
    each excluded value in ascending order: no rejection loop, no ``[p, p]`` sort."""
    if n + 1 > p:
        raise ConfigError(f"de: needs pop >= {n + 1} to draw {n} distinct partners, got {p}")
    excluded = torch.arange(p, device=g.device).expand(k, p)[..., None]  # [k, p, 1]
    picks = []
    for m in range(1, n + 1):  # n is 3: a loop over draws, never over individuals
        r = torch.randint(0, p - m, (k, p), generator=g, device=g.device)
        srt = torch.sort(excluded, dim=-1).values
        for j in range(m):
            r = r + (r >= srt[..., j]).to(r.dtype)
        picks.append(r)
        excluded = torch.cat([excluded, r[..., None]], dim=-1)
    return torch.stack(picks, dim=-1)


class DifferentialEvolution:
    """jDE on real genomes. See the module docstring.

    Defaults are Brest et al.'s: F starts at 0.5 and CR at 0.9, both re-drawn with
    probability 0.1 per generation, F in [0.1, 1.0].
    """

    name = "de"
    Config = DEConfig

    def __init__(self, config: DEConfig, genome: RealGenome) -> None:
        """``config`` is the run spec's ``algorithm`` (it holds every limit); ``genome`` its
        ``problem.genome``, which must be real."""
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.pop_size = config.pop
        self.f_init, self.cr_init = config.f_init, config.cr_init
        self.tau_f, self.tau_cr = config.tau_f, config.tau_cr
        self.f_lower, self.f_upper = config.f_lower, config.f_upper
        self.extra_defaults: dict[str, float] = {"F": self.f_init, "CR": self.cr_init}

    def __repr__(self) -> str:
        return (f"DifferentialEvolution(dim={self.dim}, pop={self.pop_size}, "
                f"F=[{self.f_lower}, {self.f_upper}], tau=({self.tau_f}, {self.tau_cr}))")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        k = island_ids.shape[0]
        return self.lower + (self.upper - self.lower) * _rand(generator, k, self.pop_size,
                                                              self.dim)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        x = state.genomes
        k, p, d = x.shape
        f_old, cr_old = state.extra["F"], state.extra["CR"]
        f = torch.where(_rand(g, k, p) < self.tau_f,
                        self.f_lower + _rand(g, k, p) * (self.f_upper - self.f_lower), f_old)
        cr = torch.where(_rand(g, k, p) < self.tau_cr, _rand(g, k, p), cr_old)

        r = distinct_indices(k, p, 3, g)
        pick = [torch.gather(x, 1, r[..., j, None].expand(-1, -1, d)) for j in range(3)]
        mutant = pick[0] + f[..., None] * (pick[1] - pick[2])

        # Out-of-box genes: uniform between the parent's gene and the violated bound.
        u = _rand(g, k, p, d)
        mutant = torch.where(mutant < self.lower, self.lower + u * (x - self.lower), mutant)
        mutant = torch.where(mutant > self.upper, self.upper - u * (self.upper - x), mutant)

        jrand = torch.randint(0, d, (k, p, 1), generator=g, device=g.device)
        take = (_rand(g, k, p, d) < cr[..., None]) | (torch.arange(d, device=x.device) == jrand)
        trial = torch.where(take, mutant, x).clamp(self.lower, self.upper)

        trial_scores = evaluate(trial).to(torch.float32)
        win = trial_scores <= state.scores
        born = island_ids.to(device=x.device, dtype=torch.int64)[:, None].expand(k, p)
        return IslandState(
            genomes=torch.where(win[..., None], trial, x),
            scores=torch.where(win, trial_scores, state.scores),
            ids=torch.where(win, genome_ids(trial), state.ids),
            origin=torch.where(win, born, state.origin),
            extra={"F": torch.where(win, f, f_old), "CR": torch.where(win, cr, cr_old)},
        )


__all__ = ["DifferentialEvolution", "distinct_indices"]
