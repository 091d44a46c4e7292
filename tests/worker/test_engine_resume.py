"""Every registered algorithm through a checkpoint: an island resumed from its encoded
snapshot holds the same state, per-individual and per-island, bit for bit, and continues
exactly as the uninterrupted island does after the same placement change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from islandsync.bucket.checkpoints import decode_island, encode_island
from islandsync.config import spec_from_flags
from islandsync.search.algorithms import ALGORITHMS, IslandState
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine

from ..conftest import ALGORITHM_VARIANTS

KEY = "islands/0/000000000009-w.isz"


def _spec(key: str):
    """A registered algorithm by name, or one of the variants by its key."""
    algorithm, settings = ALGORITHM_VARIANTS.get(key, (key, None))
    return spec_from_flags(problem="rastrigin", dim=5, islands=3, pop=12, algorithm=algorithm,
                           seed=11, elite_size=4, algorithm_settings=settings)


def _same(a: IslandState, b: IslandState) -> None:
    for x, y in zip(a[:4], b[:4], strict=True):
        assert torch.equal(x, y)
    assert a.extra.keys() == b.extra.keys() and a.island.keys() == b.island.keys()
    for name in a.extra:
        assert torch.equal(a.extra[name], b.extra[name]), name
    for name in a.island:
        assert a.island[name].dtype == b.island[name].dtype, name
        assert torch.equal(a.island[name], b.island[name]), name


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, *ALGORITHM_VARIANTS])
def test_resumed_island_continues_bit_exact(algorithm: str) -> None:
    spec = _spec(algorithm)
    first = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    first.add_fresh([0])
    for gen in range(9):
        first.step()
        if gen == 4:
            first.migrate(None)  # nothing local to take; keeps the call on the path
    _resume_and_continue(first, spec, 6)


def _resume_and_continue(first: Engine, spec, steps: int) -> Engine:
    """``first``'s islands through their encoded checkpoints into a new engine: the same
    state, bit for bit, and the same state again after ``steps`` steps of both. Returns the
    resumed engine."""
    problem = make_problem("rastrigin")
    ids = sorted(first.generations)
    width = spec.problem.genome.dim
    resumed = Engine(spec, problem, torch.device("cpu"))
    for snap in first.snapshot():
        data = encode_island(snap, elite=spec.elite_size, meta={"owner": "w"})
        back = decode_island(data, key=KEY, spec=spec)
        assert {k for k in back.arrays if k.startswith("island.")} == {
            f"island.{n}" for n in spec.algorithm.island_frames(width)}
        for name, array in snap.arrays.items():
            assert np.array_equal(back.arrays[name], array), name
            assert back.arrays[name].dtype == array.dtype, name
        resumed.add_snapshot(back)
    _same(first.state, resumed.state)
    # The same placement change on the first engine (an island came and went) re-seeds it
    # from (seed, island, generation) just as the resume did.
    spare = max(ids) + 1
    first.add_fresh([spare])
    first.remove([spare])
    for _ in range(steps):
        first.step()
        resumed.step()
    _same(first.state, resumed.state)
    assert first.evals == resumed.evals
    return resumed


def test_bipop_islands_resumed_mid_regime_continue_bit_exact() -> None:
    """BIPOP CMA-ES islands checkpointed while one is in the middle of a small run (after
    its first and a large run), resumed: the same regimes, lambdas, budgets and
    eigensystems, and the next restarts, as uninterrupted."""
    spec = spec_from_flags(problem="rastrigin", dim=3, islands=2, pop=8, algorithm="cmaes",
                           seed=11, elite_size=4, algorithm_settings={
                               "restart_mode": "bipop", "lazy_eigen": True, "samples": 6,
                               "tol_fun": 1e-2, "tol_x": 1e-2})
    first = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    first.add_fresh([0, 1])

    def small_run_under_way() -> bool:
        i = first.state.island
        return bool(((i["regime"] == 0) & (i["lam_large"] > 6) & (i["gen"] > 0)).any())
    for _ in range(40):  # measured: 13 steps (of 11 generations) in float32 and float64
        first.step()
        if small_run_under_way():
            break
    assert small_run_under_way()
    at = {n: t.clone() for n, t in first.state.island.items()}
    resumed = _resume_and_continue(first, spec, 6)
    assert bool((resumed.state.island["restarts"] > at["restarts"]).any())


@pytest.mark.parametrize("integer", [10**15, -7])
@pytest.mark.parametrize("algorithm", [*ALGORITHMS, *ALGORITHM_VARIANTS])
def test_garbled_island_values_never_break_a_step(algorithm: str, integer: int) -> None:
    """A checkpoint's frames may fit the run and still hold hostile values (the bucket is
    untrusted): integers out of range (lambda, archive counts, memory positions), NaN and
    infinities. The resumed island steps on, inside the box."""
    spec = _spec(algorithm)
    engine = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    engine.add_fresh([0])
    engine.step()
    snap = engine.snapshot()[0]
    for name, array in list(snap.arrays.items()):
        if name.startswith("island."):
            bad = integer if array.dtype.kind == "i" else \
                np.nan if name.endswith(("cov", "mean")) else np.inf
            snap.arrays[name] = np.full(np.shape(array), bad, dtype=array.dtype)
    back = decode_island(encode_island(snap, elite=spec.elite_size, meta={}), key=KEY,
                         spec=spec)
    resumed = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    resumed.add_snapshot(back)
    for _ in range(3):
        resumed.step()
    state = resumed.state
    assert bool(torch.isfinite(state.scores).any())
    assert bool(((state.genomes >= -5.12) & (state.genomes <= 5.12)).all())


@pytest.mark.parametrize("algorithm", [*ALGORITHMS, *ALGORITHM_VARIANTS])
def test_auto_dtype_islands_cross_between_float32_and_float64_workers(algorithm: str) -> None:
    """A run of ``dtype = "auto"``: a GPU worker writes float32 checkpoints, a CPU worker
    float64 ones. Each reads the other's (checked against the run, then cast to its own
    dtype: genomes, scores and the island state kept in the genomes' dtype) and steps on."""
    spec = _spec(algorithm)
    assert spec.dtype == "auto"
    problem = make_problem("rastrigin")
    # A worker that chose float32 (as on a GPU): the same run but for its dtype.
    gpu_like = Engine(spec.model_copy(update={"dtype": "float32"}), problem,
                      torch.device("cpu"))
    gpu_like.add_fresh([0])
    for _ in range(4):
        gpu_like.step()
    wrote = gpu_like.snapshot()[0]
    assert wrote.arrays["genomes"].dtype == np.float32
    back = decode_island(encode_island(wrote, elite=spec.elite_size, meta={"owner": "g"}),
                        key=KEY, spec=spec)
    cpu = Engine(spec, problem, torch.device("cpu"))
    cpu.add_snapshot(back)
    state = cpu.state
    assert state.genomes.dtype == state.scores.dtype == torch.float64
    assert torch.equal(state.genomes[0].float(), torch.as_tensor(wrote.arrays["genomes"]))
    for name, (_, dt) in spec.algorithm_of(0).island_frames(5, "float64").items():
        assert state.island[name].dtype == torch.from_numpy(np.empty(0, dt)).dtype, name
    cpu.step()
    assert bool(torch.isfinite(cpu.state.scores).any())
    # And back: the CPU worker's float64 checkpoint resumes on a float32 one.
    again = decode_island(encode_island(cpu.snapshot()[0], elite=spec.elite_size,
                                        meta={"owner": "c"}), key=KEY, spec=spec)
    assert again.arrays["genomes"].dtype == np.float64
    gpu_like.remove([0])
    gpu_like.add_snapshot(again)
    assert gpu_like.state.genomes.dtype == torch.float32
    gpu_like.step()


def test_lazy_eigen_island_resumed_mid_gap_continues_bit_exact() -> None:
    """At D = 200 lazy eigen decomposes every second generation: an island checkpointed
    after an odd generation holds an eigensystem older than its C, and its resumed copy
    samples from that same one (not from a fresh eigh of C)."""
    spec = spec_from_flags(problem="rastrigin", dim=200, islands=1, pop=8, algorithm="cmaes",
                           seed=3, elite_size=4, algorithm_settings={
                               "lazy_eigen": True, "step_evals": 1})
    first = Engine(spec, make_problem("rastrigin"), torch.device("cpu"))
    first.add_fresh([0])
    for _ in range(3):
        first.step()
    island = first.state.island
    assert island["gen"].tolist() == [3]
    stale = torch.linalg.eigh(island["cov"][0]).eigenvalues.clamp(min=0).sqrt()
    assert not torch.allclose(island["eig_sqrt"][0].sort().values, stale)  # mid-gap
    _resume_and_continue(first, spec, 3)
