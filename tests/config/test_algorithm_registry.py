"""Adding an algorithm is one settings model and one implementation, each registered under one
name: the spec, the CLI and every registry-wide test take it from there (issue 19)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from islandsync.bucket.run import read_spec
from islandsync.cli import main
from islandsync.config import (
    ALGORITHM_CONFIGS,
    parse_spec,
    register_algorithm,
    spec_from_flags,
    unregister_algorithm,
)
from islandsync.config._base import STRICT
from islandsync.errors import ConfigError
from islandsync.search.algorithms import ALGORITHMS, make_algorithm, register
from islandsync.store import open_store
from islandsync.testing.throwaway_algorithm import NAME, ThrowawayRandomSearch

from ..conftest import THROWAWAY_ALGORITHM


class TinyConfig(BaseModel):
    model_config = STRICT
    name: Literal["tiny"] = "tiny"
    pop: int = Field(4, ge=4)
    step: float = Field(0.5, gt=0.0)

    def island_frames(self, width: int, dtype: str = "float32") -> dict:
        return {}

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        return []


def _spec(algorithm: object) -> dict:
    return {"problem": {"name": "sphere", "genome": {"dim": 3, "lower": -1.0, "upper": 1.0}},
            "algorithm": algorithm, "islands": 2}


def test_the_session_registers_the_throwaway_through_the_registries_alone() -> None:
    # tests/conftest registers it; the registry-wide tests (parametrised over ALGORITHMS at
    # collection) therefore run it: contract, determinism, counts, ids, round trip, resume.
    assert THROWAWAY_ALGORITHM == NAME
    assert ALGORITHM_CONFIGS[NAME].model_fields["radius"].default == 0.3
    assert ALGORITHMS[NAME] is ThrowawayRandomSearch
    spec = spec_from_flags(problem="sphere", dim=3, algorithm=NAME, pop=6,
                           algorithm_settings={"radius": 0.5})
    alg = make_algorithm(spec.algorithm, spec.problem.genome)
    assert isinstance(alg, ThrowawayRandomSearch) and alg.config.radius == 0.5


def test_the_cli_accepts_the_throwaway_and_its_settings(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "run")
    assert main(["init", url, "--problem", "sphere", "--dim", "4", "--islands", "2",
                 "--algorithm", NAME, "--set", "algorithm.shrink=0.5", "--no-publish"]) == 0
    algorithm = read_spec(open_store(url)).algorithm
    assert (algorithm.name, algorithm.shrink) == (NAME, 0.5)
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    assert NAME in capsys.readouterr().out


def test_an_algorithm_registered_at_runtime_is_a_spec_until_removed() -> None:
    with pytest.raises(ConfigError, match="Input should be .*'snes'"):
        parse_spec(_spec({"name": "tiny"}), source="t")
    register_algorithm(TinyConfig)
    try:
        spec = parse_spec(_spec({"name": "tiny", "step": 0.25}), source="t")
        assert isinstance(spec.algorithm, TinyConfig) and spec.algorithm.step == 0.25
        portfolio = parse_spec(_spec([{"name": "tiny"}, {"name": "ga"}]), source="t")
        assert [a.name for a in portfolio.algorithms] == ["tiny", "ga"]
        # its model validates its settings, errors naming the field as for a built-in
        with pytest.raises(ConfigError, match=r"^t: algorithm.step: Input should be greater"):
            parse_spec(_spec({"name": "tiny", "step": -1.0}), source="t")
        with pytest.raises(ConfigError, match=r"^t: algorithm.nosuch: unknown field$"):
            parse_spec(_spec({"name": "tiny", "nosuch": 1}), source="t")
        with pytest.raises(ConfigError, match="already registered"):
            register_algorithm(TinyConfig)
        # settings without an implementation: a clear error when a worker builds it
        with pytest.raises(ConfigError, match="registered settings but no implementation"):
            make_algorithm(spec.algorithm, spec.problem.genome)
    finally:
        unregister_algorithm("tiny")
    assert "tiny" not in ALGORITHM_CONFIGS
    with pytest.raises(ConfigError, match="Input should be"):
        parse_spec(_spec({"name": "tiny"}), source="t")


def test_registering_checks_what_it_is_given() -> None:
    class Nameless(BaseModel):
        pop: int = 4

    with pytest.raises(ConfigError, match="needs a field name"):
        register_algorithm(Nameless)
    with pytest.raises(ConfigError, match="already registered"):
        register_algorithm(ALGORITHM_CONFIGS["ga"])

    class Unsettled:
        name = "unsettled"

    with pytest.raises(ConfigError, match="register its settings model first"):
        register(Unsettled)

    class Mismatched:
        name, Config = "ga", TinyConfig

    with pytest.raises(ConfigError, match="Config must be GAConfig"):
        register(Mismatched)
