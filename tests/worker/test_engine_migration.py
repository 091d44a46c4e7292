"""Migration in the engine: under the ring a good genome travels on, hop by hop."""

from __future__ import annotations

import torch

from islandsync.config import spec_from_flags
from islandsync.search.population import genome_ids
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine


def _engine(topology: str) -> Engine:
    spec = spec_from_flags(problem="sphere", dim=4, islands=3, pop=8, algorithm="ga",
                           migrants=1, topology=topology, seed=5)
    engine = Engine(spec, make_problem("sphere", dict(spec.problem.params)), torch.device("cpu"))
    engine.add_fresh([0, 1, 2])
    # Plant the optimum on island 0 (born there).
    s = engine.state
    genomes = s.genomes.clone()
    genomes[0, 0] = 0.0
    scores = s.scores.clone()
    scores[0, 0] = 0.0
    engine.state = s._replace(genomes=genomes, scores=scores, ids=genome_ids(genomes))
    return engine


def _holds_optimum(engine: Engine) -> list[bool]:
    return [bool((engine.state.scores[k] == 0).any()) for k in range(3)]


def test_ring_passes_an_immigrant_on_to_the_next_island() -> None:
    engine = _engine("ring")
    engine.migrate()
    assert _holds_optimum(engine) == [True, True, False]  # one hop: 0 -> 1
    engine.migrate()
    # Born on island 0, but it lives on island 1 now, so island 1 sends it on to island 2.
    assert _holds_optimum(engine) == [True, True, True]
    row2 = engine.state.scores[2] == 0
    assert int(engine.state.origin[2][row2][0]) == 0  # still remembers where it was born


def test_pool_reaches_every_island_in_one_migration() -> None:
    engine = _engine("pool")
    engine.migrate()
    assert _holds_optimum(engine) == [True, True, True]
