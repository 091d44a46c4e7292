"""The built-in problems' params in the spec: declared once (config.problems), defaults
filled in, bad values refused with one line, and a network's genome length following from
its params."""

from __future__ import annotations

import pytest

from islandsync.config import BUILTIN_PROBLEMS, parse_spec, spec_from_flags
from islandsync.config.problems import SYMREG_TARGET_NAMES
from islandsync.errors import ConfigError
from islandsync.search.problems import SYMREG_TARGETS, make_problem


def digits_spec(params: dict, dim: int) -> dict:
    return {"problem": {"name": "digits", "params": params,
                        "genome": {"kind": "real", "dim": dim, "lower": -1, "upper": 1}},
            "algorithm": {"name": "snes"}, "islands": 2}


def test_a_network_gets_its_genome_length_from_its_params() -> None:
    assert spec_from_flags(problem="digits").problem.genome.dim == 65 * 32 + 33 * 10 == 2410
    spec = spec_from_flags(problem="digits", params={"hidden": 16})
    assert spec.problem.genome.dim == 65 * 16 + 17 * 10 and spec.problem.params == {"hidden": 16}
    assert (spec.problem.genome.lower, spec.problem.genome.upper) == (-1.0, 1.0)
    assert spec_from_flags(problem="cartpole").problem.genome.dim == 5 * 8 + 9
    assert spec_from_flags(problem="cartpole", params={"hidden": 0}).problem.genome.dim == 5
    assert parse_spec(digits_spec({"hidden": 2}, 160), source="t").problem.genome.dim == 160


@pytest.mark.parametrize("params, dim, message", [
    ({"hidden": 0}, 10, "problem.params: param 'hidden' = 0 must be an int from 1 to 4096"),
    ({"hidden": "32"}, 2410, "problem.params: param 'hidden' = '32' must be an int from 1"),
    ({"hidden": 2.0}, 160, "problem.params: param 'hidden' = 2.0 must be an int from 1"),
    ({"hiden": 2}, 160, "problem.params: unknown param 'hiden' (allowed: hidden)"),
    ({"hidden": 2}, 2410, "problem.genome.dim: problem digits (hidden = 2) has 160 genes, "
                          "not 2410"),
])
def test_bad_params_are_refused_with_one_line(params: dict, dim: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(digits_spec(params, dim), source="run.toml")
    text = str(info.value)
    assert text.startswith(f"run.toml: {message}") and "\n" not in text


def test_flags_refuse_bad_params_and_make_problem_refuses_them_too() -> None:
    with pytest.raises(ConfigError, match="param 'episodes' = 0 must be an int from 1"):
        spec_from_flags(problem="cartpole", params={"episodes": 0})
    with pytest.raises(ConfigError, match="param 'steps' = 501 must be an int from 1 to 500"):
        spec_from_flags(problem="cartpole", params={"steps": 501})
    with pytest.raises(ConfigError, match=r"^problem 'cartpole': unknown param 'gamma'"):
        make_problem("cartpole", {"gamma": 0.9})
    with pytest.raises(ConfigError, match=r"^problem 'digits': param 'hidden' = -1 must be"):
        make_problem("digits", {"hidden": -1})
    with pytest.raises(ConfigError, match="param 'target' = 'x' must be one of koza1"):
        spec_from_flags(problem="symbolic_regression", params={"target": "x"})


def test_every_declared_param_has_a_rule_and_a_valid_default() -> None:
    for name, meta in BUILTIN_PROBLEMS.items():
        assert set(meta.rules) == set(meta.params), name
        assert meta.resolve({}) == dict(meta.params)
        assert (meta.dim_of is not None) == (name in ("digits", "cartpole"))
    assert tuple(SYMREG_TARGETS) == SYMREG_TARGET_NAMES
