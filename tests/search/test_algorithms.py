"""Every registered algorithm: the Algorithm plug point's contracts; GA and jDE optimise."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from islandsync.config import (
    ALGORITHM_CONFIGS,
    DEConfig,
    GAConfig,
    RealGenome,
    TokenGenome,
    spec_from_flags,
)
from islandsync.errors import ConfigError
from islandsync.search.algorithms import (
    ALGORITHMS,
    Algorithm,
    DifferentialEvolution,
    GeneticAlgorithm,
    IslandState,
    check_algorithm,
    initial_state,
    make_algorithm,
)
from islandsync.search.algorithms.de import distinct_indices
from islandsync.search.population import genome_ids, with_ids
from islandsync.search.problems import SYMREG_VOCAB, make_problem

from ..conftest import ALGORITHM_VARIANTS

ISLANDS = torch.tensor([3, 7, 8, 11])  # global island numbers, not 0..K-1


class Counting:
    """Evaluate wrapper: [K, N, D] -> [K, N] through a Problem, counting calls and shapes."""

    def __init__(self, name: str, params: dict | None = None) -> None:
        self.problem = make_problem(name, params)
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.problem.evaluate(x.reshape(-1, x.shape[-1])).reshape(x.shape[:-1]).float()


REAL_GENOME = RealGenome(dim=20, lower=-1.0, upper=2.0)
TOKEN_GENOME = TokenGenome(kind="tokens", length=24, vocab=SYMREG_VOCAB)


def box(dim: int = 10, lower: float = -5.12, upper: float = 5.12) -> RealGenome:
    return RealGenome(dim=dim, lower=lower, upper=upper)


def ga(dim: int = 10, pop: int = 32, **kw: object) -> GeneticAlgorithm:
    return GeneticAlgorithm(GAConfig(pop=pop, **kw), box(dim))


def de(dim: int = 10, pop: int = 32, **kw: object) -> DifferentialEvolution:
    return DifferentialEvolution(DEConfig(pop=pop, **kw), box(dim))


def tok_ga(**kw: object) -> GeneticAlgorithm:
    return GeneticAlgorithm(GAConfig(pop=32, **kw), TOKEN_GENOME)


ALGS = {
    "ga": (ga, "rastrigin"),
    "ga-uniform-gauss": (lambda: ga(crossover="uniform", mutation="gaussian"), "rastrigin"),
    "ga-onepoint-resample": (lambda: ga(crossover="one_point", mutation="resample"), "sphere"),
    "de": (de, "rastrigin"),
    "ga-tokens": (tok_ga, "symbolic_regression"),
    "ga-tokens-onepoint": (lambda: tok_ga(crossover="one_point", elite=0), "symbolic_regression"),
}


def registered(name: str, settings: dict | None = None) -> Algorithm:
    """A registered algorithm with its settings' defaults (or ``settings``), as a run builds
    it."""
    spec = spec_from_flags(problem="rastrigin", dim=10, algorithm=name, pop=16,
                           algorithm_settings=settings)
    return make_algorithm(spec.algorithm, spec.problem.genome)


#: The registry's algorithms beyond those above, each with its defaults, and the variants
#: whose settings add island state: every body below that runs over the registry runs them.
ALGS.update({n: (lambda n=n: registered(n), "rastrigin") for n in ALGORITHMS if n not in ALGS})
ALGS.update({k: (lambda n=n, s=s: registered(n, s), "rastrigin")
             for k, (n, s) in ALGORITHM_VARIANTS.items()})


def evolve(alg: Algorithm, ev: Counting, gens: int, seed: int = 0) -> IslandState:
    g = torch.Generator().manual_seed(seed)
    state = initial_state(alg, ISLANDS, ev, g)
    for _ in range(gens):
        state = alg.step(state, ISLANDS, ev, g)
    return with_ids(state)


@pytest.mark.parametrize("key", list(ALGS))
def test_step_contract(key: str) -> None:
    make, problem = ALGS[key]
    check_contract(make(), problem)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_registered_algorithm_keeps_the_contract(name: str) -> None:
    """One body for every algorithm in the registry, built as a run builds it: from a spec
    whose ``algorithm`` is that algorithm's settings model with its defaults."""
    spec = spec_from_flags(problem="rastrigin", dim=10, algorithm=name, pop=16)
    alg = make_algorithm(spec.algorithm, spec.problem.genome)
    assert isinstance(alg, ALGORITHMS[name]) and alg.config is spec.algorithm
    check_contract(alg, "rastrigin")


