"""Problems: what a genome is worth. Pure, vectorised tensor code, batch dimension first.

A :class:`Problem` evaluates a batch ``x [B, D]`` to ``[B]`` raw objective values in its own
direction; the worker turns them into minimisation scores and replaces NaN/inf. Built-in
problems are the usual real benchmarks, a token-genome symbolic regression, and two
neuroevolution workloads (an MLP on the digits data set, :mod:`.neuro`; a CartPole policy,
:mod:`.control`); a user's own
fitness plugs in through :func:`make_problem` with ``fitness=``.

Nothing here evaluates strings: symbolic-regression programs are token tensors run by a
vectorised stack machine, and targets are chosen by name from a fixed table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from islandsync.config.objective import DIRECTIONS, Direction, score_sign
from islandsync.config.problems import BUILTIN_PROBLEMS, CUSTOM_PARAMS, SYMREG_TOKENS
from islandsync.errors import ConfigError
from islandsync.search.control import cartpole_fitness
from islandsync.search.neuro import digits_fitness
from islandsync.search.per_solution import wrong_shape

# ---------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class Problem:
    """One optimisation problem.

    ``evaluate(x [B, D]) -> [B]`` returns raw objective values in ``direction``; it must be
    vectorised over the batch and keep the input's device. ``lower``/``upper`` are the default
    box of a real genome, ``vocab`` the token count of a token genome, ``optimum`` the known
    best objective value where one is known.
    """

    name: str
    kind: Literal["real", "tokens"]
    evaluate: Callable[[Tensor], Tensor]
    direction: Direction = "minimize"
    lower: float | None = None
    upper: float | None = None
    vocab: int | None = None
    optimum: float | None = None

    @property
    def sign(self) -> float:
        """Multiply raw values by this to get minimisation scores."""
        return score_sign(self.direction)


# ---------------------------------------------------------------------------- real benchmarks


def _float(x: Tensor) -> Tensor:
    # Compute in the input's own float dtype (float64 for reference checks, float32 on GPUs).
    return x if x.is_floating_point() else x.to(torch.float32)


def sphere(x: Tensor) -> Tensor:
    x = _float(x)
    return (x * x).sum(dim=-1)


def rastrigin(x: Tensor) -> Tensor:
    x = _float(x)
    # 10 d + sum(x^2 - 10 cos(2 pi x)), written as sum(x^2 + 20 sin^2(pi x)) (the same by
    # 1 - cos 2t = 2 sin^2 t): the textbook form cancels 10 d against the cosines, so in float32
    # everything within ~1e-4 of the optimum scores exactly 0 and the search goes blind there.
    s = torch.sin(x * math.pi)
    # In place on a fresh x * x, and no pow: 7 passes over [B, D] down to 5.
    return (x * x).addcmul_(s, s, value=20.0).sum(dim=-1)


def rosenbrock(x: Tensor) -> Tensor:
    x = _float(x)
    a, b = x[..., :-1], x[..., 1:]
    return (100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2).sum(dim=-1)


def ackley(x: Tensor) -> Tensor:
    x = _float(x)
    m2 = (x * x).mean(dim=-1)
    # The textbook -20 exp(-0.2 sqrt(m2)) - exp(mean cos 2 pi x) + 20 + e, written with expm1
    # and cos 2t = 1 - 2 sin^2 t so that nothing cancels near the optimum in float32.
    ms = (2.0 * torch.sin(math.pi * x) ** 2).mean(dim=-1)
    return -20.0 * torch.expm1(-0.2 * torch.sqrt(m2)) - math.e * torch.expm1(-ms)


def griewank(x: Tensor) -> Tensor:
    x = _float(x)
    i = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    return 1.0 + (x * x).sum(dim=-1) / 4000.0 - torch.cos(x / torch.sqrt(i)).prod(dim=-1)


SCHWEFEL_ARGMIN = 420.9687462275036


def schwefel(x: Tensor) -> Tensor:
    """Schwefel 2.26, shifted so the optimum (every x_i = 420.9687...) is 0."""
    x = _float(x)
    return 418.9828872724338 * x.shape[-1] - (x * torch.sin(torch.sqrt(x.abs()))).sum(dim=-1)


# The implementations of the real built-ins; their bounds and optima are in BUILTIN_PROBLEMS.
_REAL: dict[str, Callable[[Tensor], Tensor]] = {
    "sphere": sphere, "rastrigin": rastrigin, "rosenbrock": rosenbrock, "ackley": ackley,
    "griewank": griewank, "schwefel": schwefel,
}

# ---------------------------------------------------------------------------- symbolic regression

SYMREG_VOCAB = len(SYMREG_TOKENS)
SYMREG_LENGTH: int = BUILTIN_PROBLEMS["symbolic_regression"].length  # type: ignore[assignment]
# Token numbers by their names in the table's token list (constants sit between x and +).
_X, _ADD, _SUB, _MUL, _DIV, _SIN, _COS, _NOP = (
    SYMREG_TOKENS.index(t) for t in ("x", "+", "-", "*", "/", "sin", "cos", "nop"))
_CONSTS = (0.0, *(float(t) for t in SYMREG_TOKENS[1:_ADD]))  # index = token; 0 (x) unused
_DIV_EPS = 1e-6

SYMREG_TARGETS: dict[str, Callable[[Tensor], Tensor]] = {
    "koza1": lambda x: x**4 + x**3 + x**2 + x,
    "koza2": lambda x: x**5 - 2 * x**3 + x,
    "koza3": lambda x: x**6 - 2 * x**4 + x**2,
    "nguyen1": lambda x: x**3 + x**2 + x,
    "nguyen5": lambda x: torch.sin(x**2) * torch.cos(x) - 1,
    "nguyen6": lambda x: torch.sin(x) + torch.sin(x + x**2),
}


def run_programs(tokens: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Run postfix programs ``tokens [B, L]`` on sample points ``x [S]``.

    Returns ``(top [B, S], ok [B])``: the value on top of each program's stack and whether the
    stack was non-empty at the end. A token whose operands are missing is skipped; ``/`` is
    protected (``|denominator| < 1e-6`` gives 1.0). The loop runs over the L token positions
    only; every position is one batched update of all programs and all points.
    """
    if tokens.dim() != 2:
        raise ConfigError(f"symbolic_regression: genomes must be [B, L], got {tuple(tokens.shape)}")
    if tokens.is_floating_point():
        raise ConfigError("symbolic_regression: genomes must be integer tokens")
    tok = tokens.to(torch.int64)
    b, length = tok.shape
    s = x.shape[0]
    dev, dt = x.device, x.dtype
    if b and bool(((tok < 0) | (tok >= SYMREG_VOCAB)).any()):
        raise ConfigError(f"symbolic_regression: tokens must lie in [0, {SYMREG_VOCAB})")
    # Slot ``length`` is scratch: skipped tokens write there, and nothing ever reads it
    # (at most ``length`` values are ever pushed, so live slots are 0..length-1).
    stack = torch.zeros(b, length + 1, s, dtype=dt, device=dev)
    sp = torch.zeros(b, dtype=torch.int64, device=dev)
    consts = torch.tensor(_CONSTS, dtype=dt, device=dev)
    xs = x[None, :].expand(b, s)
    scratch = torch.full((b,), length, dtype=torch.int64, device=dev)
    for t in range(length):
        k = tok[:, t]
        top = torch.gather(stack, 1, (sp - 1).clamp(min=0)[:, None, None].expand(b, 1, s))[:, 0]
        sec = torch.gather(stack, 1, (sp - 2).clamp(min=0)[:, None, None].expand(b, 1, s))[:, 0]
        push = k < _ADD
        binary = (k >= _ADD) & (k <= _DIV) & (sp >= 2)
        unary = ((k == _SIN) | (k == _COS)) & (sp >= 1)

        small = top.abs() < _DIV_EPS
        quot = torch.where(small, torch.ones_like(top), sec / torch.where(small, 1.0, top))
        kk = k[:, None]
        val = torch.where(kk == _X, xs, consts[k.clamp(max=len(_CONSTS) - 1)][:, None])
        val = torch.where(kk == _ADD, sec + top, val)
        val = torch.where(kk == _SUB, sec - top, val)
        val = torch.where(kk == _MUL, sec * top, val)
        val = torch.where(kk == _DIV, quot, val)
        val = torch.where(kk == _SIN, torch.sin(top), val)
        val = torch.where(kk == _COS, torch.cos(top), val)

        pos = torch.where(push, sp,
                          torch.where(binary, sp - 2, torch.where(unary, sp - 1, scratch)))
        stack.scatter_(1, pos[:, None, None].expand(b, 1, s), val[:, None, :])
        sp = sp + push.to(torch.int64) - binary.to(torch.int64)
    top = torch.gather(stack, 1, (sp - 1).clamp(min=0)[:, None, None].expand(b, 1, s))[:, 0]
    return top, sp > 0


