"""Reading a run spec: from JSON or a dict (:func:`parse_spec`), a TOML file
(:func:`load_toml`) or ``islandsync init``'s flags (:func:`spec_from_flags`).

Errors are one ConfigError whose lines read ``<source>: <dotted.field.path>: <message>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from islandsync.errors import ConfigError

from .algorithms import (
    ALGORITHM_CONFIGS,
    DEFAULT_ALGORITHM,
    PORTFOLIOS,
    expand_portfolio,
    named_entry,
)
from .fitness import FitnessRef, fitness_ref, load_fitness, resolve_fitness
from .problems import BUILTIN_PROBLEMS
from .spec import DEFAULT_DTYPE, RunSpec

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]


# Discriminated unions put the tag into an error's loc (algorithm.ga.pop); users never write
# it, so it is dropped where one of these unions sits.
# A portfolio's entries (algorithm.0, algorithm.1, ...) are such unions too, and the shape
# of algorithm (one table or a portfolio) is one more.
# The algorithms' tags are read from the registry when an error is formatted, so an algorithm
# registered later is covered too.
_UNION_TAGS = {("problem", "genome"): {"real", "tokens"}}


def _tags(path: list[str]) -> set[str]:
    if path == ["algorithm"] or (len(path) == 2 and path[0] == "algorithm"
                                 and path[1].isdigit()):
        return {*ALGORITHM_CONFIGS, "one", "portfolio"}
    return _UNION_TAGS.get(tuple(path), set())


def format_errors(err: ValidationError, source: str) -> str:
    """A validation error of a strict model read from ``source`` as ConfigError text: one
    ``<source>: <dotted.path>: <message>`` line per problem (the run spec's, a platform
    profile's)."""
    lines = []
    for e in err.errors(include_url=False):
        path: list[str] = []
        for part in e["loc"]:
            if str(part) in _tags(path):
                continue
            path.append(str(part))
        ctx = e.get("ctx") or {}
        if "subpath" in ctx:
            path.append(ctx["subpath"])
        if e["type"] == "spec_conflict":
            found = [(".".join([*path, p]), m) for p, m in ctx["problems"]]
        elif e["type"] == "extra_forbidden":
            found = [(".".join(path), "unknown field")]
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] != "missing" and isinstance(e["input"], (int, float, str)):
                shown = repr(e["input"])
                msg += f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
            found = [(".".join(path), msg)]
        lines += [f"{source}: {p}: {m}" if p else f"{source}: {m}" for p, m in found]
    return "\n".join(lines)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of duplicate keys silently; an immutable spec must not be
    # ambiguous about which value a reader sees.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_spec(data: dict[str, Any] | str | bytes, *, source: str) -> RunSpec:
    """Validate a spec given as a dict or as JSON text; any problem is one ConfigError listing
    each as ``<source>: <dotted.path>: <message>``."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{source}: not UTF-8 ({err.reason} at byte {err.start})") from err
    if isinstance(data, str):
        try:
            data = json.loads(data, object_pairs_hook=_no_duplicates,
                              parse_constant=_reject_constant)
        except (ValueError, RecursionError) as err:  # JSONDecodeError is a ValueError
            raise ConfigError(f"{source}: invalid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object / TOML table, "
                          f"got {type(data).__name__}")
    try:
        return RunSpec.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from err


#: Each ``islandsync init`` flag that sets a spec field (by :func:`spec_from_flags`'s name
#: for it) and where that field sits in a spec: one table for building a spec from flags and
#: for applying flags given beside ``--config`` to the file's values.
SPEC_FLAGS: dict[str, tuple[str, ...]] = {
    "problem": ("problem", "name"), "direction": ("problem", "direction"),
    "dim": ("problem", "genome", "dim"), "lower": ("problem", "genome", "lower"),
    "upper": ("problem", "genome", "upper"), "length": ("problem", "genome", "length"),
    "vocab": ("problem", "genome", "vocab"), "islands": ("islands",),
    "algorithm": ("algorithm", "name"), "pop": ("algorithm", "pop"),
    "max_evals": ("stop", "max_evals"), "target": ("stop", "target"),
    "duration_s": ("stop", "duration_s"), "migration_interval": ("migration", "interval"),
    "migrants": ("migration", "migrants"), "topology": ("migration", "topology"),
    "elite_size": ("elite_size",), "checkpoint_interval_s": ("checkpoint_interval_s",),
    "heartbeat_interval_s": ("heartbeat_interval_s",), "seed": ("seed",),
    "integer": ("problem", "genome", "integer"), "dtype": ("dtype",), "cadence": ("cadence",),
}


def _override(data: dict[str, Any], overrides: dict[str, Any], source: str) -> None:
    # A portfolio (in the file or named by --algorithm) is no one table whose name and pop
    # could be set: --algorithm replaces it whole, --pop sets every entry's.
    overrides = dict(overrides)
    settings = overrides.pop("algorithm_settings", None)
    algorithm = overrides.get("algorithm")
    one_table = isinstance(data.get("algorithm", {}), dict)
    if (isinstance(algorithm, str) and algorithm in PORTFOLIOS) \
            or (algorithm is not None and not one_table):
        data["algorithm"] = _algorithm(algorithm, overrides.get("pop"))
        overrides = {k: v for k, v in overrides.items() if k not in ("algorithm", "pop")}
    elif "pop" in overrides and isinstance(algs := expand_portfolio(data["algorithm"]), list):
        data["algorithm"] = _algorithm(algs, overrides.pop("pop"))
    for name, value in overrides.items():
        *parents, leaf = SPEC_FLAGS[name]
        node = data
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{source}: {'.'.join(parents)}: not a table, so the "
                                  f"command line's {name} cannot be set in it")
        node[leaf] = value
    if settings:
        data["algorithm"] = with_settings(expand_portfolio(data.get("algorithm", {})),
                                          settings, source)


def with_settings(algorithm: Any, settings: dict[str, Any], source: str) -> Any:
    """A spec's ``algorithm`` (one settings table, or a portfolio's list of them) with
    ``settings`` (``--set algorithm.FIELD=VALUE``, by field) set in each table; the settings
    model validates them with the rest of the spec. Raises ConfigError for ``name`` (that is
    ``--algorithm``) or an ``algorithm`` that is no table."""
    if "name" in settings:
        raise ConfigError(f"{source}: --set algorithm.name: choose the algorithm with "
                          f"--algorithm NAME")
    if isinstance(algorithm, dict):
        return {**algorithm, **settings}
    if isinstance(algorithm, list) and all(isinstance(a, dict) for a in algorithm):
        return [{**entry, **settings} for entry in algorithm]
    raise ConfigError(f"{source}: algorithm: not a table or a list of tables, so the command "
                      f"line's --set cannot be applied to it")


def load_toml(path: str | os.PathLike[str], *,
              fitness: FitnessRef | Callable[..., Any] | str | None = None,
              overrides: dict[str, Any] | None = None) -> RunSpec:
    """Read a run spec from a TOML file; errors name the file.

    A custom problem names its function under ``[problem]`` as ``fitness = "fit.py:score"``
    (a path relative to the TOML file, or ``module:function``; ``fitness = {ref = "...",
    per_solution = true}`` for a function of one solution), and its fingerprint is computed
    here; or as run.json stores it (``name`` and ``fingerprint``). ``fitness`` (``init
    --fitness``) fills it in, or must be the same function as the one the file names.
    ``overrides``: values by :data:`SPEC_FLAGS` name (command-line flags given beside
    ``--config``) that replace the file's, or set what it leaves to a default."""
    source = os.fspath(path)
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError(f"{source}: reading TOML on Python 3.10 needs `pip install tomli`")
    try:
        with open(source, "rb") as f:
            data = _toml.load(f)
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror or err}") from err
    except _toml.TOMLDecodeError as err:
        raise ConfigError(f"{source}: invalid TOML: {err}") from err
    label = source  # what errors name; the fitness path stays relative to the file
    if overrides:
        _override(data, overrides, source)
        label += " with the command line's " + ", ".join(sorted(overrides))
    given = None if fitness is None else resolve_fitness(fitness)
    problem = data.get("problem")
    if isinstance(problem, dict):
        if named := _named_fitness(problem.get("fitness"), source):
            data["problem"] = {**problem, "fitness": named.model_dump()}
        elif given and "fitness" not in problem:
            data["problem"] = {**problem, "fitness": given.model_dump()}
    spec = parse_spec(data, source=label)
    named = spec.problem.fitness
    if given and named and named.fingerprint != given.fingerprint:
        raise ConfigError(
            f"{source}: problem.fitness names {named.name} (fingerprint "
            f"{named.fingerprint[:16]}) but --fitness gives {given.name} (fingerprint "
            f"{given.fingerprint[:16]}): not the same function; give one of them")
    return spec