def test_registry_names_match_the_settings_models() -> None:
    # config (torch-free) and search each list the algorithms; they must list the same ones,
    # each algorithm taking exactly the model the spec validates.
    assert {n: cls.Config for n, cls in ALGORITHMS.items()} == ALGORITHM_CONFIGS
    assert all(cls.name == n for n, cls in ALGORITHMS.items())


def check_contract(alg: Algorithm, problem: str) -> None:
    check_algorithm(alg)
    assert isinstance(alg, Algorithm)
    ev = Counting(problem)
    g = torch.Generator().manual_seed(0)
    state = initial_state(alg, ISLANDS, ev, g)
    k, p, d = 4, alg.pop_size, alg.dim
    assert ev.shapes == [(k, p, d)]
    for _ in range(5):
        prev = state
        ev.shapes.clear()
        state = alg.step(prev, ISLANDS, ev, g)
        assert state.ids is None  # the built-ins leave ids to whoever reads them
        state = with_ids(state)
        # one call a generation, only the new genomes: a GA's offspring, a distribution's
        # samples (CMA-ES runs ``updates`` generations a step, config step_evals)
        n = getattr(alg, "samples", p - getattr(alg, "elite", 0))
        assert ev.shapes == [(k, n, d)] * getattr(alg, "updates", 1)
        real = alg.kind == "real" if hasattr(alg, "kind") else True
        assert state.genomes.shape == (k, p, d)
        assert state.genomes.dtype == (torch.float32 if real else torch.int64)
        assert state.scores.shape == state.ids.shape == state.origin.shape == (k, p)
        assert state.scores.dtype == torch.float32
        assert state.ids.dtype == state.origin.dtype == torch.int64
        assert set(state.extra) == set(alg.extra_defaults)
        assert all(t.shape == (k, p) for t in state.extra.values())
        # per-island state: exactly what the settings declare (and checkpoints store)
        declared = alg.config.island_frames(d) if hasattr(alg, "config") else {}
        assert {name: tuple(t.shape) for name, t in state.island.items()} == {
            name: (k, *shape) for name, (shape, _) in declared.items()}
        assert all(t.numpy().dtype == np.dtype(declared[name][1])
                   for name, t in state.island.items())
        assert torch.equal(state.ids, genome_ids(state.genomes))
        if real:
            assert bool(((state.genomes >= -5.12) & (state.genomes <= 5.12)).all())
        else:
            assert bool(((state.genomes >= 0) & (state.genomes < SYMREG_VOCAB)).all())
        # scores belong to the genomes they sit with
        assert torch.allclose(state.scores, ev(state.genomes))
        # a genome is either new (born here, now) or an unchanged survivor
        new = ~torch.isin(state.ids, prev.ids)
        assert bool((state.origin[new] == ISLANDS[:, None].expand(k, p)[new]).all())
        # the best never gets worse (elitism / greedy selection)
        assert bool((state.scores.min(1).values <= prev.scores.min(1).values).all())
        assert bool((prev.scores.min(1).values < float("inf")).all())


def test_origin_kept_for_survivors_and_migrants() -> None:
    alg = ga(elite=4)
    ev = Counting("sphere")
    g = torch.Generator().manual_seed(1)
    state = initial_state(alg, ISLANDS, ev, g)
    state = state._replace(origin=torch.full_like(state.origin, 99))
    out = alg.step(state, ISLANDS, ev, g)
    assert bool((out.origin[:, :4] == 99).all())
    assert bool((out.origin[:, 4:] == ISLANDS[:, None]).all())


