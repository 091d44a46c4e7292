"""SNES against a reference: EvoX's SNES (in the test extra; EvoTorch's needs ray and more,
see the report) step for step on the same noise, the rank utilities by hand, and a
million-dimensional island whose checkpoint holds a distribution, not a population."""

from __future__ import annotations

import math

import pytest
import torch
from evox.algorithms.so.es_variants.snes import SNES as EvoxSNES

from islandsync.bucket.checkpoints import decode_island, encode_island, max_checkpoint_bytes
from islandsync.config import RealGenome, SNESConfig, spec_from_flags
from islandsync.search.algorithms import SNES, initial_state
from islandsync.search.algorithms.snes import update, utilities
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine


def test_utilities_by_hand() -> None:
    # lambda = 4: w = (ln 3, ln 3 - ln 2, 0, 0) / their sum, minus 1/4
    w = [math.log(3), math.log(3) - math.log(2), 0.0, 0.0]
    want = [x / sum(w) - 0.25 for x in w]
    assert utilities(4, torch.device("cpu")).tolist() == pytest.approx(want, rel=1e-6)


def test_update_matches_evox_snes_step_for_step() -> None:
    dim, lam = 5, 8
    ref = EvoxSNES(pop_size=lam, center_init=torch.full((dim,), 0.3), sigma=0.7,
                   weight_type="recomb")
    ref.evaluate = lambda pop: ((pop - 1.0) ** 2 * torch.arange(1, dim + 1)).sum(-1)
    mean, sigma = torch.full((1, dim), 0.3), torch.full((1, dim), 0.7)
    lr_sigma = (3 + math.log(dim)) / (5 * math.sqrt(dim))
    for step in range(12):
        torch.manual_seed(step)
        z = torch.randn(lam, dim)  # the noise EvoX draws after the same seed
        f = ref.evaluate(mean + sigma * z)
        torch.manual_seed(step)
        ref.step()
        mean, sigma = update(mean, sigma, z[None], f[None], 1.0, lr_sigma)
        assert torch.allclose(mean[0], ref.center, rtol=1e-5, atol=1e-6)
        assert torch.allclose(sigma[0], ref.sigma, rtol=1e-5, atol=1e-7)
    assert not torch.allclose(sigma, torch.full_like(sigma, 0.7))  # it adapted


def test_solves_the_sphere_at_d10() -> None:
    pr = make_problem("sphere")

    def ev(x: torch.Tensor) -> torch.Tensor:
        return pr.evaluate(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).float()
    alg = SNES(SNESConfig(), RealGenome(dim=10, lower=-5, upper=5))
    g, ids = torch.Generator().manual_seed(0), torch.tensor([0, 1])
    state = initial_state(alg, ids, ev, g)
    for _ in range(300):
        state = alg.step(state, ids, ev, g)
    assert float(state.scores.min(1).values.max()) < 1e-10  # 3,000 evaluations an island


def test_a_million_dimensions_checkpoint_the_distribution() -> None:
    d, pop = 1_000_000, 2
    # float32, as a GPU runs it ("auto" is float64 on this CPU: twice the bytes)
    spec = spec_from_flags(problem="sphere", dim=d, islands=1, pop=pop, algorithm="snes",
                           migrants=1, elite_size=pop, dtype="float32")
    spec = spec.model_copy(update={"algorithm": spec.algorithm.model_copy(
        update={"samples": 6})})
    engine = Engine(spec, make_problem("sphere"), torch.device("cpu"))
    engine.add_fresh([0])
    engine.step()
    snap = engine.snapshot()[0]
    shapes = {name: a.shape for name, a in snap.arrays.items()}
    assert shapes["island.mean"] == shapes["island.sigma"] == (d,)
    assert shapes["genomes"] == (pop, d)  # the best two points seen, not the 6 samples
    blob = encode_island(snap, elite=spec.elite_size, meta={"owner": "w"})
    assert len(blob) < 4 * d * (pop + 2) + (1 << 16)  # 16 MB: float32 genomes, mean, sigma
    assert max_checkpoint_bytes(spec) < 8 * d * (2 * pop + 2) + (1 << 16)
    back = decode_island(blob, key="islands/0/000000000001-w.isz", spec=spec)
    assert torch.equal(torch.as_tensor(back.arrays["island.sigma"]),
                       engine.state.island["sigma"][0])


def _one_step(mode: str) -> tuple[torch.Tensor, ...]:
    """One SNES step with most samples clamped (sigma0 = the box width, optimum near the
    upper bound): the state before, the noise drawn, what was scored, the state after."""
    genome = RealGenome(dim=6, lower=-1.0, upper=1.0)
    alg = SNES(SNESConfig(repaired_z=mode, sigma_init=1.0), genome)
    scored: list[torch.Tensor] = []

    def ev(x: torch.Tensor) -> torch.Tensor:
        scored.append(x.clone())
        return ((x - 0.9) ** 2).sum(-1)
    g, ids = torch.Generator().manual_seed(3), torch.tensor([0])
    state = initial_state(alg, ids, ev, g)
    z = torch.randn((1, alg.samples, 6), generator=torch.Generator().set_state(g.get_state()))
    after = alg.step(state, ids, ev, g)
    return state, z, scored[-1], ev(scored[-1]), after, alg.lr_sigma


def test_sampled_z_enters_a_clamped_sample_with_the_z_it_was_drawn_with() -> None:
    """repaired_z = "sampled": a sample clamped onto the box is scored where it was clamped
    but enters the update with its drawn z, unshortened; "clipped" (stored runs' meaning)
    with the shorter z of the clamped point, which is another update."""
    state, z, x, f, after, lr_sigma = _one_step("sampled")
    assert bool(((x == 1.0) | (x == -1.0)).any()) and bool(((x >= -1) & (x <= 1)).all())
    mean, sigma = update(state.island["mean"], state.island["sigma"], z, f, 1.0, lr_sigma)
    assert torch.equal(after.island["mean"], mean.clamp(-1.0, 1.0))
    assert torch.equal(after.island["sigma"], sigma)
    state, z, x, f, clipped, _ = _one_step("clipped")
    assert torch.equal(x, _one_step("sampled")[2])  # the same points scored
    assert not torch.allclose(clipped.island["sigma"], after.island["sigma"])
