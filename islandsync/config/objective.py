"""The one home of "which score is better": a problem's direction, and the conversions
between its raw fitness (in that direction) and the minimisation scores the search keeps.

Every other module asks here instead of spelling ``min if minimize else max`` out again:
the worker (engine, stopping), the leader (totals, elite chain, history), and the views
(status, best genomes). :meth:`islandsync.config.StopSpec.reason` judges the stop
criteria with it, for both roles."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Direction = Literal["minimize", "maximize"]
DIRECTIONS: tuple[Direction, ...] = ("minimize", "maximize")


def score_sign(direction: str) -> float:
    """Multiply a raw fitness by this to get its minimisation score (and back: the sign is
    its own inverse)."""
    return 1.0 if direction == "minimize" else -1.0


def to_score(direction: str, fitness: float) -> float:
    """A raw fitness in ``direction`` as a minimisation score (lower is better)."""
    return score_sign(direction) * float(fitness)


def to_fitness(direction: str, score: float) -> float:
    """A minimisation score as the raw fitness in ``direction`` (what users see)."""
    return score_sign(direction) * float(score)


def is_better(direction: str, a: float, b: float) -> bool:
    """Whether fitness ``a`` is strictly better than ``b`` in ``direction``."""
    return a < b if direction == "minimize" else a > b


def reaches(direction: str, fitness: float, target: float) -> bool:
    """Whether ``fitness`` is at least as good as ``target`` in ``direction``."""
    return not is_better(direction, target, fitness)


def best_of(direction: str, values: Iterable[float | None]) -> float | None:
    """The best of ``values`` (raw fitness in ``direction``; None ignored), None for none."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    return min(present) if direction == "minimize" else max(present)


__all__ = ["DIRECTIONS", "Direction", "best_of", "is_better", "reaches", "score_sign",
           "to_fitness", "to_score"]