def _named_fitness(value: Any, source: str) -> FitnessRef | None:
    """A TOML file's ``problem.fitness`` loaded and fingerprinted when it names a function
    (``"fit.py:score"``, ``{ref = ..., per_solution = ...}``); None for anything else
    (run.json's form, validated with the rest of the spec)."""
    if isinstance(value, dict) and "ref" in value:
        if set(value) - {"ref", "per_solution"} or not isinstance(value["ref"], str) \
                or not isinstance(value.get("per_solution", False), bool):
            raise ConfigError(f"{source}: problem.fitness: expected {{ref = \"fit.py:score\"}}"
                              f" with an optional per_solution = true")
        ref, per_solution = value["ref"], value.get("per_solution", False)
    elif isinstance(value, str):
        ref, per_solution = value, False
    else:
        return None
    return fitness_ref(load_fitness(ref, base=os.path.dirname(os.path.abspath(source))),
                       per_solution=per_solution)


def spec_from_flags(
        *, problem: str, dim: int | None = None, length: int | None = None,
        vocab: int | None = None, lower: float | list[float] | None = None,
        upper: float | list[float] | None = None, integer: list[int | str] | None = None,
        dtype: str | None = None, direction: str = "minimize", islands: int = 8,
        pop: int | None = None, algorithm: str | list[dict[str, Any]] | None = None,
        max_evals: int | None = None, target: float | None = None,
        duration_s: float | None = None, migration_interval: int | None = None,
        migrants: int | None = None, topology: str | None = None, elite_size: int | None = None,
        checkpoint_interval_s: float | None = None, heartbeat_interval_s: float | None = None,
        seed: int | None = None, cadence: str | None = None,
        params: dict[str, Any] | None = None, algorithm_settings: dict[str, Any] | None = None,
        fitness: FitnessRef | Callable[..., Any] | str | None = None) -> RunSpec:
    """The spec ``islandsync init RUN --problem ... --dim ...`` builds. ``None`` means the
    model's default; bounds, length and vocab default from :data:`BUILTIN_PROBLEMS`, the
    algorithm from :data:`DEFAULT_ALGORITHM` and the dtype from :data:`DEFAULT_DTYPE` by
    genome kind ("auto" for real genomes: each worker's own, ``genome_dtype``). A custom
    problem's genome kind follows from the flags given (``--dim`` real, ``--length`` tokens).
    A custom problem's ``fitness`` is the function itself (fingerprinted here), a reference
    ``"fit.py:score"`` / ``"module:score"`` / ``"__main__:score"``, or a ready FitnessRef.
    ``algorithm_settings``: the algorithm's settings by field (``{"f_init": 0.7}``; ``init
    --set algorithm.f_init=0.7``), in every entry of a portfolio; its model checks them."""
    source = "command line"
    if problem != "custom" and problem not in BUILTIN_PROBLEMS:
        raise ConfigError(f"{source}: --problem: unknown problem {problem!r}; expected one of "
                          f"{', '.join(BUILTIN_PROBLEMS)} or custom")
    if problem == "custom" and fitness is None:
        raise ConfigError(f"{source}: problem custom needs its fitness function: --fitness "
                          f"path/to/file.py:function (or module:function) on the command "
                          f"line, fitness=your_function in Python")
    if fitness is not None and problem != "custom":
        raise ConfigError(f"{source}: built-in problem {problem} takes no fitness function; "
                          f"use --problem custom for your own")
    fitness = None if fitness is None else resolve_fitness(fitness)
    fields = {"real": {"dim": dim, "lower": lower, "upper": upper, "integer": integer},
              "tokens": {"length": length, "vocab": vocab}}
    given = {k: [n for n, v in f.items() if v is not None] for k, f in fields.items()}
    meta = BUILTIN_PROBLEMS.get(problem)
    kind = meta.kind if meta else ("tokens" if given["tokens"] and not given["real"] else "real")
    # A flag that the genome does not use is refused rather than silently ignored.
    if stray := given["tokens" if kind == "real" else "real"]:
        raise ConfigError(f"{source}: {', '.join('--' + n for n in stray)} does not apply to "
                          f"problem {problem} ({kind} genome)")
    genome: dict[str, Any] = {"kind": kind}
    for name, value in fields[kind].items():
        if value is None and name == "dim" and meta is not None:
            try:
                value = meta.default_dim(params or {})  # a network's weights: its params say
            except ValueError as e:
                raise ConfigError(f"{source}: problem.params: {e}") from None
        value = getattr(meta, name, None) if value is None else value
        if value is None and name == "integer":
            continue
        if value is None:
            hint = " (or --length and --vocab for a token genome)" if not meta else ""
            raise ConfigError(f"{source}: --{name} is required for problem {problem}{hint}")
        genome[name] = value
    spec: dict[str, Any] = {
        "problem": {"name": problem, "params": dict(params or {}), "direction": direction,
                    "genome": genome, **_given(fitness=fitness.model_dump() if fitness else None)},
        "algorithm": with_settings(
            _algorithm(_default_algorithm(kind, islands) if algorithm is None else algorithm,
                       pop), dict(algorithm_settings or {}), source), "islands": islands,
        "migration": _given(interval=migration_interval, migrants=migrants, topology=topology),
        "stop": _given(max_evals=max_evals, target=target, duration_s=duration_s),
        **_given(cadence=cadence, elite_size=elite_size,
                 checkpoint_interval_s=checkpoint_interval_s,
                 heartbeat_interval_s=heartbeat_interval_s, seed=seed),
        "dtype": DEFAULT_DTYPE[kind] if dtype is None else dtype,
    }
    return parse_spec(spec, source=source)


def _default_algorithm(kind: str, islands: int) -> str | list[dict[str, Any]]:
    """:data:`DEFAULT_ALGORITHM` for the genome kind; a named portfolio with more entries than
    the run has islands is cut to its first ``islands`` (a portfolio needs an island each)."""
    name = DEFAULT_ALGORITHM[kind]
    if name in PORTFOLIOS and 0 < islands < len(PORTFOLIOS[name]):
        return [named_entry(n) for n in PORTFOLIOS[name][:islands]]
    return name


def _algorithm(algorithm: str | list[dict[str, Any]], pop: int | None) -> Any:
    """A spec's ``algorithm`` from a name, a named portfolio, or a portfolio's list of
    settings tables; ``pop`` given to each algorithm named."""
    if not isinstance(algorithm, str):
        return [{**entry, **_given(pop=pop)} for entry in algorithm]
    if algorithm in PORTFOLIOS:
        return expand_portfolio(algorithm, pop)
    return named_entry(algorithm, pop)


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


__all__ = ["SPEC_FLAGS", "format_errors", "load_toml", "parse_spec", "spec_from_flags"]
