"""The run's totals as the leader sees them (``leader/totals.py``): evaluations summed over the
islands' HEADs, the best taken in the problem's own direction (the global elite's best
counting too), and which stop criterion those totals meet."""

from __future__ import annotations

from islandsync.bucket.records import Head
from islandsync.config import spec_from_flags
from islandsync.leader.totals import run_totals, stop_reason


def _spec(direction: str = "minimize", **stop):
    return spec_from_flags(problem="sphere", dim=4, islands=3, pop=8, direction=direction,
                           **stop)


def _heads(*pairs: tuple[int, float | None]) -> list[Head]:
    return [Head(island=i, evals=evals, best=best) for i, (evals, best) in enumerate(pairs)]


def test_totals_sum_the_evaluations_and_take_the_lowest_best_when_minimizing() -> None:
    heads = _heads((100, 3.0), (50, -2.0), (7, None))
    assert run_totals(heads, _spec()) == (157, -2.0)


def test_totals_take_the_highest_best_when_maximizing() -> None:
    heads = _heads((10, 3.0), (20, -2.0))
    assert run_totals(heads, _spec("maximize")) == (30, 3.0)


def test_the_global_elites_best_counts_though_no_island_holds_it_now() -> None:
    """An island's best may have been lost with its owner; the elite merged it and keeps it."""
    heads = _heads((10, 3.0), (20, 1.0))
    assert run_totals(heads, _spec(), elite_best=0.5) == (30, 0.5)
    assert run_totals(heads, _spec(), elite_best=9.0) == (30, 1.0)
    assert run_totals(heads, _spec("maximize"), elite_best=9.0) == (30, 9.0)


def test_no_best_until_some_island_or_the_elite_has_one() -> None:
    assert run_totals(_heads((5, None), (6, None)), _spec()) == (11, None)
    assert run_totals([], _spec()) == (0, None)
    assert run_totals([], _spec(), elite_best=2.0) == (0, 2.0)


def test_max_evals_is_reached_at_the_limit_not_before() -> None:
    spec = _spec(max_evals=1000)
    assert stop_reason(spec, 999, None) is None
    assert stop_reason(spec, 1000, None) == "max_evals"


def test_a_target_is_met_in_the_problems_own_direction() -> None:
    low = _spec(target=0.1)
    assert stop_reason(low, 10, 0.2) is None
    assert stop_reason(low, 10, 0.1) == "target"
    assert stop_reason(low, 10, None) is None  # nothing evaluated yet
    high = _spec("maximize", target=5.0)
    assert stop_reason(high, 10, 4.9) is None
    assert stop_reason(high, 10, 5.0) == "target"


def test_no_criterion_set_never_stops() -> None:
    assert stop_reason(_spec(), 10**15, -1e300) is None