def _symbolic_regression(target: str, points: int) -> Callable[[Tensor], Tensor]:
    fn = SYMREG_TARGETS[target]

    def evaluate(tokens: Tensor) -> Tensor:
        # float32 everywhere: programs are short, and float64 is slow on most notebook GPUs.
        x = torch.linspace(-1.0, 1.0, points, dtype=torch.float32, device=tokens.device)
        out, ok = run_programs(tokens, x)
        mse = ((out - fn(x)[None, :]) ** 2).mean(dim=1)
        return torch.where(ok, mse, torch.full_like(mse, float("inf")))

    return evaluate


def decode_program(tokens: Sequence[int] | Tensor) -> str:
    """Human-readable infix form of one postfix token genome, with the evaluator's rules
    (underflowing tokens skipped, the top of the stack is the result)."""
    seq = tokens.tolist() if hasattr(tokens, "tolist") else list(tokens)
    stack: list[str] = []
    ops = {_ADD: "+", _SUB: "-", _MUL: "*", _DIV: "/"}
    for k in (int(v) for v in seq):
        if not 0 <= k < SYMREG_VOCAB:
            raise ConfigError(f"decode_program: token {k} outside [0, {SYMREG_VOCAB})")
        if k < _ADD:
            stack.append("(-1)" if k == 5 else SYMREG_TOKENS[k])
        elif k in ops and len(stack) >= 2:
            b, a = stack.pop(), stack.pop()
            stack.append(f"({a} {ops[k]} {b})")
        elif k in (_SIN, _COS) and stack:
            stack.append(f"{SYMREG_TOKENS[k]}({stack.pop()})")
    return stack[-1] if stack else "<empty>"


