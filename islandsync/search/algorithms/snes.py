"""SNES, the separable natural evolution strategy (Schaul, Glasmachers & Schmidhuber 2011;
Wierstra et al. 2014, JMLR, Algorithm 6), vectorised over islands: its whole state is a mean
and a per-dimension step size, ``[K, D]`` each, so a million-dimensional island checkpoints
the distribution (8 MB) plus its few best points, not a population.

A generation: z_i ~ N(0, I), x_i = mu + sigma * z_i (i = 1..lambda), ranked by score; with
the rank utilities ``u_i = max(0, ln(lambda/2 + 1) - ln i) / sum - 1/lambda``,

    mu    <- mu + eta_mu * sigma * sum_i u_i z_i
    sigma <- sigma * exp(eta_sigma / 2 * sum_i u_i (z_i^2 - 1))

with eta_mu = 1 and eta_sigma = (3 + ln D) / (5 sqrt D) by default (the paper's; EvoX's and
EvoTorch's SNES use the same). A sample outside the box is clamped onto it and a migrant
replaces one of the worst samples (:mod:`.sampling`); a migrant enters the update with the
z of the point scored, ``(x - mu) / sigma``, shortened to length ``sqrt(D) + 2D/(D + 2)``
(Hansen 2011), and so does a clamped sample with ``repaired_z = "clipped"`` (the default),
while with ``"sampled"`` it enters with the z it was drawn with. The mean stays in the box.
The population is the best P points seen.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from islandsync.config import RealGenome, SNESConfig
from islandsync.config.strategies import default_samples
from islandsync.search.state import IslandState
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box
from islandsync.search.algorithms.sampling import clip_length, inject_samples, keep_best


def utilities(lam: int, device: torch.device) -> Tensor:
    """NES rank utilities [lam], best first: positive for the better half, summing to 0."""
    i = torch.arange(1, lam + 1, dtype=torch.float32, device=device)
    w = torch.clamp(math.log(lam / 2 + 1) - torch.log(i), min=0)
    return w / w.sum() - 1 / lam


def update(mean: Tensor, sigma: Tensor, z: Tensor, f: Tensor, lr_center: float,
           lr_sigma: float) -> tuple[Tensor, Tensor]:
    """One SNES update of every island from the standard-normal ``z`` [K, lam, D] of its
    samples and their scores ``f`` [K, lam] (minimised). Returns the new mean and sigma."""
    k, lam, d = z.shape
    order = torch.sort(f, dim=1, stable=True).indices
    zs = torch.gather(z, 1, order[..., None].expand(-1, -1, d))
    u = utilities(lam, z.device)[None, :, None]
    grad_mean = (u * zs).sum(1)
    grad_sigma = (u * (zs * zs - 1)).sum(1)
    return mean + lr_center * sigma * grad_mean, sigma * torch.exp(lr_sigma / 2 * grad_sigma)


class SNES:
    """SNES on real genomes. See the module docstring."""

    name = "snes"
    Config = SNESConfig

    def __init__(self, config: SNESConfig, genome: RealGenome, dtype: str = "float32") -> None:
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.samples = config.samples or default_samples(genome.dim)
        self.sigma0 = config.sigma_init * self.box.width  # per gene where bounds are
        self.lr_center = config.lr_center
        self.lr_sigma = config.lr_sigma or (3 + math.log(genome.dim)) / (5 * math.sqrt(genome.dim))
        self.sampled_z = config.repaired_z == "sampled"
        self.extra_defaults: dict[str, float] = {"injected": 1.0}

    def __repr__(self) -> str:
        return (f"SNES(dim={self.dim}, pop={self.pop_size}, lambda={self.samples}, "
                f"sigma0={self.sigma0:.4g}, lr=({self.lr_center}, {self.lr_sigma:.4g}))")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def start(self, state: IslandState) -> IslandState:
        """The first distribution: centred on each island's best initial point, sigma0."""
        k = state.genomes.shape[0]
        mean = state.genomes[torch.arange(k), state.scores.argmin(1)].clone()
        extra = {name: torch.zeros_like(t) for name, t in state.extra.items()}
        if self.box.scalar:
            sigma = torch.full_like(mean, self.sigma0)
        else:  # sigma_init of each gene's own width
            lo, hi = self.box.bounds(mean.device, mean.dtype)
            sigma = (self.config.sigma_init * (hi - lo)).expand_as(mean).clone()
        return state._replace(island={"mean": mean, "sigma": sigma}, extra=extra)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        k, _, d = state.genomes.shape
        mean, sigma = state.island["mean"], state.island["sigma"]
        # A garbled checkpoint or a numerical breakdown: such an island starts afresh at its
        # best point (no host sync: a where over [K, D]).
        ok = (torch.isfinite(mean).all(1) & torch.isfinite(sigma).all(1)
              & (sigma > 0).all(1))[:, None]
        fresh = self.start(state).island
        mean, sigma = torch.where(ok, mean, fresh["mean"]), torch.where(ok, sigma, fresh["sigma"])
        lam = self.samples
        z = torch.randn((k, lam, d), generator=g, device=g.device, dtype=mean.dtype)
        raw = torch.addcmul(mean[:, None], sigma[:, None], z)
        lo, hi = self.box.bounds(raw.device)
        # Clamped onto the box, integer genes rounded: the point scored.
        genomes = self.box.repair(raw.clamp(lo, hi))
        f = evaluate(genomes).to(state.scores.dtype)
        x, fu, replaced = inject_samples(
            state, genomes, f, torch.full((k,), lam, dtype=torch.int64, device=g.device))
        # A clamped or rounded sample keeps the z it was drawn with ("sampled"), or enters
        # as an injected one would ("clipped", stored runs' meaning; see SNESConfig).
        redo = replaced if self.sampled_z else (genomes != raw).any(-1) | replaced
        if bool(redo.any()):  # z of the point scored, Hansen-clipped
            zr = (x - mean[:, None]) / sigma[:, None]
            zr = zr * clip_length(zr.norm(dim=-1), d)[..., None]
            z = torch.where(redo[..., None], zr, z)
        new_mean, new_sigma = update(mean, sigma, z, fu, self.lr_center, self.lr_sigma)
        out = keep_best(state, genomes, f, ~replaced, island_ids)
        return out._replace(island={"mean": new_mean.clamp(lo, hi),
                                    "sigma": new_sigma})


__all__ = ["SNES", "update", "utilities"]
