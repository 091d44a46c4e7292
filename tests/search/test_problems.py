"""Built-in problems: known optima, batching, the symbolic-regression stack machine, the factory."""

from __future__ import annotations

import math

import pytest
import torch

from islandsync import config
from islandsync.errors import ConfigError
from islandsync.search.problems import (
    BUILTIN_PROBLEMS,
    SCHWEFEL_ARGMIN,
    SYMREG_LENGTH,
    SYMREG_TOKENS,
    SYMREG_VOCAB,
    decode_program,
    make_problem,
    run_programs,
)

REAL = ["sphere", "rastrigin", "rosenbrock", "ackley", "griewank", "schwefel"]
BOUNDS = {"sphere": (-5.12, 5.12), "rastrigin": (-5.12, 5.12), "rosenbrock": (-5.0, 10.0),
          "ackley": (-32.768, 32.768), "griewank": (-600.0, 600.0),
          "schwefel": (-500.0, 500.0)}
T = {name: i for i, name in enumerate(SYMREG_TOKENS)}


def prog(text: str, length: int = 24) -> list[int]:
    """Postfix text -> tokens, padded with nop."""
    toks = [T[w] for w in text.split()]
    return toks + [T["nop"]] * (length - len(toks))


@pytest.mark.parametrize("name", REAL)
def test_real_optimum_is_zero(name: str) -> None:
    p = make_problem(name)
    assert (p.kind, p.direction, p.optimum) == ("real", "minimize", 0.0)
    assert (p.lower, p.upper) == BOUNDS[name]
    assert (BUILTIN_PROBLEMS[name].lower, BUILTIN_PROBLEMS[name].upper) == BOUNDS[name]
    at = {"rosenbrock": 1.0, "schwefel": SCHWEFEL_ARGMIN}.get(name, 0.0)
    x = torch.full((3, 17), at, dtype=torch.float64)
    y = p.evaluate(x)
    assert y.shape == (3,) and y.dtype == torch.float64
    assert torch.allclose(y, torch.zeros(3, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("name", REAL)
def test_real_batch_matches_single_and_is_positive_elsewhere(name: str) -> None:
    p = make_problem(name)
    g = torch.Generator().manual_seed(1)
    lo, hi = BOUNDS[name]
    x = lo + (hi - lo) * torch.rand(50, 10, generator=g)
    batch = p.evaluate(x)
    single = torch.stack([p.evaluate(row[None])[0] for row in x])
    assert batch.dtype == torch.float32
    assert torch.allclose(batch, single, rtol=1e-5, atol=1e-4)
    assert bool((batch > 0).all())


def test_one_problem_table() -> None:
    # search.problems implements exactly the table config (torch-free) declares, with its
    # numbers: a problem added to one and not the other, or a bound changed in one, fails here.
    assert BUILTIN_PROBLEMS is config.BUILTIN_PROBLEMS and SYMREG_TOKENS is config.SYMREG_TOKENS
    for name, meta in config.BUILTIN_PROBLEMS.items():
        p = make_problem(name)
        assert (p.kind, p.direction, p.lower, p.upper, p.optimum) == \
            (meta.kind, meta.direction, meta.lower, meta.upper, meta.optimum)
        assert p.vocab == meta.vocab
    assert SYMREG_LENGTH == config.BUILTIN_PROBLEMS["symbolic_regression"].length
    assert SYMREG_VOCAB == len(SYMREG_TOKENS) == config.BUILTIN_PROBLEMS["symbolic_regression"].vocab


def test_real_values_at_known_points() -> None:
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert make_problem("sphere").evaluate(x).item() == pytest.approx(5.0)
    assert make_problem("rastrigin").evaluate(x).item() == pytest.approx(5.0)
    assert make_problem("rosenbrock").evaluate(x).item() == pytest.approx(100.0)
    assert make_problem("griewank").evaluate(x).item() == pytest.approx(
        1 + 5 / 4000 - math.cos(1) * math.cos(2 / math.sqrt(2)))


def test_koza1_exact_program_has_zero_error() -> None:
    # x^4 + x^3 + x^2 + x
    koza1 = prog("x x * x * x *  x x * x *  +  x x * +  x +")
    p = make_problem("symbolic_regression")
    assert (p.kind, p.vocab, SYMREG_VOCAB) == ("tokens", 13, 13)
    y = p.evaluate(torch.tensor([koza1]))
    assert y.shape == (1,) and y.item() == pytest.approx(0.0, abs=1e-10)
    assert decode_program(koza1) == "((((((x * x) * x) * x) + ((x * x) * x)) + (x * x)) + x)"


@pytest.mark.parametrize("target,text", [
    ("koza2", "x x * x * x * x *  2 x * x * x *  -  x +"),
    ("koza3", "x x * x * x * x * x *  2 x * x * x * x *  -  x x * +"),
    ("nguyen5", "x x * sin  x cos *  1 -"),
])
def test_other_targets_exact_programs(target: str, text: str) -> None:
    p = make_problem("symbolic_regression", {"target": target, "points": 33})
    assert p.evaluate(torch.tensor([prog(text)])).item() == pytest.approx(0.0, abs=1e-9)


def test_stack_machine_semantics() -> None:
    x = torch.tensor([0.5, 2.0])
    cases = [
        ("x 3 -", [0.5 - 3, 2.0 - 3]),          # second minus top
        ("3 x /", [6.0, 1.5]),
        ("x 0.5 0.5 - /", [1.0, 1.0]),           # protected division
        ("+ x * sin", [math.sin(0.5), math.sin(2.0)]),  # underflowing + and * are skipped
        ("2 -1 cos", [math.cos(-1.0)] * 2),      # top of stack is the result
    ]
    toks = torch.tensor([prog(t, 8) for t, _ in cases])
    out, ok = run_programs(toks, x)
    assert bool(ok.all())
    assert torch.allclose(out, torch.tensor([v for _, v in cases]), atol=1e-6)


def test_underflow_and_empty_programs() -> None:
    p = make_problem("symbolic_regression")
    toks = torch.tensor([prog(""), prog("+ - * / sin cos"), prog("x")])
    y = p.evaluate(toks)
    assert y.shape == (3,)
    assert y[0] == math.inf and y[1] == math.inf and math.isfinite(y[2].item())
    assert decode_program(prog("+ sin")) == "<empty>"


def test_thousand_random_programs_vectorised() -> None:
    p = make_problem("symbolic_regression", {"target": "nguyen5"})
    g = torch.Generator().manual_seed(0)
    toks = torch.randint(0, SYMREG_VOCAB, (1000, 24), generator=g, dtype=torch.int32)
    y = p.evaluate(toks)
    assert y.shape == (1000,) and y.dtype == torch.float32
    # Rows agree with one-at-a-time evaluation: no cross-talk between programs.
    single = torch.cat([p.evaluate(toks[i:i + 1]) for i in range(0, 1000, 97)])
    assert torch.equal(y[::97], single)
    decoded = decode_program(toks[0])
    assert isinstance(decoded, str) and decoded


def test_out_of_vocab_tokens_raise() -> None:
    with pytest.raises(ConfigError, match="tokens"):
        make_problem("symbolic_regression").evaluate(torch.tensor([[13, 0]]))


def test_make_problem_errors_name_problem_and_param() -> None:
    with pytest.raises(ConfigError, match="nosuch"):
        make_problem("nosuch")
    with pytest.raises(ConfigError, match=r"'rastrigin'.*'dim'"):
        make_problem("rastrigin", {"dim": 3})
    with pytest.raises(ConfigError, match="target"):
        make_problem("symbolic_regression", {"target": "x**2"})
    with pytest.raises(ConfigError, match="points"):
        make_problem("symbolic_regression", {"points": 0})
    with pytest.raises(ConfigError, match="direction"):
        make_problem("sphere", direction="up")
    with pytest.raises(ConfigError, match="built in"):
        make_problem("sphere", fitness=lambda x: x.sum(-1))
    with pytest.raises(ConfigError, match="callable"):
        make_problem("custom", fitness=3)  # type: ignore[arg-type]


def test_custom_fitness() -> None:
    p = make_problem("custom", {"lower": -1.0, "upper": 1.0}, fitness=lambda x: x.sum(-1),
                     direction="maximize")
    assert (p.name, p.kind, p.direction, p.sign, p.lower) == ("custom", "real", "maximize",
                                                             -1.0, -1.0)
    assert p.evaluate(torch.ones(4, 3)).tolist() == [3.0] * 4
    bad = make_problem("custom", fitness=lambda x: x)
    with pytest.raises(ConfigError, match="shape"):
        bad.evaluate(torch.ones(4, 3))
    with pytest.raises(ConfigError, match="'nope'"):
        make_problem("custom", {"nope": 1}, fitness=lambda x: x.sum(-1))


def test_rastrigin_keeps_its_precision_near_the_optimum() -> None:
    """The textbook form scores anything within ~1e-4 of the optimum as exactly 0 in float32
    (10 d cancels against the cosines); the search must still see the difference."""
    import torch

    from islandsync.search.problems import rastrigin

    x = torch.full((1, 100), 1e-4, dtype=torch.float32)
    expected = 100 * (1e-8 + 20 * math.sin(math.pi * 1e-4) ** 2)  # ~1.98e-5
    got = float(rastrigin(x)[0])
    assert got > 0 and abs(got - expected) / expected < 1e-3
    assert float(rastrigin(torch.zeros(1, 100))[0]) == 0.0
    y = torch.tensor([[1.0, -2.0, 0.5]])
    textbook = 30 + float((y * y - 10 * torch.cos(2 * math.pi * y)).sum())
    assert abs(float(rastrigin(y)[0]) - textbook) < 1e-4


def test_ackley_keeps_its_precision_near_the_optimum() -> None:
    import torch

    from islandsync.search.problems import ackley

    x = torch.full((1, 50), 1e-6, dtype=torch.float32)
    got = float(ackley(x)[0])
    assert got > 0 and abs(got - 4e-6) / 4e-6 < 0.05  # ~ 20 * 0.2 * 1e-6 near the optimum
    assert float(ackley(torch.zeros(1, 50))[0]) == 0.0
    y = torch.tensor([[1.0, -2.5, 0.3, 4.0]], dtype=torch.float64)
    textbook = (-20 * torch.exp(-0.2 * torch.sqrt((y * y).mean())) -
                torch.exp(torch.cos(2 * math.pi * y).mean()) + 20 + math.e)
    assert abs(float(ackley(y)[0]) - float(textbook)) < 1e-9