# ---------------------------------------------------------------------------- the factory

def _custom(name: str, fitness: Callable[[Tensor], Tensor], direction: str,
            params: Mapping[str, Any]) -> Problem:
    try:  # declared and checked with the built-ins' (config.problems.CUSTOM_PARAMS)
        params = CUSTOM_PARAMS.resolve(params)
    except ValueError as e:
        raise ConfigError(f"problem {name!r}: {e}") from None
    kind = params["kind"]

    def evaluate(x: Tensor) -> Tensor:
        y = fitness(x)
        if not isinstance(y, Tensor):
            y = torch.as_tensor(y, device=x.device)
        if y.shape != x.shape[:1]:
            raise ConfigError(f"problem {name!r}: "
                              + wrong_shape(tuple(y.shape), tuple(x.shape)))
        return y

    return Problem(name, kind, evaluate, direction,  # type: ignore[arg-type]
                   params.get("lower"), params.get("upper"), params.get("vocab"),
                   params.get("optimum"))


def make_problem(name: str, params: Mapping[str, Any] | None = None, *,
                 fitness: Callable[[Tensor], Tensor] | None = None,
                 direction: str = "minimize") -> Problem:
    """A built-in problem by name, or a user's ``fitness(x [B, ...]) -> [B]``.

    Built-ins (see :data:`BUILTIN_PROBLEMS`, which declares their params, defaults and rules)
    all minimise. The test functions take no params; ``symbolic_regression`` takes
    ``target`` (a name in :data:`SYMREG_TARGETS`, default ``"koza1"``) and ``points`` (sample
    points evenly spaced in [-1, 1], default 20); ``digits`` takes ``hidden`` (the MLP's
    hidden units, :mod:`.neuro`); ``cartpole`` takes ``hidden``, ``episodes``, ``steps`` and
    ``seed`` (:mod:`.control`).
    A user fitness goes with any name that is not a built-in (conventionally ``"custom"``);
    its optional params are ``kind``, ``lower``, ``upper``, ``vocab``, ``optimum``.

    Raises:
        ConfigError: unknown problem, unknown or invalid param, bad direction, or a fitness
            that is not callable; the message names the problem and the param.
    """
    params = dict(params or {})
    if direction not in DIRECTIONS:
        raise ConfigError(f"problem {name!r}: direction must be 'minimize' or 'maximize', "
                          f"got {direction!r}")
    if fitness is not None:
        if name in BUILTIN_PROBLEMS:
            raise ConfigError(f"problem {name!r} is built in; name a custom fitness otherwise "
                              "(e.g. 'custom')")
        if not callable(fitness):
            raise ConfigError(f"problem {name!r}: fitness must be callable")
        return _custom(name, fitness, direction, params)
    if name not in BUILTIN_PROBLEMS:
        raise ConfigError(f"unknown problem {name!r}; built-ins: {sorted(BUILTIN_PROBLEMS)}, "
                          "or pass fitness= for a custom one")
    meta = BUILTIN_PROBLEMS[name]
    if direction != meta.direction:
        raise ConfigError(f"problem {name!r}: built-in problems minimise; direction "
                          f"{direction!r} is not allowed")
    try:
        params = meta.resolve(params)
    except ValueError as e:
        raise ConfigError(f"problem {name!r}: {e}") from None
    if name in _REAL:
        evaluate = _REAL[name]
    elif name == "symbolic_regression":
        evaluate = _symbolic_regression(params["target"], params["points"])
    elif name == "digits":
        evaluate = digits_fitness(params["hidden"])
    else:
        evaluate = cartpole_fitness(params["hidden"], params["episodes"], params["steps"],
                                    params["seed"])
    return Problem(name, meta.kind, evaluate, meta.direction, meta.lower, meta.upper,
                   meta.vocab, meta.optimum)

__all__ = [
    "BUILTIN_PROBLEMS",
    "SCHWEFEL_ARGMIN",
    "SYMREG_LENGTH",
    "SYMREG_TARGETS",
    "SYMREG_TOKENS",
    "SYMREG_VOCAB",
    "Problem",
    "ackley",
    "decode_program",
    "griewank",
    "make_problem",
    "rastrigin",
    "rosenbrock",
    "run_programs",
    "schwefel",
    "sphere",
]
