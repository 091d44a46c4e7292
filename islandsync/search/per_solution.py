"""A fitness function written for one solution, evaluated on a batch.

islandsync evaluates a whole batch at once (``fitness(x: Tensor[batch, ...]) -> Tensor[batch]``).
``per_solution(fn)`` takes ``fn(x: Tensor[...]) -> float`` instead: vectorised with
``torch.func.vmap`` when ``fn`` allows it (tensor operations only), else one call per row in
a Python loop (``.item()``, ``if`` on values, numpy, random numbers). Which one is decided on
the first batch and kept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from islandsync.config.fitness import PER_SOLUTION_ATTR
from islandsync.errors import ConfigError

_HINT = ("a fitness takes the whole batch (x: Tensor[{shape}]) and returns one value per "
         "row; for a function of one solution, wrap it: islandsync.per_solution(fn) in "
         "Python, --per-solution on the command line")


def wrong_shape(returned: tuple[int, ...], batch: tuple[int, ...]) -> str:
    """The error for a batch fitness that returned ``returned`` for genomes of ``batch``."""
    return (f"fitness returned shape {returned} for a batch of {batch[0]}; expected "
            f"[{batch[0]}]: " + _HINT.format(shape=", ".join(map(str, batch))))


class PerSolution:
    """``fn`` of one solution as a batch fitness; see the module's docstring. The fingerprint
    in run.json is ``fn``'s, marked per-solution (islandsync.config.fitness)."""

    def __init__(self, fn: Callable[[Tensor], Any]) -> None:
        if not callable(fn):
            raise ConfigError(f"per_solution: expected a function, got {fn!r}")
        functools.update_wrapper(self, fn)  # __wrapped__, __module__, __qualname__, __doc__
        setattr(self, PER_SOLUTION_ATTR, True)
        self.vectorised: bool | None = None  # decided on the first batch

    def __call__(self, x: Tensor) -> Tensor:
        fn = self.__wrapped__  # type: ignore[attr-defined]
        if self.vectorised is not False:
            try:
                y = torch.func.vmap(fn)(x)
                if not isinstance(y, Tensor) or y.shape != x.shape[:1]:
                    raise ValueError("not one number per solution")
                self.vectorised = True
                return y
            except Exception:
                if self.vectorised:  # vmap worked before: this error is the function's own
                    raise
                self.vectorised = False
        values = [fn(row) for row in x]
        for v in values:
            if isinstance(v, Tensor) and v.numel() != 1:
                raise ConfigError(f"per-solution fitness returned shape {tuple(v.shape)} for "
                                  f"one solution of shape {tuple(x.shape[1:])}; expected a "
                                  f"number")
        return torch.tensor([float(v) for v in values], device=x.device)

    def __repr__(self) -> str:
        return f"per_solution({self.__wrapped__!r})"  # type: ignore[attr-defined]


def per_solution(fn: Callable[[Tensor], Any]) -> PerSolution:
    """Wrap ``fn(x: Tensor[dim]) -> float`` (one solution) as a batch fitness for
    ``islandsync.run(..., fitness=...)``; also usable as a decorator. Wrapping twice (a
    decorated function given ``--per-solution`` too) wraps once."""
    return fn if isinstance(fn, PerSolution) else PerSolution(fn)


__all__ = ["PerSolution", "per_solution", "wrong_shape"]
