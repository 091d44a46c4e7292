"""The run spec: ``<run>/run.json``, written once by ``islandsync init`` and never changed.

Every process of a run reads the same spec, so it is validated strictly: unknown fields are
errors (a typo such as ``dimm`` must not fall back to a default on one notebook), ints must be
ints (``"dim": "100"`` is refused, not coerced), floats accept ints but not strings or bools,
and NaN/infinity are refused so the canonical JSON is plain JSON. Errors are one ConfigError
whose lines read ``<source>: <dotted.field.path>: <message>``. Nothing here imports code named
in a bucket: a custom fitness function comes from a worker's own caller and is only *compared*
with the name and fingerprint recorded in run.json.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import os
import re
import sys
import textwrap
import types
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from islandsync.errors import ConfigError

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    try:
        import tomli as _toml  # type: ignore[no-redef]
    except ModuleNotFoundError:
        _toml = None  # type: ignore[assignment]


# Torch-free metadata of the built-in problems; problems.py implements them with these numbers.
BUILTIN_PROBLEMS: dict[str, dict[str, Any]] = {
    "sphere": {"kind": "real", "lower": -5.12, "upper": 5.12},
    "rastrigin": {"kind": "real", "lower": -5.12, "upper": 5.12},
    "rosenbrock": {"kind": "real", "lower": -5.0, "upper": 10.0},
    "ackley": {"kind": "real", "lower": -32.768, "upper": 32.768},
    "griewank": {"kind": "real", "lower": -600.0, "upper": 600.0},
    "schwefel": {"kind": "real", "lower": -500.0, "upper": 500.0},
    "symbolic_regression": {"kind": "tokens", "length": 24, "vocab": 13},
}

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)
# module:qualname; <locals>/<lambda> may be recorded, but load_fitness cannot import them.
_FITNESS_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_<][\w<>]*(\.[\w<>]+)*$")


def _conflicts(problems: list[tuple[str, str]]) -> None:
    # A model validator cannot choose its error's loc, so each (relative path, message) rides
    # in ctx and _format_errors prefixes the validator's loc; the text still reads well when a
    # model is built directly in Python.
    if problems:
        text = "; ".join(f"{p}: {m}" for p, m in problems).replace("{", "(").replace("}", ")")
        raise PydanticCustomError("spec_conflict", text, {"problems": problems})


class RealGenome(BaseModel):
    model_config = _STRICT
    kind: Literal["real"] = "real"
    dim: int = Field(ge=1)
    lower: float
    upper: float

    @property
    def width(self) -> int:
        """Genes per genome."""
        return self.dim

    @model_validator(mode="after")
    def _bounds(self) -> RealGenome:
        if not self.lower < self.upper:
            _conflicts([("upper", f"must be greater than lower ({self.lower!r})")])
        return self


class TokenGenome(BaseModel):
    model_config = _STRICT
    kind: Literal["tokens"]
    length: int = Field(ge=1)
    vocab: int = Field(ge=2)

    @property
    def width(self) -> int:
        """Genes (tokens) per genome."""
        return self.length


class FitnessRef(BaseModel):
    """Which user function a custom problem's workers must be given, and a digest of its source."""

    model_config = _STRICT
    name: str
    fingerprint: str

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _FITNESS_NAME.match(name):
            raise ValueError("must be module:qualname, e.g. mypkg.fit:score")
        return name

    @field_validator("fingerprint")
    @classmethod
    def _hex(cls, fingerprint: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
            raise ValueError("must be a sha256 digest: 64 lowercase hex digits")
        return fingerprint


def _tag(field: str, default: str) -> Callable[[Any], str | None]:
    # A missing tag means the model's default (RealGenome's kind, GAConfig's name), as the
    # models declare; a non-string tag is left to the custom "Input should be ..." error.
    def pick(value: Any) -> str | None:
        tag = value.get(field, default) if isinstance(value, dict) else getattr(value, field, None)
        return tag if isinstance(tag, str) else None
    return pick


def _param_value(value: Any) -> Any:
    # One plain check instead of a union, whose error would repeat once per member type.
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    if isinstance(value, (bool, str)) or number(value):
        return value
    if isinstance(value, list) and all(number(x) for x in value):
        return [float(x) for x in value]
    raise ValueError("must be an int, finite float, string, bool or list of finite numbers")


GenomeSpec = Annotated[
    Union[Annotated[RealGenome, Tag("real")], Annotated[TokenGenome, Tag("tokens")]],
    Discriminator(_tag("kind", "real"), custom_error_type="genome_kind",
                  custom_error_message="Input should be 'real' or 'tokens'",
                  custom_error_context={"subpath": "kind"}),
]


class ProblemSpec(BaseModel):
    model_config = _STRICT
    name: str
    params: dict[str, Annotated[Any, AfterValidator(_param_value)]] = Field(default_factory=dict)
    direction: Literal["minimize", "maximize"] = "minimize"
    genome: GenomeSpec
    fitness: FitnessRef | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if name != "custom" and name not in BUILTIN_PROBLEMS:
            raise ValueError(f"unknown problem {name!r}; expected one of "
                             f"{', '.join(BUILTIN_PROBLEMS)} or custom")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> ProblemSpec:
        bad: list[tuple[str, str]] = []
        name, genome, meta = self.name, self.genome, BUILTIN_PROBLEMS.get(self.name)
        if meta is None and self.fitness is None:
            bad.append(("fitness", "a custom problem needs a fitness reference"))
        if meta is not None and self.fitness is not None:
            bad.append(("fitness", f"built-in problem {name} takes no fitness reference"))
        if meta is not None and genome.kind != meta["kind"]:
            bad.append(("genome.kind", f"problem {name} needs a {meta['kind']!r} genome, "
                                       f"not {genome.kind!r}"))
        elif meta is not None and isinstance(genome, TokenGenome) and genome.vocab != meta["vocab"]:
            bad.append(("genome.vocab", f"problem {name} has exactly {meta['vocab']} tokens, "
                                        f"not {genome.vocab}"))
        _conflicts(bad)
        return self


class GAConfig(BaseModel):
    model_config = _STRICT
    name: Literal["ga"] = "ga"
    pop: int = Field(64, ge=4)
    elite: int = Field(2, ge=0)
    tournament: int = Field(3, ge=2)
    crossover: Literal["sbx", "uniform", "one_point"] | None = None  # None: per genome kind
    crossover_rate: float = Field(0.9, ge=0.0, le=1.0)
    sbx_eta: float = Field(15.0, ge=0.0)
    mutation: Literal["gaussian", "polynomial", "resample"] | None = None  # None: per genome kind
    mutation_rate: float | None = Field(None, gt=0.0, le=1.0)  # None: the algorithm's default
    mutation_sigma: float = Field(0.1, gt=0.0)
    poly_eta: float = Field(20.0, ge=0.0)

    @model_validator(mode="after")
    def _sizes(self) -> GAConfig:
        bad = []
        if self.elite >= self.pop:
            bad.append(("elite", f"must be less than pop ({self.pop}), got {self.elite}"))
        if self.tournament > self.pop:
            bad.append(("tournament", f"must be at most pop ({self.pop}), got {self.tournament}"))
        _conflicts(bad)
        return self


class DEConfig(BaseModel):
    """Self-adaptive DE (jDE): each individual carries F and CR, resampled with prob tau."""

    model_config = _STRICT
    name: Literal["de"] = "de"
    pop: int = Field(64, ge=4)  # rand/1 needs three others besides the target
    f_init: float = Field(0.5, gt=0.0)
    cr_init: float = Field(0.9, ge=0.0, le=1.0)
    tau_f: float = Field(0.1, ge=0.0, le=1.0)
    tau_cr: float = Field(0.1, ge=0.0, le=1.0)
    f_lower: float = Field(0.1, gt=0.0)
    f_upper: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _range(self) -> DEConfig:
        if not self.f_lower < self.f_upper:
            _conflicts([("f_upper", f"must be greater than f_lower ({self.f_lower!r})")])
        return self


AlgorithmSpec = Annotated[
    Union[Annotated[GAConfig, Tag("ga")], Annotated[DEConfig, Tag("de")]],
    Discriminator(_tag("name", "ga"), custom_error_type="algorithm_name",
                  custom_error_message="Input should be 'ga' or 'de'",
                  custom_error_context={"subpath": "name"}),
]


class MigrationSpec(BaseModel):
    model_config = _STRICT
    interval: int = Field(20, ge=1)  # generations
    migrants: int = Field(2, ge=0)  # per island and migration; < pop checked by RunSpec
    topology: Literal["pool", "ring"] = "pool"


class StopSpec(BaseModel):
    model_config = _STRICT
    max_evals: int | None = Field(None, gt=0)
    target: float | None = None  # any sign: a maximised fitness may well be negative
    duration_s: float | None = Field(None, gt=0.0)


class RunSpec(BaseModel):
    model_config = _STRICT
    version: Literal[1] = 1
    problem: ProblemSpec
    algorithm: AlgorithmSpec
    islands: int = Field(ge=1)
    migration: MigrationSpec = Field(default_factory=MigrationSpec)
    elite_size: int = Field(64, ge=1)
    checkpoint_interval_s: float = Field(30.0, gt=0.0)
    heartbeat_interval_s: float = Field(5.0, gt=0.0)
    assignment_poll_s: float = Field(2.0, gt=0.0)
    worker_timeout_s: float = Field(12.0, gt=0.0)
    seed: int = Field(0, ge=0, lt=2**64)  # numpy/torch seeds are unsigned 64-bit
    stop: StopSpec = Field(default_factory=StopSpec)

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        bad: list[tuple[str, str]] = []
        kind, alg = self.problem.genome.kind, self.algorithm
        if isinstance(alg, DEConfig) and kind == "tokens":
            bad.append(("algorithm.name", "de works on real genomes only; use ga for tokens"))
        if isinstance(alg, GAConfig):
            wrong = {"real": {"one_point", "resample"}, "tokens": {"sbx", "gaussian", "polynomial"}}
            for field in ("crossover", "mutation"):
                op = getattr(alg, field)
                if op in wrong[kind]:
                    bad.append((f"algorithm.{field}", f"{op} does not apply to a {kind} genome"))
        if (migrants := self.migration.migrants) >= alg.pop:
            bad.append(("migration.migrants",
                        f"must be less than algorithm.pop ({alg.pop}), got {migrants}"))
        if self.worker_timeout_s <= self.heartbeat_interval_s:
            # Otherwise every live worker would be declared dead between two heartbeats.
            bad.append(("worker_timeout_s", f"must exceed heartbeat_interval_s "
                                            f"({self.heartbeat_interval_s!r})"))
        _conflicts(bad)
        return self


# Discriminated unions put the tag into an error's loc (algorithm.ga.pop); users never write
# it, so it is dropped where one of these unions sits.
_UNION_TAGS = {("algorithm",): {"ga", "de"}, ("problem", "genome"): {"real", "tokens"}}


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors(include_url=False):
        path: list[str] = []
        for part in e["loc"]:
            if str(part) in _UNION_TAGS.get(tuple(path), ()):
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
        raise ConfigError(_format_errors(err, source)) from err


def load_toml(path: str | os.PathLike[str]) -> RunSpec:
    """Read a run spec from a TOML file; errors name the file."""
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
    return parse_spec(data, source=source)


def spec_from_flags(
        *, problem: str, dim: int | None = None, length: int | None = None,
        vocab: int | None = None, lower: float | None = None, upper: float | None = None,
        direction: str = "minimize", islands: int = 8, pop: int | None = None,
        algorithm: str = "ga", max_evals: int | None = None, target: float | None = None,
        duration_s: float | None = None, migration_interval: int | None = None,
        migrants: int | None = None, topology: str | None = None, elite_size: int | None = None,
        checkpoint_interval_s: float | None = None, heartbeat_interval_s: float | None = None,
        seed: int | None = None, params: dict[str, Any] | None = None,
        fitness: FitnessRef | None = None) -> RunSpec:
    """The spec ``islandsync init RUN --problem ... --dim ...`` builds. ``None`` means the
    model's default; bounds, length and vocab default from :data:`BUILTIN_PROBLEMS`. A custom
    problem's genome kind follows from the flags given (``--dim`` real, ``--length`` tokens)."""
    source = "command line"
    if problem != "custom" and problem not in BUILTIN_PROBLEMS:
        raise ConfigError(f"{source}: --problem: unknown problem {problem!r}; expected one of "
                          f"{', '.join(BUILTIN_PROBLEMS)} or custom")
    fields = {"real": {"dim": dim, "lower": lower, "upper": upper},
              "tokens": {"length": length, "vocab": vocab}}
    given = {k: [n for n, v in f.items() if v is not None] for k, f in fields.items()}
    meta = BUILTIN_PROBLEMS.get(problem, {})
    kind = meta.get("kind") or ("tokens" if given["tokens"] and not given["real"] else "real")
    # A flag that the genome does not use is refused rather than silently ignored.
    if stray := given["tokens" if kind == "real" else "real"]:
        raise ConfigError(f"{source}: {', '.join('--' + n for n in stray)} does not apply to "
                          f"problem {problem} ({kind} genome)")
    genome: dict[str, Any] = {"kind": kind}
    for name, value in fields[kind].items():
        value = meta.get(name) if value is None else value
        if value is None:
            hint = " (or --length and --vocab for a token genome)" if not meta else ""
            raise ConfigError(f"{source}: --{name} is required for problem {problem}{hint}")
        genome[name] = value
    spec: dict[str, Any] = {
        "problem": {"name": problem, "params": dict(params or {}), "direction": direction,
                    "genome": genome, **_given(fitness=fitness.model_dump() if fitness else None)},
        "algorithm": {"name": algorithm, **_given(pop=pop)}, "islands": islands,
        "migration": _given(interval=migration_interval, migrants=migrants, topology=topology),
        "stop": _given(max_evals=max_evals, target=target, duration_s=duration_s),
        **_given(elite_size=elite_size, checkpoint_interval_s=checkpoint_interval_s,
                 heartbeat_interval_s=heartbeat_interval_s, seed=seed),
    }
    return parse_spec(spec, source=source)


def _given(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def spec_json(spec: RunSpec) -> bytes:
    """Canonical bytes of a spec: sorted keys, no whitespace, ASCII, every field written
    (defaults included, so a later change of a default cannot change a stored run's meaning).
    Floats are written by ``repr``, the shortest text that parses back to the same double."""
    return json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True, allow_nan=False).encode("ascii")


def spec_hash(spec: RunSpec) -> str:
    """sha256 hex of :func:`spec_json`."""
    return hashlib.sha256(spec_json(spec)).hexdigest()


_ABSENT = object()


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    if isinstance(value, dict):  # an empty dict (no params) has no leaves
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else key, out)
    else:
        out[prefix] = value
    return out


