"""The built-in problems' facts, torch-free: the one table that both the spec (which problems
exist, what genome each takes, its default box) and :mod:`islandsync.search.problems` (which
implements them with these numbers) read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

#: Symbolic regression's tokens; a genome holds their indices (postfix programs).
SYMREG_TOKENS: tuple[str, ...] = ("x", "1", "2", "3", "0.5", "-1", "+", "-", "*", "/", "sin",
                                  "cos", "nop")


@dataclass(frozen=True)
class BuiltinProblem:
    """One built-in problem. ``lower``/``upper`` are a real genome's default box (a run may
    choose another), ``length`` a token genome's default length, ``vocab`` its token count
    (fixed: the evaluator knows exactly these tokens), ``optimum`` the best objective value,
    ``params`` the problem's params with their defaults."""

    name: str
    kind: Literal["real", "tokens"]
    direction: Literal["minimize", "maximize"] = "minimize"
    lower: float | None = None
    upper: float | None = None
    length: int | None = None
    vocab: int | None = None
    optimum: float | None = 0.0
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _real(name: str, lower: float, upper: float) -> BuiltinProblem:
    return BuiltinProblem(name, "real", lower=lower, upper=upper)


BUILTIN_PROBLEMS: Mapping[str, BuiltinProblem] = MappingProxyType({p.name: p for p in (
    _real("sphere", -5.12, 5.12),
    _real("rastrigin", -5.12, 5.12),
    _real("rosenbrock", -5.0, 10.0),
    _real("ackley", -32.768, 32.768),
    _real("griewank", -600.0, 600.0),
    _real("schwefel", -500.0, 500.0),
    BuiltinProblem("symbolic_regression", "tokens", length=24, vocab=len(SYMREG_TOKENS),
                   params=MappingProxyType({"target": "koza1", "points": 20})),
)})


__all__ = ["BUILTIN_PROBLEMS", "SYMREG_TOKENS", "BuiltinProblem"]
