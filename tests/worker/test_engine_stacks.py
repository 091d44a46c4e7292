"""One engine, several stacks: a portfolio (islands of different algorithms) and several
devices (``--device auto`` on a machine with several GPUs), each stack stepped as one tensor.
Device groups are tested on the CPU: two ``cpu`` devices are two groups."""

from __future__ import annotations

import pytest
import torch

from islandsync.bucket.checkpoints import decode_island, encode_island
from islandsync.config import spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine

CPU = torch.device("cpu")


def _spec(algorithm: str, islands: int = 6, migrants: int = 2):
    return spec_from_flags(problem="rastrigin", dim=5, islands=islands, pop=12, seed=5,
                           algorithm=algorithm, migrants=migrants, elite_size=4)


def _genomes(engine: Engine) -> dict[int, torch.Tensor]:
    return {i: s.state.genomes[r] for s in engine.stacks for r, i in enumerate(s.islands)}


def test_portfolio_gives_each_algorithm_its_islands_as_one_stack() -> None:
    spec = _spec("portfolio")
    engine = Engine(spec, make_problem("rastrigin"), CPU)
    engine.add_fresh(list(range(6)))
    names = {s.algorithm.name: s.islands for s in engine.stacks}
    assert names == {"cmaes": [0, 3], "shade": [1, 4], "snes": [2, 5]}
    for _ in range(3):
        engine.step()
    assert engine.generations == {i: 3 for i in range(6)}
    # Migration crosses the mix: a planted optimum on island 1 (shade) reaches every island.
    shade = next(s for s in engine.stacks if s.algorithm.name == "shade")
    st = shade.state
    g = st.genomes.clone()
    g[0, 0] = 0.0
    sc = st.scores.clone()
    sc[0, 0] = 0.0
    shade.state = st._replace(genomes=g, scores=sc, ids=None)
    assert engine.migrate() > 0
    assert {i for s in engine.stacks for r, i in enumerate(s.islands)
            if bool((s.state.scores[r] == 0).any())} == set(range(6))
    snaps = engine.snapshot()
    assert [s.island for s in snaps] == engine.islands
    assert {s.island: s.meta["algorithm"] for s in snaps} == {
        i: ("cmaes", "shade", "snes")[i % 3] for i in range(6)}


def test_portfolio_island_resumes_with_its_algorithm_and_state() -> None:
    spec = _spec("portfolio", migrants=0)
    problem = make_problem("rastrigin")
    first = Engine(spec, problem, CPU)
    first.add_fresh(list(range(6)))
    for _ in range(2):
        first.step()
    back = [decode_island(encode_island(s, elite=4, meta={}), key=f"islands/{s.island}/x",
                          spec=spec) for s in first.snapshot()]
    second = Engine(spec, problem, CPU)
    for snap in back:
        assert snap.meta["algorithm"] == spec.algorithm_of(snap.island).name
        second.add_snapshot(snap)
    for stack in first.stacks:  # the reseed a placement change makes, as resuming did
        stack._reseed()
    for engine in (first, second):
        engine.step()
    a, b = _genomes(first), _genomes(second)
    assert a.keys() == b.keys() and all(torch.equal(a[i], b[i]) for i in a)


def test_two_device_groups_search_as_two_single_group_engines() -> None:
    # Islands spread over the devices (least loaded first: 0, 2 on one, 1, 3 on the other),
    # and each group is seeded from its own islands: without migration between them, the
    # two-group engine is exactly two engines of one group each.
    spec = _spec("de", islands=4, migrants=0)
    problem = make_problem("rastrigin")
    both = Engine(spec, problem, [CPU, CPU])
    both.add_fresh([0, 1, 2, 3])
    assert [s.islands for s in both.stacks] == [[0, 2], [1, 3]]
    alone = [Engine(spec, problem, CPU) for _ in range(2)]
    alone[0].add_fresh([0, 2])
    alone[1].add_fresh([1, 3])
    for _ in range(4):
        assert both.step() == sum(e.step() for e in alone)
    got, want = _genomes(both), {**_genomes(alone[0]), **_genomes(alone[1])}
    assert got.keys() == want.keys() and all(torch.equal(got[i], want[i]) for i in got)
    # One group hosting all four is a different (equally valid) search: the check above
    # would fail if the groups were not seeded apart.
    one = Engine(spec, problem, CPU)
    one.add_fresh([0, 1, 2, 3])
    for _ in range(4):
        one.step()
    assert not torch.equal(_genomes(one)[0], got[0])


def test_migration_crosses_device_groups() -> None:
    spec = _spec("de", islands=4)
    both = Engine(spec, make_problem("rastrigin"), [CPU, CPU])
    both.add_fresh([0, 1, 2, 3])
    stack = both.stacks[0]
    st = stack.state
    g, sc = st.genomes.clone(), st.scores.clone()
    g[0, 0], sc[0, 0] = 0.0, 0.0
    stack.state = st._replace(genomes=g, scores=sc, ids=None)
    assert both.migrate() > 0
    assert all(bool((s.state.scores[r] == 0).any()) for s in both.stacks
               for r in range(len(s)))


def test_a_checkpoint_of_another_algorithm_is_refused() -> None:
    # ga and de checkpoints have the same frames (de's F and CR are extra.* frames, which
    # any run allows): only the header's "algorithm" tells them apart.
    from islandsync.errors import CheckpointError

    spec = _spec([{"name": "de"}, {"name": "ga"}], islands=2)
    engine = Engine(spec, make_problem("rastrigin"), CPU)
    engine.add_fresh([0, 1])
    de_island = engine.snapshot([0])[0]
    blob = encode_island(de_island, elite=4, meta={})
    assert decode_island(blob, key="islands/0/x", spec=spec).meta["algorithm"] == "de"
    swapped = _spec([{"name": "ga"}, {"name": "de"}], islands=2)
    with pytest.raises(CheckpointError, match="written by algorithm 'de', but island 0 of "
                                              "the run runs ga"):
        decode_island(blob, key="islands/0/x", spec=swapped)