def spec_diff(a: RunSpec, b: RunSpec) -> list[str]:
    """``path: old -> new`` for every leaf that differs, sorted by path; a field only one side
    has (switching ga -> de) shows ``(absent)`` on the other. Values are written as JSON."""
    flat_a = _flatten(a.model_dump(mode="json"), "", {})
    flat_b = _flatten(b.model_dump(mode="json"), "", {})

    def show(v: Any) -> str:
        return "(absent)" if v is _ABSENT else json.dumps(v, sort_keys=True)

    lines = []
    for path in sorted(flat_a.keys() | flat_b.keys()):
        old, new = flat_a.get(path, _ABSENT), flat_b.get(path, _ABSENT)
        if old is _ABSENT or new is _ABSENT or json.dumps(old) != json.dumps(new):
            lines.append(f"{path}: {show(old)} -> {show(new)}")
    return lines


def _code_digest(code: types.CodeType) -> bytes:
    # Nested code objects (lambdas, comprehensions) repr with a memory address, so they are
    # digested recursively instead. co_names is included because `np.sin` -> `np.cos` changes
    # only the names table, not the bytecode.
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update(_code_digest(const) if isinstance(const, types.CodeType)
                 else repr(const).encode("utf-8", "backslashreplace"))
    h.update(repr(code.co_names).encode())
    return h.digest()


