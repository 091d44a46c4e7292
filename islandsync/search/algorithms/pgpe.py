"""PGPE, policy gradients with parameter-based exploration (Sehnke et al. 2010), with the
ClipUp optimiser (Toklu, Liskowski & Srivastava 2020), vectorised over islands: as EvoTorch
0.6's ``PGPE(optimizer="clipup")`` (its reference), its state is a centre, a per-gene
sigma and ClipUp's velocity, ``[K, D]`` each.

A generation samples lambda/2 antithetic pairs ``mu +- sigma * z``, ranks the lambda points
by score with centred linear utilities ``w`` (best +0.5, worst -0.5) and, with ``d_i = x_i -
mu`` the step of each point scored,

    g_mu    = sum_i w_i d_i / lambda,   g_sigma = sum_i w_i (d_i^2 - sigma^2) / sigma / lambda
    v       <- clip(momentum * v + lr_center * g_mu / |g_mu|, max_speed)     (ClipUp)
    mu      <- mu + v,   sigma <- sigma + lr_sigma * g_sigma, within 20 % of the old sigma

which for unrepaired samples is EvoTorch's pairwise formula ((w+ - w-)/2 and (w+ + w-)/2
per direction). A sample outside the box is clamped onto it (integer genes rounded) and a
migrant replaces one of the worst samples (:mod:`.sampling`); each enters with the step of
the point actually scored, a migrant's clipped to Mahalanobis length ``sqrt(D) + 2D/(D +
2)`` (Hansen 2011), as in SNES. The centre stays in the box, and the velocity is the step
the centre actually took. The population is the best P points seen.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from islandsync.config import PGPEConfig, RealGenome
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box
from islandsync.search.algorithms.sampling import clip_length, inject_samples, keep_best
from islandsync.search.state import IslandState


def centred_utilities(f: Tensor) -> Tensor:
    """``[K, lam]`` utilities of the scores ``f`` (minimised): linear in the rank, +0.5
    for the best, -0.5 for the worst (EvoTorch's ``centered`` ranking)."""
    lam = f.shape[1]
    order = torch.sort(f, dim=1, stable=True).indices
    w = 0.5 - torch.arange(lam, dtype=f.dtype, device=f.device) / (lam - 1)
    return torch.empty_like(f).scatter_(1, order, w.expand_as(f).contiguous())


def update(mean: Tensor, sigma: Tensor, velocity: Tensor, d: Tensor, f: Tensor,
           config: PGPEConfig, width: float) -> tuple[Tensor, Tensor, Tensor]:
    """One PGPE + ClipUp update of every island from the steps ``d`` [K, lam, D] of its
    scored points and their scores ``f`` [K, lam] (minimised): the new mean (not yet in
    the box), sigma and velocity."""
    lam = d.shape[1]
    w = centred_utilities(f).to(d.dtype)[..., None]
    s = sigma[:, None]
    g_mu = (w * d).sum(1) / lam
    g_sigma = (w * (d * d - s * s) / s).sum(1) / lam
    norm = g_mu.norm(dim=1, keepdim=True)
    lr = (config.lr_center or config.max_speed / 2) * width
    ascent = torch.where(norm > 0, g_mu / norm.clamp(min=1e-30) * lr, 0.0)
    v = config.momentum * velocity + ascent
    speed, limit = v.norm(dim=1, keepdim=True), config.max_speed * width
    v = torch.where(speed > limit, v * (limit / speed.clamp(min=1e-30)), v)
    change = config.sigma_max_change
    new_sigma = torch.minimum(torch.maximum(sigma + config.lr_sigma * g_sigma,
                                            sigma * (1 - change)), sigma * (1 + change))
    return mean + v, new_sigma, v


class PGPE:
    """PGPE with ClipUp on real genomes. See the module docstring."""

    name = "pgpe"
    Config = PGPEConfig

    def __init__(self, config: PGPEConfig, genome: RealGenome, dtype: str = "float32") -> None:
        check_settings(self, config, genome)
        self.config = config
        self.dim = genome.dim
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.samples = config.sample_count(genome.dim)
        radius = config.radius_init or 15 * config.max_speed
        self.sigma0 = radius * self.box.width / math.sqrt(genome.dim)
        self.extra_defaults: dict[str, float] = {"injected": 1.0}

    def __repr__(self) -> str:
        return (f"PGPE(dim={self.dim}, pop={self.pop_size}, lambda={self.samples}, "
                f"sigma0={self.sigma0:.4g}, max_speed={self.config.max_speed})")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def start(self, state: IslandState) -> IslandState:
        """The first distribution: centred on each island's best initial point, sigma0 in
        every gene, at rest."""
        k = state.genomes.shape[0]
        mean = state.genomes[torch.arange(k), state.scores.argmin(1)].clone()
        extra = {name: torch.zeros_like(t) for name, t in state.extra.items()}
        return state._replace(island={"mean": mean, "sigma": torch.full_like(mean, self.sigma0),
                                      "velocity": torch.zeros_like(mean)}, extra=extra)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        k, _, d = state.genomes.shape
        mean, sigma, velocity = (state.island[n] for n in ("mean", "sigma", "velocity"))
        # A garbled checkpoint or a numerical breakdown: such an island starts afresh at its
        # best point (no host sync: a where over [K, D]).
        ok = (torch.isfinite(mean).all(1) & torch.isfinite(sigma).all(1)
              & torch.isfinite(velocity).all(1) & (sigma > 0).all(1))[:, None]
        fresh = self.start(state).island
        mean, sigma, velocity = (torch.where(ok, a, fresh[n]) for a, n in
                                 ((mean, "mean"), (sigma, "sigma"), (velocity, "velocity")))
        lam = self.samples
        z = torch.randn((k, lam // 2, d), generator=g, device=g.device, dtype=mean.dtype)
        eps = sigma[:, None] * z
        raw = torch.cat([mean[:, None] + eps, mean[:, None] - eps], dim=1)
        lo, hi = self.box.bounds(raw.device)
        genomes = self.box.repair(raw.clamp(lo, hi))  # the points scored
        f = evaluate(genomes).to(state.scores.dtype)
        x, fu, replaced = inject_samples(
            state, genomes, f, torch.full((k,), lam, dtype=torch.int64, device=g.device))
        steps = x - mean[:, None]
        if bool(replaced.any()):  # a migrant's step, Hansen-clipped in units of sigma
            length = (steps / sigma[:, None]).norm(dim=-1)
            steps = torch.where(replaced[..., None],
                                steps * clip_length(length, d)[..., None], steps)
        new_mean, new_sigma, _ = update(mean, sigma, velocity, steps, fu, self.config,
                                        self.box.width)
        new_mean = new_mean.clamp(lo, hi)
        out = keep_best(state, genomes, f, ~replaced, island_ids)
        return out._replace(island={"mean": new_mean, "sigma": new_sigma,
                                    "velocity": new_mean - mean})


__all__ = ["PGPE", "centred_utilities", "update"]