@pytest.mark.parametrize("key", ["ga-tokens", *ALGORITHMS, *ALGORITHM_VARIANTS])
def test_deterministic(key: str) -> None:
    make, problem = ALGS[key]
    a = evolve(make(), Counting(problem), 10, seed=5)
    b = evolve(make(), Counting(problem), 10, seed=5)
    c = evolve(make(), Counting(problem), 10, seed=6)
    for x, y in zip(a[:4], b[:4], strict=True):
        assert torch.equal(x, y)
    assert all(torch.equal(a.extra[n], b.extra[n]) for n in a.extra)
    assert all(torch.equal(a.island[n], b.island[n]) for n in a.island)
    assert not torch.equal(a.genomes, c.genomes)


@pytest.mark.parametrize("make,limit", [(ga, 5.0), (de, 12.0)])
def test_optimises_rastrigin(make, limit: float) -> None:
    ev = Counting("rastrigin")
    g = torch.Generator().manual_seed(0)
    start = initial_state(make(), ISLANDS, ev, g).scores.min(1).values.median().item()
    best = evolve(make(), ev, 200).scores.min(1).values.median().item()
    # measured: ga ~0.01-1.0, de ~2.4-4.2 over 12 seeds; random start ~100
    assert start > 50 and best < limit


@pytest.mark.parametrize("make,limit", [(ga, 1e-2), (de, 1e-5)])
def test_optimises_sphere(make, limit: float) -> None:
    # measured: ga ~1e-4, de ~5e-9 over 12 seeds
    assert evolve(make(), Counting("sphere"), 200).scores.min(1).values.median().item() < limit


def test_token_ga_improves_symbolic_regression() -> None:
    ev = Counting("symbolic_regression")
    g = torch.Generator().manual_seed(0)
    start = initial_state(tok_ga(), ISLANDS, ev, g).scores.min(1).values
    end = evolve(tok_ga(), ev, 60).scores.min(1).values
    assert bool((end <= start).all()) and end.median() < 0.5 * start.median()


def test_de_self_adaptation_and_partners() -> None:
    alg = de(f_lower=0.2, f_upper=0.6, tau_f=1.0, tau_cr=1.0)
    state = evolve(alg, Counting("sphere"), 20)
    f, cr = state.extra["F"], state.extra["CR"]
    assert bool(((f >= 0.2) & (f <= 0.6)).all()) and bool(((cr >= 0) & (cr <= 1)).all())
    g = torch.Generator().manual_seed(0)
    r = distinct_indices(8, 5, 3, g)
    full = torch.cat([torch.arange(5).expand(8, 5)[..., None], r], dim=-1)
    assert bool((full.sort(-1).values.diff(dim=-1) > 0).all())  # i, r1, r2, r3 distinct
    # partners are uniform over the other individuals: each of 5 has share ~1/5
    r = distinct_indices(2000, 6, 3, g)[:, 0, :].flatten()
    share = torch.bincount(r, minlength=6).float() / r.numel()
    assert share[0] == 0 and bool(((share[1:] - 0.2).abs() < 0.02).all())


def test_check_algorithm_rejects_incomplete_objects() -> None:
    with pytest.raises(ConfigError, match="name"):
        check_algorithm(object())
    obj = SimpleNamespace(name="x", pop_size=4, extra_defaults={}, init=lambda *a: None)
    with pytest.raises(ConfigError, match="step"):
        check_algorithm(obj)
    obj.step = lambda *a: None
    check_algorithm(obj)
    assert make_algorithm(obj, None) is obj


