"""What distribution-based islands (CMA-ES, SNES) share: migrants injected in place of the
worst samples, Hansen's step clipping, and a population of the best points seen.

Such an island samples lambda points a generation from its distribution (island state) and
keeps, as its population of P rows, the best points it has seen. Migration writes migrants
into that population flagged ``extra["injected"] = 1`` (the engine's migrate, unchanged);
the next generation takes them into the update in place of its worst samples (Hansen 2011,
"Injecting external solutions into CMA-ES"), keeping their scores, and clears the flags.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from islandsync.search.state import IslandState


def clip_length(length: Tensor, d: int) -> Tensor:
    """The factor (at most 1) that shortens a step of Mahalanobis ``length`` to Hansen's
    bound ``sqrt(D) + 2D / (D + 2)`` (pycma's ``repair_genotype``)."""
    limit = math.sqrt(d) + 2 * d / (d + 2)
    return torch.where(length > limit, limit / length.clamp(min=1e-30), 1.0)


def inject_samples(state: IslandState, x: Tensor, f: Tensor,
                   lam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Migrants (population rows flagged ``injected``) in place of each island's worst
    samples of ``x`` [K, N, D] / ``f`` [K, N], at most ``lam // 2`` of them (``lam`` [K]: the
    island's own sample count; samples beyond it are not its). Returns the samples, their
    scores and where migrants now are ([K, N] bool); the caller clips their steps."""
    flag = state.extra["injected"] > 0.5
    k, n, d = x.shape
    j = min(int(flag.sum(1).max()), n)  # a host sync only where migration happened
    if j == 0:
        return x, f, torch.zeros(f.shape, dtype=torch.bool, device=f.device)
    rows = torch.sort((~flag).to(torch.int8), dim=1, stable=True).indices[:, :j]
    ok = torch.gather(flag, 1, rows) & (torch.arange(j, device=x.device) < lam[:, None] // 2)
    live = torch.arange(n, device=x.device) < lam[:, None]
    worst = torch.sort(torch.where(live, f, -torch.inf), dim=1, descending=True,
                       stable=True).indices[:, :j]
    mx = torch.gather(state.genomes, 1, rows[..., None].expand(-1, -1, d)).to(x.dtype)
    mf = torch.gather(state.scores, 1, rows).to(f.dtype)
    wi = worst[..., None].expand(-1, -1, d)
    x = x.scatter(1, wi, torch.where(ok[..., None], mx, torch.gather(x, 1, wi)))
    f = f.scatter(1, worst, torch.where(ok, mf, torch.gather(f, 1, worst)))
    replaced = torch.zeros(f.shape, dtype=torch.bool, device=f.device).scatter(1, worst, ok)
    return x, f, replaced


def keep_best(state: IslandState, x: Tensor, f: Tensor, use: Tensor,
              island_ids: Tensor) -> IslandState:
    """The population as the best P of itself and the samples ``x`` [K, N, D] (float32) with
    scores ``f`` where ``use`` [K, N]; migrant flags cleared. Residents win ties."""
    k, p, d = state.genomes.shape
    n = x.shape[1]
    scores = torch.cat([state.scores, torch.where(use, f, torch.inf)], dim=1)
    order = torch.sort(scores, dim=1, stable=True).indices[:, :p]
    genomes = torch.cat([state.genomes, x], dim=1)
    born = island_ids.to(device=x.device, dtype=torch.int64)[:, None].expand(k, n)
    origin = torch.cat([state.origin, born], dim=1)
    return state._replace(
        genomes=torch.gather(genomes, 1, order[..., None].expand(-1, -1, d)),
        scores=torch.gather(scores, 1, order), ids=None,
        origin=torch.gather(origin, 1, order),
        extra={name: torch.zeros_like(t) for name, t in state.extra.items()})


__all__ = ["clip_length", "inject_samples", "keep_best"]
