"""The worker's stop rules as pure functions: what counts towards max_evals and a target."""

from __future__ import annotations

from islandsync.bucket.records import Head
from islandsync.config import StopSpec
from islandsync.worker.stopping import run_totals, stop_reason

from .conftest import fast_spec


def _spec(direction: str = "minimize", **stop):
    spec = fast_spec()
    problem = spec.problem.model_copy(update={"direction": direction})
    return spec.model_copy(update={"stop": StopSpec(**stop), "problem": problem})


def _head(island: int, evals: int, best: float | None) -> Head:
    return Head(island=island, generation=1, evals=evals, best=best)


def test_no_criterion_never_stops() -> None:
    assert stop_reason(_spec(), own_evals=10**12, own_best=-1e9, remote={}, hosted=set(),
                       totals=(10**12, -1e9)) is None


def test_max_evals_counts_others_heads_but_not_our_own_twice() -> None:
    spec = _spec(max_evals=1000)
    remote = {0: _head(0, 600, None), 1: _head(1, 300, None)}
    # island 0 is ours: its HEAD is older than what our engine counts
    assert stop_reason(spec, own_evals=650, own_best=None, remote=remote, hosted={0},
                       totals=None) is None
    assert stop_reason(spec, own_evals=700, own_best=None, remote=remote, hosted={0},
                       totals=None) == ("max_evals", 1000)
    # a follower reads no HEADs: the leader's totals stand for the run
    assert stop_reason(spec, own_evals=5, own_best=None, remote={}, hosted=set(),
                       totals=(1200, None)) == ("max_evals", 1200)


def test_a_target_is_reached_in_the_problems_direction_by_anyone() -> None:
    low = _spec(target=1.0)
    assert stop_reason(low, own_evals=3, own_best=2.0, remote={1: _head(1, 0, 0.5)},
                       hosted=set(), totals=None) == ("target", 3)
    assert stop_reason(low, own_evals=3, own_best=2.0, remote={1: _head(1, 0, 0.5)},
                       hosted={1}, totals=None) is None
    high = _spec("maximize", target=1.0)
    assert stop_reason(high, own_evals=3, own_best=0.5, remote={}, hosted=set(),
                       totals=(None, 1.5)) == ("target", 3)
    assert stop_reason(high, own_evals=3, own_best=0.5, remote={}, hosted=set(),
                       totals=(None, 0.9)) is None


def test_both_roles_judge_a_stop_and_a_best_by_one_rule() -> None:
    """The leader (totals) and a worker (stopping) decide "reached" and "better" alike on the
    same inputs: one rule (StopSpec.reason, config.best_of), not two copies that may drift."""
    from islandsync.leader import totals

    bests = [None, -3.0, -1.0, 0.0, 0.5, 1.0, 1.5, 7.0]
    for direction in ("minimize", "maximize"):
        for stop in ({"target": 1.0}, {"target": -1.0}, {"max_evals": 100},
                     {"max_evals": 100, "target": 0.5}):
            spec = _spec(direction, **stop)
            for evals in (0, 99, 100, 250):
                for a in bests:
                    for b in bests:
                        heads = [_head(0, evals, a), _head(1, 0, b)]
                        lead_evals, lead_best = totals.run_totals(heads, spec)
                        own = stop_reason(spec, own_evals=evals, own_best=a,
                                          remote={1: heads[1]}, hosted={0}, totals=None)
                        assert run_totals(spec, own_evals=evals, own_best=a,
                                          remote={1: heads[1]}, hosted={0},
                                          totals=None) == (lead_evals, lead_best)
                        lead = totals.stop_reason(spec, lead_evals, lead_best)
                        assert (own[0] if own else None) == lead, (direction, stop, evals, a, b)
                        assert lead == spec.stop.reason(direction, lead_evals, lead_best)

