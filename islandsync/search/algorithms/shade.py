"""SHADE: success-history based parameter adaptation for differential evolution (Tanabe &
Fukunaga, CEC 2013), vectorised over islands and individuals.

Each island keeps a memory of H entries ``M_CR``, ``M_F`` (all 0.5 at first) and an external
archive of up to P parents that lost their place (island state, checkpointed). Every
generation each individual i:

- picks a memory entry r uniformly; CR_i ~ N(M_CR[r], 0.1) clipped to [0, 1]; F_i ~
  Cauchy(M_F[r], 0.1) redrawn while <= 0 (drawn here in one step from the Cauchy truncated
  to (0, inf), the same distribution), then cut to 1;
- mutates by current-to-pbest/1: ``v = x_i + F_i (x_pbest - x_i) + F_i (x_r1 - x_r2)``, pbest
  uniform among the island's best ``max(2, round(p_i P))`` with p_i ~ U[2/P, p_max], r1 a
  member other than i, r2 a member of population + archive other than i and r1 (all
  distinct, uniform, without a rejection loop);
- a gene out of the box goes halfway between the parent's gene and the bound it crossed (the
  paper's rule); binomial crossover with CR_i and a forced gene j_rand.

Selection is greedy (the trial wins on <=). A trial strictly better than its parent is a
success: the parent goes to the archive (when full, a random subset of the archive and the
newcomers, of size P, survives: the paper's random deletions, in distribution), and the
successes' CR and F update memory entry ``m_pos`` (then ``m_pos + 1 mod H``) as the
improvement-weighted mean of CR and the weighted Lehmer mean of F. Islands without a success
keep their memory. Real genomes only; a migrant is a row like any other (no extra state).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from islandsync.config import RealGenome, SHADEConfig
from islandsync.search.state import IslandState
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box

_F64 = torch.float64
_SCALE = 0.1  # the paper's spread of CR (normal) and F (Cauchy) around a memory entry


def cauchy_above_zero(loc: Tensor, u: Tensor) -> Tensor:
    """Cauchy(loc, 0.1) conditioned on > 0 by its inverse CDF at uniforms ``u`` in [0, 1):
    the distribution of "redraw while <= 0", in one draw."""
    floor = 0.5 + torch.atan(-loc / _SCALE) / math.pi  # CDF at 0
    v = floor + (1 - floor) * (1 - u)  # in (floor, 1]
    return loc + _SCALE * torch.tan(math.pi * (v - 0.5))


def skip_two(t: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Map ``t`` in [0, P-2) onto [0, P) without the distinct values ``a`` and ``b``,
    monotonically: uniform ``t`` gives a uniform member other than a and b."""
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    t = t + (t >= lo)
    return t + (t >= hi)


def successes_to_memory(island: dict[str, Tensor], won: Tensor, gain: Tensor, cr: Tensor,
                        f: Tensor) -> dict[str, Tensor]:
    """The memory update: each island with a success ([K, P] ``won``) writes the weighted
    mean of its successes' CR and the weighted Lehmer mean of their F (weights: ``gain``,
    the improvement) at ``m_pos`` and moves ``m_pos`` on."""
    w = torch.where(won, torch.nan_to_num(gain, posinf=1e30), 0.0)
    total = w.sum(1)
    has = won.any(1)
    w = w / torch.where(has, total, 1.0)[:, None]
    new_cr = (w * cr).sum(1)
    new_f = (w * f * f).sum(1) / torch.where(has, (w * f).sum(1), 1.0)
    pos = island["m_pos"][:, None]
    m_cr, m_f = island["m_cr"], island["m_f"]
    old_cr, old_f = torch.gather(m_cr, 1, pos)[:, 0], torch.gather(m_f, 1, pos)[:, 0]
    m_cr = m_cr.scatter(1, pos, torch.where(has, new_cr.to(m_cr.dtype), old_cr)[:, None])
    m_f = m_f.scatter(1, pos, torch.where(has, new_f.to(m_f.dtype), old_f)[:, None])
    m_pos = torch.where(has, (island["m_pos"] + 1) % m_cr.shape[1], island["m_pos"])
    return {**island, "m_cr": m_cr, "m_f": m_f, "m_pos": m_pos}


def archive_parents(island: dict[str, Tensor], parents: Tensor, lost: Tensor,
                    keys: Tensor) -> dict[str, Tensor]:
    """The archive with the ``parents`` [K, P, D] that ``lost`` [K, P] added: when more than
    P, the P with the smallest random ``keys`` [K, 2P] survive (a uniform subset)."""
    arc, n = island["archive"], island["archive_n"]
    k, p, d = arc.shape
    valid = torch.cat([torch.arange(p, device=arc.device) < n[:, None], lost], dim=1)
    order = torch.sort(torch.where(valid, keys, torch.inf), dim=1, stable=True).indices[:, :p]
    rows = torch.cat([arc, parents], dim=1)
    kept = torch.gather(rows, 1, order[..., None].expand(-1, -1, d))
    count = torch.clamp(n + lost.sum(1), max=p)
    return {**island, "archive": kept, "archive_n": count}


