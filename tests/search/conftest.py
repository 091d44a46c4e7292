"""Helpers the search tests share."""

from __future__ import annotations

import torch

from islandsync.config import BUILTIN_PROBLEMS, spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine


def genomes(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` genomes of ``d`` genes uniform in [-1, 1] (the networks' default box)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


def short_run(name: str, params: dict, algorithm: str, steps: int = 15) -> tuple[float, float]:
    """The best score of a 3-island engine run on a built-in problem before and after
    ``steps`` generations."""
    spec = spec_from_flags(problem=name, params=params, islands=3, algorithm=algorithm, seed=4)
    assert spec.problem.genome.dim == BUILTIN_PROBLEMS[name].default_dim(params)
    engine = Engine(spec, make_problem(name, params), torch.device("cpu"))
    engine.add_fresh([0, 1, 2])
    first = engine.best()[0]
    for _ in range(steps):
        engine.step()
    return first, engine.best()[0]
