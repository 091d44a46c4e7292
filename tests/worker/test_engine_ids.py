"""Genome ids in the engine: hashed only where read, and then always right."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from islandsync.bucket.ids import genome_ids_numpy
from islandsync.config import spec_from_flags
from islandsync.search.population import genome_ids
from islandsync.search.algorithms import ALGORITHMS
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine


def _engine(algorithm: str, migrants: int = 2) -> Engine:
    spec = spec_from_flags(problem="rastrigin", dim=6, islands=3, pop=10, algorithm=algorithm,
                           migrants=migrants, seed=3)
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_fresh([0, 1, 2])
    return engine


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_ids_right_wherever_read(algorithm: str) -> None:
    engine = _engine(algorithm)
    for gen in range(12):
        engine.step()
        # A step hashes nothing; the ids are computed when read and then match the genomes.
        assert engine._state is not None and engine._state.ids is None
        if gen % 3 == 2:
            engine.migrate()
        state = engine.state
        assert state is not None and torch.equal(state.ids, genome_ids(state.genomes))
    for snap in engine.snapshot():
        assert np.array_equal(snap.arrays["ids"], genome_ids_numpy(snap.arrays["genomes"]))


def test_migrants_never_land_where_their_id_lives() -> None:
    # The property is about migration: a DE step can itself breed a copy of a resident
    # (partners that are copies of one genome give a mutant equal to it), so compare each
    # island before and after migrate(): every id it gained was not there before, once.
    engine = _engine("de", migrants=3)
    moved = 0
    for _ in range(30):
        engine.step()
        before = [Counter(row.tolist()) for row in engine.state.ids]
        moved += engine.migrate()
        for had, row in zip(before, engine.state.ids, strict=True):
            now = Counter(row.tolist())
            for gained in now - had:
                assert had[gained] == 0 and now[gained] == 1
    assert moved > 0


def test_fitness_blocks_give_the_same_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # A big CPU batch reaches the fitness function in blocks; the search must not notice.
    import islandsync.worker.stack as stack_module

    whole = _engine("de")
    for _ in range(5):
        whole.step()
    monkeypatch.setattr(stack_module, "_CPU_EVAL_BLOCK_BYTES", 7 * 4)  # one genome per call
    blocked = _engine("de")
    for _ in range(5):
        blocked.step()
    assert torch.equal(whole.state.genomes, blocked.state.genomes)
    assert torch.equal(whole.state.scores, blocked.state.scores)
