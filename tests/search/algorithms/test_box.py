"""Per-gene bounds, integer genes and float64 genomes (issue 20, item 4), for every
registered algorithm: no evaluated point leaves its box or holds a fraction in an integer
gene, through fresh islands, steps, migration between stacks and migrants from elsewhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from islandsync.bucket.checkpoints import decode_island, encode_island
from islandsync.config import parse_spec
from islandsync.errors import CheckpointError
from islandsync.search.algorithms import ALGORITHMS
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine

CPU = torch.device("cpu")
LOWER = [-5.0, 0.0, -1.5, 2.0, -100.0, 0.25]
UPPER = [5.0, 3.0, 1.5, 2.5, 100.0, 7.75]
INTEGER = [1, "4:6"]  # genes 1, 4 and 5


def _spec(algorithm, *, dtype: str = "float32", islands: int = 3, bounds: bool = True):
    genome = {"dim": 6, "lower": LOWER, "upper": UPPER, "integer": INTEGER} if bounds \
        else {"dim": 6, "lower": -5.12, "upper": 5.12}
    return parse_spec({"problem": {"name": "rastrigin", "genome": genome},
                       "algorithm": algorithm, "islands": islands, "dtype": dtype, "seed": 4,
                       "migration": {"migrants": 2}}, source="test")


class Recorded:
    """The rastrigin fitness, keeping every batch it is asked to evaluate."""

    def __init__(self) -> None:
        self.inner = make_problem("rastrigin")
        self.batches: list[torch.Tensor] = []

    def evaluate(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(x.clone())
        return self.inner.evaluate(x)


def _check_points(batches: list[torch.Tensor]) -> int:
    lo, hi = (torch.tensor(b, dtype=torch.float64) for b in (LOWER, UPPER))
    seen = 0
    for x in batches:
        x = x.to(torch.float64)
        assert bool(((x >= lo) & (x <= hi)).all()), "a point outside its bounds was evaluated"
        ints = x[:, [1, 4, 5]]
        assert bool((ints == ints.round()).all()), "a fraction in an integer gene"
        seen += x.shape[0]
    return seen


@pytest.mark.parametrize("name", [*ALGORITHMS, "portfolio"])
def test_no_point_outside_bounds_or_off_integers(name: str) -> None:
    spec = _spec({"name": name} if name != "portfolio" else "portfolio")
    problem = Recorded()
    engine = Engine(spec, problem, [CPU, CPU])  # two stacks: migration crosses them
    engine.add_fresh([0, 1, 2])
    # Migrants from elsewhere (the global elite, read from the bucket): a corner of the box
    # (its integer genes at their largest integers), taken; and, scored far better, one
    # outside the box and one off an integer, never taken (a GA child would keep their
    # genes that it does not touch).
    far = torch.tensor([[5.0, 3.0, 1.5, 2.5, 100.0, 7.0], [5.0, 3.0, 1.5, 2.5, 100.0, 7.75],
                        [9.0, 3.0, 1.5, 2.5, 100.0, 7.0]])
    foreign = (far, torch.tensor([-1.0, -1e9, -1e9]), torch.tensor([12345, 12346, 12347]),
               torch.tensor([7, 7, 7]))
    for gen in range(12):
        engine.step()
        if gen % 3 == 2:
            engine.migrate(foreign)
    assert _check_points(problem.batches) > 100
    for stack in engine.stacks:  # what the islands hold (and checkpoint) is in the box too
        _check_points([stack.state.genomes.reshape(-1, 6)])


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_float64_genomes_and_scores_through_a_checkpoint(name: str) -> None:
    spec = _spec({"name": name}, dtype="float64", islands=2, bounds=False)
    engine = Engine(spec, make_problem("rastrigin"), CPU)
    engine.add_fresh([0, 1])
    for _ in range(3):
        engine.step()
    assert engine.state.genomes.dtype == torch.float64
    assert engine.state.scores.dtype == torch.float64
    snap = engine.snapshot([0])[0]
    blob = encode_island(snap, elite=4, meta={})
    back = decode_island(blob, key="islands/0/x", spec=spec)
    assert back.arrays["genomes"].dtype == np.float64
    assert np.array_equal(back.arrays["genomes"], snap.arrays["genomes"])
    # The same frames are refused by a float32 run: its genomes are float32.
    with pytest.raises(CheckpointError, match="genomes"):
        decode_island(blob, key="islands/0/x", spec=_spec({"name": name}, islands=2,
                                                           bounds=False))
    # ... and a float32 checkpoint by a float64 run.
    plain = _spec({"name": name}, islands=2, bounds=False)
    small = Engine(plain, make_problem("rastrigin"), CPU)
    small.add_fresh([0])
    with pytest.raises(CheckpointError, match="genomes"):
        decode_island(encode_island(small.snapshot()[0], elite=4, meta={}),
                      key="islands/0/x", spec=spec)
