"""The engine's NaN/inf accounting: exact per island, whatever the fitness returns."""

from __future__ import annotations

import pytest
import torch

from islandsync.config import spec_from_flags
from islandsync.search.algorithms import ALGORITHMS
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine

ISLANDS = [2, 5, 7]


def _bad_pattern(x: torch.Tensor) -> torch.Tensor:
    """float64 sphere values, with NaN, +inf and -inf, and a finite value too big for float32
    (it becomes inf there), at rows picked by the genomes' own bits: a different set every
    generation, and one the test can recount from the genomes it sees."""
    y = (x.double() ** 2).sum(dim=-1)
    key = (x[:, 0].abs() * 1e4).to(torch.int64) % 11
    y[key == 0] = float("nan")
    y[key == 1] = float("inf")
    y[key == 2] = float("-inf")
    y[key == 3] = 1e300
    return y


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_nan_and_inf_counted_exactly_per_island(algorithm: str, direction: str) -> None:
    # float32 genomes and scores: where 1e300 becomes inf (on a CPU "auto" is float64).
    spec = spec_from_flags(problem="sphere", dim=4, islands=8, pop=12, algorithm=algorithm,
                           seed=1, dtype="float32")
    spec = spec.model_copy(update={"problem": spec.problem.model_copy(
        update={"direction": direction})})
    expected = dict.fromkeys(ISLANDS, 0)
    order: list[int] = []

    def fitness(x: torch.Tensor) -> torch.Tensor:
        y = _bad_pattern(x)
        per = y.numel() // len(order)
        for r, island in enumerate(order):  # rows come island by island
            part = y[r * per:(r + 1) * per]
            expected[island] += int((~torch.isfinite(part.float())).sum())
        return y

    engine = Engine(spec, make_problem("custom", fitness=fitness, direction=direction),
                    torch.device("cpu"))
    order[:] = sorted(ISLANDS)
    engine.add_fresh(ISLANDS)
    for gen in range(15):
        engine.step()
        if gen == 6:
            engine.remove([5])  # the counts of islands that leave are kept until they do
            assert engine.nan_counts == {i: expected[i] for i in (2, 7)}
            order[:] = [2, 7]
    snaps = {s.island: s.nan_count for s in engine.snapshot()}
    assert snaps == {i: expected[i] for i in (2, 7)}
    assert all(v > 0 for v in snaps.values())
    # and no non-finite score ever reaches the state: all of them became +inf (the worst)
    assert bool((engine.state.scores > float("-inf")).all())
    assert not bool(torch.isnan(engine.state.scores).any())