class SHADE:
    """SHADE on real genomes. See the module docstring."""

    name = "shade"
    Config = SHADEConfig

    def __init__(self, config: SHADEConfig, genome: RealGenome, dtype: str = "float32") -> None:
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.memory = config.memory_size()
        self.p_min = 2 / config.pop
        self.p_max = max(self.p_min, config.p_max)
        self.extra_defaults: dict[str, float] = {}

    def __repr__(self) -> str:
        return (f"SHADE(dim={self.dim}, pop={self.pop_size}, memory={self.memory}, "
                f"p=[{self.p_min:.3g}, {self.p_max:.3g}])")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def start(self, state: IslandState) -> IslandState:
        """Memories at 0.5, an empty archive."""
        k, p, d = state.genomes.shape
        dev = state.genomes.device
        h = self.memory
        return state._replace(island={
            "archive": torch.zeros(k, p, d, dtype=state.genomes.dtype, device=dev),
            "archive_n": torch.zeros(k, dtype=torch.int64, device=dev),
            "m_cr": torch.full((k, h), 0.5, dtype=torch.float32, device=dev),
            "m_f": torch.full((k, h), 0.5, dtype=torch.float32, device=dev),
            "m_pos": torch.zeros(k, dtype=torch.int64, device=dev)})

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        x, scores = state.genomes, state.scores
        k, p, d = x.shape
        # Indices came from a checkpoint, which the bucket may have garbled: keep them in range.
        # So are memories: an entry that is not a valid CR or F reads as the initial 0.5.
        isl = state.island
        m_f = isl["m_f"]
        st = {**isl, "archive_n": isl["archive_n"].clamp(0, p),
              "m_pos": isl["m_pos"].remainder(self.memory),
              "m_cr": torch.nan_to_num(isl["m_cr"], nan=0.5).clamp(0.0, 1.0),
              "m_f": torch.where(torch.isfinite(m_f) & (m_f > 0), m_f, 0.5).clamp(max=1.0)}
        u = torch.rand((7, k, p), generator=g, device=g.device, dtype=_F64)
        normal = torch.randn((k, p), generator=g, device=g.device, dtype=torch.float32)
        r = torch.clamp((u[0] * self.memory).to(torch.int64), max=self.memory - 1)
        cr = (torch.gather(st["m_cr"], 1, r) + _SCALE * normal).clamp(0.0, 1.0)
        f = cauchy_above_zero(torch.gather(st["m_f"], 1, r).to(_F64), u[1]).clamp(max=1.0)
        f = f.to(torch.float32)

        ranked = torch.sort(scores, dim=1, stable=True).indices
        rate = self.p_min + (self.p_max - self.p_min) * u[2]
        top = torch.clamp(torch.round(rate * p), min=2, max=p).to(torch.int64)
        pbest = torch.gather(ranked, 1, torch.clamp((u[3] * top).to(torch.int64), max=top - 1))
        i = torch.arange(p, device=x.device).expand(k, p)
        r1 = (i + 1 + torch.clamp((u[4] * (p - 1)).to(torch.int64), max=p - 2)) % p
        n_arc = st["archive_n"][:, None]
        t = torch.minimum((u[5] * (p - 2 + n_arc)).to(torch.int64), p - 3 + n_arc)
        from_pop = t < p - 2
        r2_pop = skip_two(torch.where(from_pop, t, 0), i, r1)
        r2_arc = torch.where(from_pop, 0, t - (p - 2))

        def rows(src: Tensor, idx: Tensor) -> Tensor:
            return torch.gather(src, 1, idx[..., None].expand(-1, -1, d))

        x_r2 = torch.where(from_pop[..., None], rows(x, r2_pop), rows(st["archive"], r2_arc))
        fd = f[..., None]
        v = x + fd * (rows(x, pbest) - x) + fd * (rows(x, r1) - x_r2)
        lo, hi = self.box.bounds(x.device)
        v = torch.where(v < lo, (lo + x) / 2, v)
        v = torch.where(v > hi, (hi + x) / 2, v)
        jrand = torch.clamp((u[6] * d).to(torch.int64), max=d - 1)
        cross = torch.rand((k, p, d), generator=g, device=g.device, dtype=torch.float32)
        take = (cross < cr[..., None]) | (torch.arange(d, device=x.device) == jrand[..., None])
        trial = self.box.repair(torch.where(take, v, x))  # integer genes, after the bounds

        trial_scores = evaluate(trial).to(scores.dtype)
        win = trial_scores <= scores
        better = trial_scores < scores
        keys = torch.rand((k, 2 * p), generator=g, device=g.device, dtype=torch.float32)
        island = archive_parents(st, x, better, keys)
        gain = (scores.to(_F64) - trial_scores.to(_F64)).abs()
        island = successes_to_memory(island, better, gain, cr.to(_F64), f.to(_F64))
        born = island_ids.to(device=x.device, dtype=torch.int64)[:, None]
        return IslandState(
            genomes=torch.where(win[..., None], trial, x),
            scores=torch.where(win, trial_scores, scores), ids=None,
            origin=torch.where(win, born, state.origin), extra={}, island=island)


__all__ = ["SHADE", "archive_parents", "cauchy_above_zero", "skip_two", "successes_to_memory"]
