"""The built-in problems' facts, torch-free: the one table that both the spec (which problems
exist, what genome each takes, its default box, which params it takes and what each must be)
and :mod:`islandsync.search.problems` (which implements them with these numbers) read."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from .objective import Direction

#: Symbolic regression's tokens; a genome holds their indices (postfix programs).
SYMREG_TOKENS: tuple[str, ...] = ("x", "1", "2", "3", "0.5", "-1", "+", "-", "*", "/", "sin",
                                  "cos", "nop")
#: Symbolic regression's targets by name (their formulas: ``search.problems.SYMREG_TARGETS``).
SYMREG_TARGET_NAMES: tuple[str, ...] = ("koza1", "koza2", "koza3", "nguyen1", "nguyen5",
                                        "nguyen6")

#: A param's rule: a test of its value and what the value must be, for the error line.
Rule = tuple[Callable[[Any], bool], str]


def _int_rule(lo: int, hi: int) -> Rule:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    return ok, f"an int from {lo} to {hi}"


def _name_rule(names: tuple[str, ...]) -> Rule:
    return (lambda v: isinstance(v, str) and v in names), f"one of {', '.join(names)}"


def _optional(rule: Rule) -> Rule:
    ok, need = rule
    return (lambda v: v is None or ok(v)), need


def _number_rule() -> Rule:
    def ok(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    return ok, "a finite number"


# The neural networks' sizes (search/neuro.py, search/control.py): a digits image has 8 x 8
# pixels and 10 classes; CartPole has 4 observations and 2 actions (one output, its sign).
DIGITS_INPUTS, DIGITS_CLASSES = 64, 10
CARTPOLE_OBSERVATIONS = 4


def mlp_weights(inputs: int, hidden: int, outputs: int) -> int:
    """Weights and biases of an MLP ``inputs -> hidden -> outputs`` (``hidden`` 0: linear),
    which is the genome's length for the neuroevolution problems."""
    if hidden == 0:
        return (inputs + 1) * outputs
    return (inputs + 1) * hidden + (hidden + 1) * outputs


@dataclass(frozen=True)
class BuiltinProblem:
    """One built-in problem. ``lower``/``upper`` are a real genome's default box (a run may
    choose another), ``length`` a token genome's default length, ``vocab`` its token count
    (fixed: the evaluator knows exactly these tokens), ``optimum`` the best objective value
    (None where it is not known), ``params`` the problem's params with their defaults and
    ``rules`` what each must be. ``dim_of`` gives the genome's length where the params fix
    it (a network's weights), None where the run chooses it."""

    name: str
    kind: Literal["real", "tokens"]
    direction: Direction = "minimize"
    lower: float | None = None
    upper: float | None = None
    length: int | None = None
    vocab: int | None = None
    optimum: float | None = 0.0
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    rules: Mapping[str, Rule] = field(default_factory=lambda: MappingProxyType({}))
    dim_of: Callable[[Mapping[str, Any]], int] | None = None

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The params with their defaults filled in.

        Raises:
            ValueError: one line naming the first unknown or invalid param and what it must
                be (the spec and ``make_problem`` prefix where it came from).
        """
        for key in given:
            if key not in self.params:
                raise ValueError(f"unknown param {key!r} (allowed: "
                                 f"{', '.join(sorted(self.params)) or 'none'})")
        out = {**self.params, **given}
        for key, (ok, need) in self.rules.items():
            if not ok(out[key]):
                raise ValueError(f"param {key!r} = {out[key]!r} must be {need}")
        return out

    def default_dim(self, given: Mapping[str, Any]) -> int | None:
        """The genome's length these params fix, or None where the run chooses it.

        Raises:
            ValueError: as :meth:`resolve`.
        """
        return None if self.dim_of is None else self.dim_of(self.resolve(given))

def _real(name: str, lower: float, upper: float) -> BuiltinProblem:
    return BuiltinProblem(name, "real", lower=lower, upper=upper)


def _frozen(**items: Any) -> Mapping[str, Any]:
    return MappingProxyType(items)


BUILTIN_PROBLEMS: Mapping[str, BuiltinProblem] = MappingProxyType({p.name: p for p in (
    _real("sphere", -5.12, 5.12),
    _real("rastrigin", -5.12, 5.12),
    _real("rosenbrock", -5.0, 10.0),
    _real("ackley", -32.768, 32.768),
    _real("griewank", -600.0, 600.0),
    _real("schwefel", -500.0, 500.0),
    BuiltinProblem("symbolic_regression", "tokens", length=24, vocab=len(SYMREG_TOKENS),
                   params=_frozen(target="koza1", points=20),
                   rules=_frozen(target=_name_rule(SYMREG_TARGET_NAMES),
                                 points=_int_rule(1, 1_000_000))),
    # Neuroevolution (search/neuro.py): an MLP 64 -> hidden (tanh) -> 10 on scikit-learn's
    # digits, fitness the mean cross-entropy on the training split. No known optimum.
    BuiltinProblem("digits", "real", lower=-1.0, upper=1.0, optimum=None,
                   params=_frozen(hidden=32), rules=_frozen(hidden=_int_rule(1, 4096)),
                   dim_of=lambda p: mlp_weights(DIGITS_INPUTS, p["hidden"], DIGITS_CLASSES)),
    # Control (search/control.py): gymnasium's CartPole-v1 in torch, a policy 4 -> hidden
    # (tanh) -> 1 (0: linear), fitness minus the mean return of ``episodes`` episodes of at
    # most ``steps`` steps from start states drawn with ``seed``.
    BuiltinProblem("cartpole", "real", lower=-1.0, upper=1.0, optimum=None,
                   params=_frozen(hidden=8, episodes=8, steps=500, seed=0),
                   rules=_frozen(hidden=_int_rule(0, 1024), episodes=_int_rule(1, 10_000),
                                 steps=_int_rule(1, 500), seed=_int_rule(0, 2**63 - 1)),
                   dim_of=lambda p: mlp_weights(CARTPOLE_OBSERVATIONS, p["hidden"], 1)),
)})


#: The params a custom problem (a user's fitness function) takes, all optional, declared and
#: checked as a built-in's are: the one table of them (the spec checks a run's before run.json
#: is written; make_problem resolves them for the worker).
CUSTOM_PARAMS = BuiltinProblem(
    "custom", "real", optimum=None,
    params=_frozen(kind="real", lower=None, upper=None, vocab=None, optimum=None),
    rules=_frozen(kind=_name_rule(("real", "tokens")), lower=_optional(_number_rule()),
                  upper=_optional(_number_rule()), vocab=_optional(_int_rule(2, 2**31 - 1)),
                  optimum=_optional(_number_rule())))


def declared_params(name: str) -> BuiltinProblem:
    """The entry whose params (with their defaults and rules) problem ``name`` takes: a
    built-in's, else a custom problem's."""
    return BUILTIN_PROBLEMS.get(name, CUSTOM_PARAMS)


__all__ = ["BUILTIN_PROBLEMS", "CARTPOLE_OBSERVATIONS", "CUSTOM_PARAMS", "DIGITS_CLASSES",
           "DIGITS_INPUTS", "SYMREG_TARGET_NAMES", "SYMREG_TOKENS", "BuiltinProblem",
           "declared_params", "mlp_weights"]