def test_make_algorithm_defaults() -> None:
    a = make_algorithm(GAConfig(), REAL_GENOME)
    assert isinstance(a, GeneticAlgorithm)
    assert (a.pop_size, a.elite, a.tournament, a.crossover, a.mutation) == (64, 2, 3, "sbx",
                                                                         "polynomial")
    assert a.mutation_rate == pytest.approx(1 / 20) and (a.lower, a.upper) == (-1.0, 2.0)
    t = make_algorithm(GAConfig(pop=10), TOKEN_GENOME)
    assert (t.crossover, t.mutation, t.dim, t.vocab, t.pop_size) == ("uniform", "resample",
                                                                    24, 13, 10)
    d = make_algorithm(DEConfig(pop=16, f_upper=0.9), REAL_GENOME)
    assert isinstance(d, DifferentialEvolution)
    assert d.extra_defaults == {"F": 0.5, "CR": 0.9} and d.f_upper == 0.9


@pytest.mark.parametrize("settings,genome,field", [
    (SimpleNamespace(name="pso"), REAL_GENOME, "name"),
    (DEConfig(), TOKEN_GENOME, "algorithm.name: de works on real genomes only"),
    (GAConfig(crossover="sbx"), TOKEN_GENOME, "algorithm.crossover"),
    (GAConfig(mutation="polynomial"), TOKEN_GENOME, "algorithm.mutation"),
    (SimpleNamespace(name="ga", pop=8), REAL_GENOME, "must be a GAConfig"),
    (GAConfig(), SimpleNamespace(kind="real", dim=3, lower=1.0, upper=2.0), "genome"),
])
def test_make_algorithm_rejects(settings: object, genome: object, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        make_algorithm(settings, genome)


@pytest.mark.parametrize("model,kw,field", [
    (GAConfig, {"name": "ga", "crossover": "blend"}, "crossover"),
    (GAConfig, {"pop": 8, "tournament": 9}, "tournament"),
    (GAConfig, {"tournament": 1}, "tournament"),  # random selection: refused, see GAConfig
    (GAConfig, {"pop": 8, "elite": 8}, "elite"),
    (GAConfig, {"pop": 3}, "pop"),
    (GAConfig, {"crossover_rate": 1.5}, "crossover_rate"),
    (GAConfig, {"mutation_rate": -0.1}, "mutation_rate"),
    (DEConfig, {"pop": 3}, "pop"),
    (DEConfig, {"f_lower": 0.8, "f_upper": 0.5}, "f_upper"),
    (DEConfig, {"tau_cr": 2}, "tau_cr"),
])
def test_limits_are_the_settings_models(model: type, kw: dict, field: str) -> None:
    # The algorithms validate nothing of their own: every limit is the model's, so the spec
    # and a Python caller meet the same ones.
    with pytest.raises(ValidationError, match=field):
        model(**kw)


def test_real_genomes_take_every_real_operator() -> None:
    for crossover in ("sbx", "uniform", "one_point"):
        for mutation in ("polynomial", "gaussian", "resample"):
            alg = make_algorithm(GAConfig(crossover=crossover, mutation=mutation), REAL_GENOME)
            assert (alg.crossover, alg.mutation) == (crossover, mutation)


def test_sbx_and_polynomial_operators_are_unbiased_far_from_bounds() -> None:
    # Far from the box, bounded SBX is the plain one: children are symmetric around the
    # parents' mean; polynomial mutation perturbs with zero mean and spread ~ range/eta.
    alg = GeneticAlgorithm(GAConfig(sbx_eta=15.0), box(1, -1e4, 1e4))
    g = torch.Generator().manual_seed(0)
    a, b = torch.full((1, 20000, 1), -1.0), torch.full((1, 20000, 1), 1.0)
    c1, c2 = alg._sbx(a, b, g)
    assert torch.allclose(c1 + c2, a + b, atol=1e-3)
    moved = (c1 != a).float().mean().item()
    assert 0.45 < moved < 0.55  # each gene crossed with probability 1/2
    near = torch.minimum((c1 - a).abs(), (c1 - b).abs())[c1 != a]
    assert near.median() < 0.1 and near.max() < 1.0  # eta 15: children near a parent

    alg = GeneticAlgorithm(GAConfig(mutation_rate=1.0), box(1, -1.0, 1.0))
    x = torch.zeros(1, 20000, 1)
    dx = alg._mutate(x, g)
    assert abs(dx.mean().item()) < 0.01 and 0.01 < dx.abs().mean().item() < 0.2
    edge = alg._mutate(torch.ones(1, 2000, 1), g)  # at the bound: stays inside
    assert bool((edge <= 1.0).all()) and bool((edge < 1.0).any())


def test_distinct_indices_beyond_three_partners() -> None:
    # n > 3 takes the sorted path; every row still holds i and n distinct others.
    g = torch.Generator().manual_seed(2)
    r = distinct_indices(50, 7, 5, g)
    full = torch.cat([torch.arange(7).expand(50, 7)[..., None], r], dim=-1)
    assert bool((full.sort(-1).values.diff(dim=-1) > 0).all())


@pytest.mark.parametrize("cr", [0.0, 0.3, 0.9])
def test_de_crossover_rate_and_repair_from_one_draw(cr: float) -> None:
    # One uniform serves crossover and bound repair: the share of genes a trial takes from
    # its mutant must still be CR (plus gene jrand), and every trial gene stays in the box.
    d = 50
    alg = DifferentialEvolution(DEConfig(pop=64, cr_init=cr, tau_cr=0.0, f_init=2.0, tau_f=0.0,
                                         f_lower=0.1, f_upper=2.0), box(d))
    seen: list[torch.Tensor] = []

    def ev(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros(x.shape[:2])

    g = torch.Generator().manual_seed(4)
    state = initial_state(alg, ISLANDS, ev, g)
    alg.step(state, ISLANDS, ev, g)
    trial, parent = seen[-1], state.genomes
    taken = (trial != parent).float().mean().item()
    expected = cr + (1 - cr) / d
    assert abs(taken - expected) < 0.02, (taken, expected)
    assert bool(((trial >= -5.12) & (trial <= 5.12)).all())


def test_de_compile_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    # Where torch.compile fails (no compiler, unsupported platform), compile=True runs the
    # same eager arithmetic, after one warning, and gives the very same search.
    def broken(fn: object, *a: object, **kw: object) -> object:
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    eager = evolve(de(), Counting("rastrigin"), 5, seed=9)
    with caplog.at_level("WARNING"):
        fallback = evolve(de(compile=True), Counting("rastrigin"), 5, seed=9)
    assert torch.equal(eager.genomes, fallback.genomes)
    assert sum("torch.compile unavailable" in r.message for r in caplog.records) == 1


def test_de_cache_blocks_give_the_same_search(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a CPU big islands are stepped a block of islands at a time; the result must be the
    # one of the whole stack at once, bit for bit (partners come from the same island).
    import islandsync.search.algorithms.de as de_module

    whole = evolve(de(), Counting("rastrigin"), 6, seed=3)
    monkeypatch.setattr(de_module, "_CPU_BLOCK_BYTES", 1)  # one island per block
    blocked = evolve(de(), Counting("rastrigin"), 6, seed=3)
    for a, b in zip(whole[:4], blocked[:4], strict=True):
        assert torch.equal(a, b)
    assert all(torch.equal(whole.extra[n], blocked.extra[n]) for n in whole.extra)


def test_de_partners_uniform_over_ordered_triples() -> None:
    # Each ordered triple of distinct partners (none of them i) is equally likely, not only
    # each partner on its own: the offsets are a bijection of the uniform draws.
    from islandsync.search.algorithms.de import partners

    g = torch.Generator().manual_seed(8)
    p, n = 6, 60_000
    r = partners(torch.rand((3, n, p), generator=g, dtype=torch.float64))
    i = torch.arange(p)[None, :, None].expand(n, p, 1)
    assert bool((torch.cat([i, r], -1).sort(-1).values.diff(dim=-1) > 0).all())
    t = r[:, 2, :]  # individual 2's triples
    counts = torch.bincount((t[:, 0] * p + t[:, 1]) * p + t[:, 2], minlength=p**3)
    seen = counts[counts > 0].float()
    assert seen.numel() == (p - 1) * (p - 2) * (p - 3)
    # 60 triples, ~1000 draws each: a multinomial's spread is ~3%; a skew would be far more
    assert float((seen / seen.mean() - 1).abs().max()) < 0.15


def test_de_select_genomes_is_where_bit_for_bit() -> None:
    from islandsync.search.algorithms.de import select_genomes

    x = torch.tensor([[[0.0, -0.0, float("nan")], [1.0, 2.0, 3.0]]])
    trial = torch.tensor([[[-0.0, float("nan"), 5.0], [float("inf"), -0.0, 7.0]]])
    for win in ([[True, False]], [[False, True]], [[True, True]], [[False, False]]):
        w = torch.tensor(win)
        got = select_genomes(w, trial, x)
        want = torch.where(w[..., None], trial, x)
        assert torch.equal(got.view(torch.int32), want.view(torch.int32))


@pytest.mark.parametrize("key", [*ALGORITHMS, *ALGORITHM_VARIANTS])
def test_step_leaves_earlier_states_alone(key: str) -> None:
    # A step may keep scratch buffers between generations; none of them may be a tensor of
    # the state it was given or of a state it returned.
    make, problem = ALGS[key]
    alg, ev = make(), Counting(problem)
    g = torch.Generator().manual_seed(2)
    state = initial_state(alg, ISLANDS, ev, g)
    states = [state]
    for _ in range(3):
        states.append(alg.step(states[-1], ISLANDS, ev, g))
    copies = [(s.genomes.clone(), s.scores.clone(), s.origin.clone(),
               {n: t.clone() for n, t in s.extra.items()},
               {n: t.clone() for n, t in s.island.items()}) for s in states]
    for _ in range(3):
        alg.step(states[-1], ISLANDS, ev, g)
    for s, (genomes, scores, origin, extra, island) in zip(states, copies, strict=True):
        assert torch.equal(s.genomes, genomes) and torch.equal(s.scores, scores)
        assert torch.equal(s.origin, origin)
        assert all(torch.equal(s.extra[n], extra[n]) for n in extra)
        assert all(torch.equal(s.island[n], island[n]) for n in island)


def test_uniforms_float64_are_torch_rand_and_the_buffer_is_kept() -> None:
    from islandsync.search.algorithms.base import Uniforms

    u = Uniforms((9, 4, 5), torch.device("cpu"), torch.float64)
    g, h = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    for _ in range(2):  # the same values as torch.rand from the same stream, draw after draw
        drawn = u.draw(g)
        assert drawn is u.out and drawn.dtype == torch.float64
        assert torch.equal(drawn, torch.rand((9, 4, 5), generator=h, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(4, 50, 100), (3, 7, 5)])  # even: from bits; odd: uniform_
def test_uniform_fill_is_uniform_and_deterministic(shape: tuple[int, ...]) -> None:
    from islandsync.search.algorithms.base import Uniforms

    def draw(seed: int) -> torch.Tensor:
        return Uniforms(shape, torch.device("cpu")).draw(torch.Generator().manual_seed(seed))

    u = draw(1)
    assert torch.equal(u, draw(1)) and not torch.equal(u, draw(2))
    assert bool(((u >= 0) & (u < 1)).all())
    many = torch.cat([draw(s).flatten() for s in range(400_000 // u.numel() + 1)])
    assert abs(many.mean().item() - 0.5) < 0.005 and abs(many.var().item() - 1 / 12) < 0.002
    share = torch.histc(many, 16, 0, 1) / many.numel()
    assert float((share * 16 - 1).abs().max()) < 0.05
