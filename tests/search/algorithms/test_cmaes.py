"""CMA-ES against pycma's purecma, step for step, and its island-level behaviour."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from cma import purecma  # the reference; in the test extra

from islandsync.config import CMAESConfig, RealGenome
from islandsync.config.strategies import default_samples
from islandsync.search.algorithms import CMAES, initial_state
from islandsync.search.algorithms.cmaes import clip_steps, eigen, fresh_island, params, update
from islandsync.search.algorithms.sampling import inject_samples
from islandsync.search.problems import make_problem


def _ellipsoid(x: np.ndarray) -> float:
    d = len(x)
    return float(sum(10 ** (6 * i / (d - 1)) * x[i] ** 2 for i in range(d)))


@pytest.mark.parametrize("dim,lam", [(5, 8), (8, 11)])
def test_update_matches_purecma_step_for_step(dim: int, lam: int) -> None:
    """Both take the same samples (purecma's, from its own ask()) and the same scores; after
    every tell the mean, sigma, C and both paths agree to rounding."""
    import random
    random.seed(3)
    es = purecma.CMAES(dim * [0.7], 0.4, popsize=lam)
    es.params.lazy_gap_evals = 0  # eigensystem every generation, as islandsync does
    island = fresh_island(1, dim, 0.4, lam, False, torch.device("cpu"))
    island["mean"] = torch.full((1, dim), 0.7, dtype=torch.float64)
    for _ in range(25):
        xs = es.ask()
        fs = [_ellipsoid(np.asarray(x)) for x in xs]
        e = eigen(island["cov"])
        x = torch.tensor([xs], dtype=torch.float64)
        island = update(island, x, torch.tensor([fs], dtype=torch.float64), e, False)
        es.tell(xs, fs)
        assert np.allclose(island["mean"][0].numpy(), es.xmean, rtol=1e-9, atol=1e-12)
        assert island["sigma"].item() == pytest.approx(es.sigma, rel=1e-9)
        assert np.allclose(island["cov"][0].numpy(), np.asarray(es.C), rtol=1e-8, atol=1e-12)
        assert np.allclose(island["ps"][0].numpy(), es.ps, rtol=1e-8, atol=1e-12)
        assert np.allclose(island["pc"][0].numpy(), es.pc, rtol=1e-8, atol=1e-12)
    assert es.sigma != 0.4 and not np.allclose(np.asarray(es.C), np.eye(dim))  # it moved


def test_surplus_samples_of_a_smaller_lambda_are_ignored() -> None:
    """Two islands in one stack, lambda 6 and 12: the first one's update is the one it makes
    alone from its own 6 samples, whatever the other 6 in its row hold."""
    dim = 4
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(2, 12, dim)))
    f = torch.tensor(rng.random((2, 12)))
    both = fresh_island(2, dim, 0.3, 12, False, torch.device("cpu"))
    both["lam"] = torch.tensor([6, 12])
    alone = fresh_island(1, dim, 0.3, 6, False, torch.device("cpu"))
    got = update(both, x, f, eigen(both["cov"]), False)
    want = update(alone, x[:1, :6], f[:1, :6], eigen(alone["cov"]), False)
    for name in ("mean", "sigma", "cov", "pc", "ps"):
        assert torch.allclose(got[name][:1], want[name], rtol=1e-12, atol=1e-15), name


def test_injected_steps_clipped_to_hansens_length() -> None:
    dim = 6
    isl = fresh_island(1, dim, 0.5, 8, False, torch.device("cpu"))
    e = eigen(isl["cov"])
    far = torch.zeros(1, 2, dim, dtype=torch.float64)
    far[0, 0, 0], far[0, 1, 0] = 100.0, 0.3
    out = clip_steps(far, isl["mean"], isl["sigma"], e, torch.tensor([[True, True]]))
    limit = dim ** 0.5 + 2 * dim / (dim + 2)
    assert out[0, 0, 0].item() == pytest.approx(0.5 * limit)  # shortened to the limit
    assert out[0, 1, 0].item() == 0.3  # within it: unchanged


def _run(alg: CMAES, problem: str, gens: int, seed: int = 0):
    pr = make_problem(problem)

    def ev(x: torch.Tensor) -> torch.Tensor:
        return pr.evaluate(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).float()
    g = torch.Generator().manual_seed(seed)
    ids = torch.tensor([0, 1])
    state = initial_state(alg, ids, ev, g)
    for _ in range(gens):
        state = alg.step(state, ids, ev, g)
    return state


def test_ipop_restarts_double_lambda_on_stagnation() -> None:
    # rastrigin traps each run in a local optimum; each island restarts on its own with
    # lambda doubled, and the population keeps the best ever seen.
    alg = CMAES(CMAESConfig(samples=6, max_doublings=2), RealGenome(dim=3, lower=-5, upper=5))
    state = _run(alg, "rastrigin", 160)
    restarts, lam = state.island["restarts"], state.island["lam"]
    assert bool((restarts >= 1).all())
    assert torch.equal(lam, torch.clamp(6 * 2 ** restarts, max=24))


def test_separable_above_the_threshold() -> None:
    genome = RealGenome(dim=12, lower=-5, upper=5)
    alg = CMAES(CMAESConfig(full_max_dim=10), genome)
    state = _run(alg, "sphere", 150)
    assert state.island["cov"].shape == (2, 12)  # the diagonal only
    assert float(state.scores.min()) < 1e-8


def test_migrants_replace_the_worst_samples_then_their_flags_clear() -> None:
    """Migration flags rows (``injected``); the next step puts each flagged row in place of
    one of the island's worst samples, with its own score, and clears the flag."""
    from islandsync.config import spec_from_flags
    from islandsync.worker.engine import Engine

    spec = spec_from_flags(problem="sphere", dim=4, islands=2, pop=8, algorithm="cmaes",
                           migrants=2, seed=1)
    engine = Engine(spec, make_problem("sphere"), torch.device("cpu"))
    engine.add_fresh([0, 1])
    for _ in range(3):
        engine.step()
    assert engine.migrate() > 0
    state = engine.state
    flag = state.extra["injected"] > 0.5
    assert int(flag.sum()) == 4  # two an island, each the best of the other island
    alg = engine.algorithm
    x = torch.randn(2, alg.samples, 4, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    f = (x * x).sum(-1).to(state.scores.dtype) + 100.0  # worse than every migrant
    xi, fi, replaced = inject_samples(state, x, f, state.island["lam"])
    assert replaced.sum(1).tolist() == [2, 2]
    worst = torch.sort(f, dim=1, descending=True, stable=True).indices[:, :2]
    assert torch.equal(replaced, torch.zeros_like(replaced).scatter(1, worst, True))
    for r in range(2):
        got = sorted(fi[r][replaced[r]].tolist())
        assert got == sorted(state.scores[r][flag[r]].tolist())
    assert torch.equal(xi[~replaced], x[~replaced])
    engine.step()
    assert not bool((engine.state.extra["injected"] > 0).any())


@pytest.mark.parametrize("dim,lam", [(5, 8), (40, 15), (3, 50), (200, 4)])
def test_active_weights_match_pycma(dim: int, lam: int) -> None:
    """The covariance's weights of active CMA-ES are pycma's RecombinationWeights finalised
    with the same c1 and cmu: positive ones as the mean's, negative ones summing as
    Hansen's tutorial (2016) bounds them."""
    from cma.recombination_weights import RecombinationWeights

    par = params(torch.tensor([lam]), lam + 3, dim, False, active=True)
    ref = RecombinationWeights(lam)
    ref.finalize_negative_weights(dim, par.c1.item(), par.cmu.item())
    assert np.allclose(par.cweights[0, :lam].numpy(), np.asarray(ref), rtol=1e-10, atol=1e-15)
    assert par.cweights[0, lam:].abs().sum().item() == 0  # padding beyond lambda
    assert par.cweights[0, -4].item() < 0  # it is active
    passive = params(torch.tensor([lam]), lam + 3, dim, False)
    assert torch.equal(passive.cweights, passive.weights)
    assert torch.equal(par.weights, passive.weights)  # the mean's weights stay positive


def _ellipsoid_torch(x: torch.Tensor) -> torch.Tensor:
    d = x.shape[-1]
    scale = 10 ** (6 * torch.arange(d, dtype=x.dtype) / (d - 1))
    return (scale * x.double() ** 2).sum(-1)


def test_active_cma_keeps_c_positive_definite_and_learns_an_ellipsoid_faster() -> None:
    """Same samples' seed, same generations: the active update reaches a lower ellipsoid
    value and a better conditioned C^-1 H (the ideal C is H^-1), and C's eigenvalues stay
    positive throughout."""
    dim = 10
    genome = RealGenome(dim=dim, lower=-5, upper=5)

    def run(active: bool) -> tuple[float, float]:
        alg = CMAES(CMAESConfig(active=active, step_evals=1, restarts=False), genome)
        g = torch.Generator().manual_seed(4)
        ids = torch.tensor([0, 1])

        def ev(x: torch.Tensor) -> torch.Tensor:
            return _ellipsoid_torch(x).to(torch.float32 if x.dtype == torch.float32 else x.dtype)
        state = initial_state(alg, ids, ev, g)
        for _ in range(120):
            state = alg.step(state, ids, ev, g)
            assert bool((torch.linalg.eigvalsh(state.island["cov"]) > 0).all())
        h = torch.diag(10 ** (6 * torch.arange(dim, dtype=torch.float64) / (dim - 1)))
        ev_ch = torch.linalg.eigvals(state.island["cov"][0] @ h).real
        return float(state.scores.min()), float(ev_ch.max() / ev_ch.min())

    best_active, cond_active = run(True)
    best_passive, cond_passive = run(False)
    assert best_active < best_passive
    assert cond_active < cond_passive


def test_a_step_runs_ceil_step_evals_over_lambda_generations() -> None:
    """An engine step is ceil(step_evals / lambda) generations of each island: lambda 8 and
    step_evals 20 make 3 (24 evaluations an island), step_evals 1 makes one."""
    from islandsync.config import spec_from_flags
    from islandsync.worker.engine import Engine

    for step_evals, gens in ((20, 3), (1, 1), (64, 8)):
        spec = spec_from_flags(problem="sphere", dim=4, islands=2, seed=1, algorithm=[
            {"name": "cmaes", "samples": 8, "step_evals": step_evals}])
        engine = Engine(spec, make_problem("sphere"), torch.device("cpu"))
        engine.add_fresh([0, 1])
        assert engine.step() == 2 * 8 * gens
        assert engine.state.island["gen"].tolist() == [gens, gens]


#: (settings, D, generations of 3 islands on rastrigin, seed 7) -> fingerprint of the final
#: state, computed with main's code before restart_mode and lazy_eigen existed (commit
#: b1c5262). Each case restarts at least once (loose tolerances), so the IPOP path is in it.
DEFAULT_TRAJECTORIES = {
    "classic": (dict(samples=6, max_doublings=2, tol_fun=1e-4, tol_x=1e-4), 3, 120,
                "8d9825a4de4c01b1"),
    "tuned": (dict(active=True, step_evals=64, tol_fun=1e-4, tol_x=1e-4), 6, 25,
              "03c9c525b288db53"),
    "diagonal": (dict(diagonal=True, samples=6, max_doublings=1, tol_fun=1e-2, tol_x=1e-3),
                 4, 80, "7cd9360aeaa88f9a"),
}


@pytest.mark.parametrize("case", list(DEFAULT_TRAJECTORIES))
def test_default_settings_keep_the_trajectory_of_before_bipop(case: str) -> None:
    """With restart_mode and lazy_eigen at their defaults a run follows the trajectory it
    followed before they existed. The fingerprint hashes every island tensor to 9 significant
    digits and the population to 6: any change of the maths or of the random stream changes
    it, a BLAS's last-bit rounding on another CPU does not (the exact bits were compared
    with main's on the machine that recorded it)."""
    import hashlib

    settings, dim, gens, want = DEFAULT_TRAJECTORIES[case]
    alg = CMAES(CMAESConfig(**settings), RealGenome(dim=dim, lower=-5, upper=5))
    pr = make_problem("rastrigin")

    def ev(x: torch.Tensor) -> torch.Tensor:
        return pr.evaluate(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).float()
    g = torch.Generator().manual_seed(7)
    ids = torch.tensor([0, 1, 2])
    state = initial_state(alg, ids, ev, g)
    for _ in range(gens):
        state = alg.step(state, ids, ev, g)
    assert bool((state.island["restarts"] >= 1).any())
    digest = hashlib.sha256()
    for name in sorted(state.island):
        values = state.island[name].reshape(-1).tolist()
        digest.update(name.encode() + " ".join(f"{v:.9g}" for v in values).encode())
    for t in (state.genomes, state.scores):
        digest.update(" ".join(f"{v:.6g}" for v in t.reshape(-1).tolist()).encode())
    assert digest.hexdigest()[:16] == want


def test_bipop_alternates_a_large_and_a_small_regime_by_budget() -> None:
    """On rastrigin with loose tolerances the islands stagnate within tens of generations.
    Every restart goes to the regime that has spent fewer evaluations (the large one on a
    tie): a large run doubles lambda from the last large run's and starts at sigma0, a small
    run has sigma0 10^(-2u) < sigma0 and a lambda between the default and the last large
    run's; each regime's budget is the sum of its generations' lambdas."""
    samples, dim = 6, 3
    alg = CMAES(CMAESConfig(samples=samples, max_doublings=3, restart_mode="bipop",
                            tol_fun=1e-4, tol_x=1e-4), RealGenome(dim=dim, lower=-5, upper=5))
    pr = make_problem("rastrigin")

    def ev(x: torch.Tensor) -> torch.Tensor:
        return pr.evaluate(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).float()
    g = torch.Generator().manual_seed(0)
    ids = torch.arange(4)
    state = initial_state(alg, ids, ev, g)
    spent = torch.zeros(4, dtype=torch.int64)
    small_runs = large_runs = 0
    for _ in range(260):
        before = state.island
        state = alg.step(state, ids, ev, g)
        now = state.island
        spent += before["lam"]
        assert torch.equal(now["small_evals"] + now["large_evals"], spent)
        for i in (now["restarts"] != before["restarts"]).nonzero().flatten().tolist():
            large = bool(now["small_evals"][i] >= now["large_evals"][i])
            assert now["regime"][i].item() == int(large)
            if large:
                large_runs += 1
                assert now["lam"][i].item() == now["lam_large"][i].item() \
                    == min(2 * before["lam_large"][i].item(), samples * 8)
                assert now["sigma"][i].item() == alg.sigma0
            else:
                small_runs += 1
                assert samples <= now["lam"][i].item() <= now["lam_large"][i].item()
                assert alg.sigma0 / 100 <= now["sigma"][i].item() < alg.sigma0
    assert large_runs >= 4 and small_runs >= 4
    regime, lam = state.island["regime"], state.island["lam"]
    assert bool((state.island["lam_large"] > samples).all())  # every island ran large
    # Where a small run is under way: its lambda below the large regime's
    assert bool((lam[regime == 0] < state.island["lam_large"][regime == 0]).any())


def test_lazy_eigen_decomposes_every_gap_generations_and_samples_from_what_it_holds() -> None:
    """At D = 200 the gap max(1, floor(1 / (10 D (c1 + cmu)))) is 2 generations: the held
    eigensystem changes on even generations only, is C's own eigensystem then, and the
    search differs from one that decomposes every generation."""
    dim = 200
    genome = RealGenome(dim=dim, lower=-5, upper=5)
    par = params(torch.tensor([default_samples(dim)]), 32, dim, False, active=True)
    gap = max(1, math.floor(1 / (10 * dim * (par.c1 + par.cmu).item())))
    assert gap == 2

    def run(lazy: bool) -> list:
        alg = CMAES(CMAESConfig(active=True, lazy_eigen=lazy), genome)
        pr = make_problem("sphere")

        def ev(x: torch.Tensor) -> torch.Tensor:
            return pr.evaluate(x.reshape(-1, dim)).reshape(x.shape[:-1]).float()
        g = torch.Generator().manual_seed(3)
        ids = torch.tensor([0, 1])
        states = [initial_state(alg, ids, ev, g)]
        for _ in range(5):
            states.append(alg.step(states[-1], ids, ev, g))
        return states

    states = run(True)
    for before, after in itertools.pairwise(states[1:]):
        held = after.island["eig_basis"]
        if before.island["gen"][0].item() % gap:  # not due: the same as a generation ago
            assert torch.equal(held, before.island["eig_basis"])
        else:  # refreshed from the C this generation sampled from
            e = eigen(before.island["cov"])
            assert torch.equal(after.island["eig_sqrt"], e.sqrt_ev)
            assert torch.equal(held, e.basis)
    eager = run(False)
    assert "eig_basis" not in eager[-1].island
    # The first generation of both samples from C = I's eigensystem; the second of the lazy
    # one from that same one again, of the eager one from the updated C's.
    assert torch.equal(states[1].island["mean"], eager[1].island["mean"])
    assert not torch.equal(states[2].island["mean"], eager[2].island["mean"])
