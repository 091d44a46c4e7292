"""A throwaway algorithm added through the registries alone, as a newcomer would add one: a
settings model (:func:`islandsync.config.register_algorithm`) and an implementation
(:func:`islandsync.search.algorithms.register`), nothing else edited. tests/conftest.py
registers it for the whole session, so every test parametrised over the registry (the
contract, determinism, NaN counts, ids, checkpoint round trip and resume) runs it, and the
CLI offers it; that it passes them is the proof that adding an algorithm needs no other edit.

Random search around each island's best point, with a radius that shrinks every generation:
the radius is per-island state (``IslandState.island``), so a resume that lost it (or kept it
on the Python object instead) would search differently and fail the resume tests.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, Field
from torch import Tensor

from islandsync.config import RealGenome, register_algorithm, unregister_algorithm
from islandsync.config._base import STRICT
from islandsync.search.algorithms import register, unregister
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box
from islandsync.search.algorithms.sampling import keep_best
from islandsync.search.state import IslandState

NAME = "throwaway_random"


class ThrowawayConfig(BaseModel):
    """Random search around each island's best (a test's throwaway algorithm)."""

    model_config = STRICT
    name: Literal["throwaway_random"] = "throwaway_random"
    pop: int = Field(8, ge=2)
    radius: float = Field(0.3, gt=0.0, le=1.0)  # as a fraction of the box width
    shrink: float = Field(0.95, gt=0.0, le=1.0)  # the radius's factor each generation

    def island_frames(self, width: int,
                      dtype: str = "float32") -> dict[str, tuple[tuple[int, ...], str]]:
        return {"radius": ((), "<f4")}

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        return [] if kind == "real" else [("name", f"{NAME} works on real genomes only")]


class ThrowawayRandomSearch:
    name = NAME
    Config = ThrowawayConfig

    def __init__(self, config: ThrowawayConfig, genome: RealGenome,
                 dtype: str = "float32") -> None:
        check_settings(self, config, genome)
        self.config, self.dim = config, genome.dim
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.extra_defaults: dict[str, float] = {}

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def start(self, state: IslandState) -> IslandState:
        k = state.genomes.shape[0]
        radius = torch.full((k,), self.config.radius, dtype=torch.float32,
                            device=state.genomes.device)
        return state._replace(island={"radius": radius})

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        k, p, d = state.genomes.shape
        radius = state.island["radius"]
        # A garbled checkpoint's radius starts afresh rather than poisoning the island.
        radius = torch.where(torch.isfinite(radius) & (radius > 0), radius,
                             torch.full_like(radius, self.config.radius))
        best = state.genomes[torch.arange(k), state.scores.argmin(1)]
        lo, hi = self.box.bounds(state.genomes.device, state.genomes.dtype)
        noise = torch.rand((k, p, d), generator=generator, device=generator.device,
                           dtype=state.genomes.dtype) * 2 - 1
        step = noise * (radius[:, None, None] * (hi - lo)).to(state.genomes.dtype)
        genomes = self.box.repair((best[:, None] + step).clamp(lo, hi))
        scores = evaluate(genomes).to(state.scores.dtype)
        out = keep_best(state, genomes, scores, torch.ones_like(scores, dtype=torch.bool),
                        island_ids)
        return out._replace(island={"radius": radius * self.config.shrink})


def register_throwaway() -> str:
    """Register the throwaway algorithm in both registries; returns its name."""
    register_algorithm(ThrowawayConfig)
    register(ThrowawayRandomSearch)
    return NAME


def unregister_throwaway() -> None:
    unregister(NAME)
    unregister_algorithm(NAME)


__all__ = ["NAME", "ThrowawayConfig", "ThrowawayRandomSearch", "register_throwaway",
           "unregister_throwaway"]
