"""Placement: proportional within one island, never twice, everything placed, hysteresis."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from islandsync.leader.placement import Policy, WorkerView, place, target_counts, weights_of

workers_st = st.lists(
    st.builds(WorkerView,
              worker=st.sampled_from([f"w{i}" for i in range(8)]),
              rate=st.one_of(st.just(0.0), st.floats(1.0, 1e6)),
              max_islands=st.integers(0, 40),
              draining=st.booleans(),
              confirmed=st.booleans()),
    min_size=1, max_size=6, unique_by=lambda w: w.worker)


@given(islands=st.integers(1, 64), rates=st.lists(st.floats(0.5, 1e5), min_size=1, max_size=8))
def test_target_counts_are_within_one_island_of_the_proportional_share(islands, rates) -> None:
    weights = {f"w{i}": r for i, r in enumerate(rates)}
    caps = {w: islands for w in weights}  # caps that never bind
    counts = target_counts(islands, weights, caps)
    assert sum(counts.values()) == islands
    total = sum(rates)
    for w, r in weights.items():
        assert abs(counts[w] - islands * r / total) < 1.0


@given(islands=st.integers(1, 64), rates=st.lists(st.floats(0.5, 1e5), min_size=1, max_size=8),
       caps=st.lists(st.integers(0, 20), min_size=8, max_size=8))
def test_target_counts_respect_caps_and_place_as_many_as_fit(islands, rates, caps) -> None:
    weights = {f"w{i}": r for i, r in enumerate(rates)}
    cap = {w: caps[i] for i, w in enumerate(weights)}
    counts = target_counts(islands, weights, cap)
    assert all(0 <= counts[w] <= cap[w] for w in weights)
    assert sum(counts.values()) == min(islands, sum(cap.values()))


@settings(max_examples=300, deadline=None)  # a property, not a timing: no deadline on a loaded machine
@given(islands=st.integers(1, 48), workers=workers_st,
       current=st.dictionaries(st.integers(0, 60), st.sampled_from([f"w{i}" for i in range(10)])),
       now=st.floats(0, 1000), stay=st.floats(0, 500))
def test_place_never_duplicates_and_places_everything_that_fits(islands, workers, current, now,
                                                                stay) -> None:
    placed_at = {i: now - stay for i in current}
    result = place(islands, current, workers, placed_at=placed_at, now=now)
    assert set(result.islands) | set(result.unplaced) == set(range(islands))
    assert not set(result.islands) & set(result.unplaced)  # a dict key is placed once
    live = {w.worker: w for w in workers}
    assert all(w in live for w in result.islands.values())
    usable = [w for w in workers if w.max_islands > 0 and not w.draining] or \
        [w for w in workers if w.max_islands > 0]
    counts = {w.worker: 0 for w in workers}
    for w in result.islands.values():
        counts[w] += 1
    assert all(counts[w.worker] <= w.max_islands for w in workers)
    if sum(w.max_islands for w in usable if w.confirmed) >= islands:
        assert not result.unplaced  # every island placed whenever there is room
    for i, w in result.islands.items():  # an unconfirmed worker only keeps what it had
        assert live[w].confirmed or current.get(i) == w
    if any(not w.draining for w in usable):  # a draining worker never receives islands
        for i, w in result.islands.items():
            assert not live[w].draining or current.get(i) == w


def test_proportional_to_rate_from_scratch() -> None:
    ws = [WorkerView("fast", 300.0, 16), WorkerView("slow", 100.0, 16)]
    result = place(8, {}, ws)
    counts = {w: list(result.islands.values()).count(w) for w in ("fast", "slow")}
    assert counts == {"fast": 6, "slow": 2}
    assert result.moves["new"] == 8


def test_dead_workers_islands_go_to_live_ones_at_once() -> None:
    current = {0: "a", 1: "a", 2: "b", 3: "b"}
    result = place(4, current, [WorkerView("a", 10.0, 8)], placed_at={i: 99.0 for i in current},
                   now=100.0)
    assert result.islands == {i: "a" for i in range(4)}
    assert result.moves["dead"] == 2


def test_a_new_worker_gets_its_share_on_the_next_cycle_despite_min_stay() -> None:
    current = {i: "a" for i in range(8)}
    ws = [WorkerView("a", 800.0, 8), WorkerView("b", 0.0, 8)]  # b not measured yet
    result = place(8, current, ws, placed_at={i: 0.0 for i in range(8)}, now=1.0,
                   policy=Policy(min_stay_s=600))
    assert list(result.islands.values()).count("b") == 4
    assert result.moves["new"] == 4


def test_hysteresis_small_gain_or_recent_placement_moves_nothing() -> None:
    current = {0: "a", 1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b", 7: "b"}
    # a is 10% faster: the proportional split is 4/4 rounded anyway, and 5/3 gains < 20%.
    ws = [WorkerView("a", 110.0, 8), WorkerView("b", 100.0, 8)]
    assert place(8, current, ws, placed_at={i: 0.0 for i in range(8)}, now=1000).moves == {}
    # a is 3x faster: worth moving, but not before the islands have stayed min_stay_s.
    ws = [WorkerView("a", 300.0, 8), WorkerView("b", 100.0, 8)]
    early = place(8, current, ws, placed_at={i: 990.0 for i in range(8)}, now=1000,
                  policy=Policy(min_stay_s=60))
    assert early.islands == current
    late = place(8, current, ws, placed_at={i: 0.0 for i in range(8)}, now=1000,
                 policy=Policy(min_stay_s=60))
    assert list(late.islands.values()).count("a") == 6
    assert late.moves["balance"] == 2


def test_draining_worker_loses_its_islands_unless_alone() -> None:
    current = {0: "a", 1: "a", 2: "b"}
    ws = [WorkerView("a", 100.0, 8, draining=True), WorkerView("b", 100.0, 8)]
    assert place(3, current, ws).islands == {0: "b", 1: "b", 2: "b"}
    alone = [WorkerView("a", 100.0, 8, draining=True)]
    assert place(3, current, alone).islands == {0: "a", 1: "a", 2: "a"}


def test_unmeasured_workers_count_as_the_median() -> None:
    ws = [WorkerView("a", 100.0, 1), WorkerView("b", 300.0, 1), WorkerView("c", 0.0, 1)]
    assert weights_of(ws) == {"a": 100.0, "b": 300.0, "c": 300.0}
    assert weights_of([WorkerView("x", 0.0, 1)]) == {"x": 1.0}


def test_a_worker_not_yet_seen_beating_keeps_its_islands_but_receives_none() -> None:
    """A leader that just took over cannot tell a stale heartbeat from a live one."""
    current = {0: "a", 1: "a", 2: "b", 3: "b"}
    ws = [WorkerView("a", 10.0, 8, confirmed=False), WorkerView("c", 10.0, 8, confirmed=False)]
    result = place(4, current, ws)
    assert result.islands == {0: "a", 1: "a"} and result.unplaced == [2, 3]
    ws.append(WorkerView("d", 10.0, 8))
    result = place(4, current, ws)
    assert result.islands == {0: "a", 1: "a", 2: "d", 3: "d"}