def fitness_ref(fn: Callable[..., Any]) -> FitnessRef:
    """Name (``module:qualname``) and fingerprint of a user's fitness function.

    The fingerprint is sha256 over the name and, by preference, the function's source
    (dedented, ``\\n`` line endings), so it is the same on every machine and Python version.
    Without source (defined in a REPL, or only .pyc shipped) it falls back to the bytecode,
    constants and names, which is stable only across one Python minor version; with neither,
    the name alone."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(f"fitness must be a function or class with a module and a name, "
                          f"got {fn!r}")
    name = f"{module}:{qualname}"
    h = hashlib.sha256(b"name\0" + name.encode())
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        h.update(b"\0source\0" + source.replace("\r\n", "\n").replace("\r", "\n").encode())
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            h.update(b"\0code\0" + _code_digest(code))
    return FitnessRef(name=name, fingerprint=h.hexdigest())


def check_fitness(spec: RunSpec, fn: Callable[..., Any] | None) -> None:
    """Refuse a fitness function that is not the one the run recorded (or one a built-in run
    does not take). Fingerprints in messages read ``recorded… vs given…``."""
    problem = spec.problem
    if problem.name != "custom":
        if fn is not None:
            raise ConfigError(f"run uses built-in problem {problem.name}; "
                              f"do not pass a fitness function")
        return
    recorded = problem.fitness
    assert recorded is not None  # ProblemSpec guarantees it for custom problems
    if fn is None:
        raise ConfigError(f"run uses custom fitness function {recorded.name}; pass it as "
                          f"`fitness=` (Python) or `--fitness {recorded.name}` (command line)")
    given = fitness_ref(fn)
    if given.name != recorded.name:
        raise ConfigError(f"fitness function differs from the run's: run recorded "
                          f"{recorded.name}, given {given.name}")
    if given.fingerprint != recorded.fingerprint:
        raise ConfigError(f"fitness function {given.name}: source differs from the run's "
                          f"(fingerprint {recorded.fingerprint[:12]}… vs "
                          f"{given.fingerprint[:12]}…)")


def load_fitness(ref: str) -> Callable[..., Any]:
    """Import ``module:qualname`` for a worker's OWN ``--fitness`` argument.

    Only ever call this with what a user typed on their command line or passed in code, never
    with a name read from a bucket: importing runs the module's code. Like ``uvicorn``, the
    current directory is tried when the module is not found on ``sys.path`` (console scripts
    do not put it there)."""
    if not isinstance(ref, str) or not _FITNESS_NAME.match(ref) or "<" in ref:
        raise ConfigError(f"--fitness {ref!r}: expected module:function, e.g. mypkg.fit:score")
    module_name, qualname = ref.split(":", 1)
    try:
        if importlib.util.find_spec(module_name.split(".")[0]) is None \
                and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"--fitness {ref}: cannot import {module_name}: {err}") from err
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"--fitness {ref}: importing {module_name} raised "
                          f"{type(err).__name__}: {err}") from err
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError(f"--fitness {ref}: {module_name} has no attribute {qualname}"
                              ) from err
    if not callable(obj):
        raise ConfigError(f"--fitness {ref}: {qualname} is a {type(obj).__name__}, not callable")
    return obj


__all__ = [
    "BUILTIN_PROBLEMS", "DEConfig", "FitnessRef", "GAConfig",
    "MigrationSpec", "ProblemSpec", "RealGenome", "RunSpec", "StopSpec", "TokenGenome",
    "check_fitness", "fitness_ref", "load_fitness", "load_toml", "parse_spec",
    "spec_diff", "spec_from_flags", "spec_hash", "spec_json",
]
