"""Which score is better, and when a stop criterion is met: the one rule both roles use."""

from __future__ import annotations

import math

import pytest

from islandsync.config import StopSpec, best_of, is_better, reaches, to_fitness, to_score


def test_a_target_is_met_at_equality_and_better_is_strict() -> None:
    assert reaches("minimize", 1.0, 1.0) and reaches("maximize", 1.0, 1.0)
    assert reaches("minimize", 0.5, 1.0) and not reaches("maximize", 0.5, 1.0)
    assert reaches("maximize", -0.5, -1.0) and not reaches("minimize", -0.5, -1.0)
    assert not is_better("minimize", 1.0, 1.0) and not is_better("maximize", 1.0, 1.0)
    assert is_better("maximize", 2.0, 1.0) and is_better("minimize", 1.0, 2.0)


def test_best_of_ignores_none_and_follows_the_direction() -> None:
    assert best_of("maximize", [None, -2.0, 3.0]) == 3.0
    assert best_of("minimize", [None, -2.0, 3.0]) == -2.0
    assert best_of("minimize", []) is None and best_of("maximize", [None]) is None


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_scores_are_minimised_and_convert_back(direction: str) -> None:
    # The search keeps minimisation scores: the better fitness has the lower score.
    better, worse = (1.0, 2.0) if direction == "minimize" else (2.0, 1.0)
    assert to_score(direction, better) < to_score(direction, worse)
    assert to_fitness(direction, to_score(direction, -3.5)) == -3.5
    assert math.isinf(to_fitness(direction, math.inf))


def test_stop_reason_max_evals_first_then_target() -> None:
    stop = StopSpec(max_evals=100, target=0.5)
    assert stop.reason("minimize", 100, 9.0) == "max_evals"
    assert stop.reason("minimize", 99, 0.5) == "target"
    assert stop.reason("maximize", 99, 0.4) is None and stop.reason("maximize", 99, 0.6)
    assert stop.reason("minimize", 99, None) is None
    assert StopSpec().reason("minimize", 10**12, -1e300) is None
