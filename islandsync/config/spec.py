"""The run spec's models: ``<run>/run.json``, written once by ``islandsync init`` and never
changed, and its canonical bytes, hash and differences.

Every process of a run reads the same spec, so it is validated strictly: unknown fields are
errors (a typo such as ``dimm`` must not fall back to a default on one notebook), ints must be
ints (``"dim": "100"`` is refused, not coerced), floats accept ints but not strings or bools,
and NaN/infinity are refused so the canonical JSON is plain JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from ._base import STRICT, conflicts, tagged_union
from .algorithms import AlgorithmSpec
from .fitness import FitnessRef
from .problems import BUILTIN_PROBLEMS


class RealGenome(BaseModel):
    model_config = STRICT
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
            conflicts([("upper", f"must be greater than lower ({self.lower!r})")])
        return self


class TokenGenome(BaseModel):
    model_config = STRICT
    kind: Literal["tokens"]
    length: int = Field(ge=1)
    vocab: int = Field(ge=2)

    @property
    def width(self) -> int:
        """Genes (tokens) per genome."""
        return self.length


def _param_value(value: Any) -> Any:
    # One plain check instead of a union, whose error would repeat once per member type.
    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
    if isinstance(value, (bool, str)) or number(value):
        return value
    if isinstance(value, list) and all(number(x) for x in value):
        return [float(x) for x in value]
    raise ValueError("must be an int, finite float, string, bool or list of finite numbers")


#: A genome: real vectors in a box, or token sequences, chosen by ``kind``.
GenomeSpec = tagged_union({"real": RealGenome, "tokens": TokenGenome}, field="kind",
                          default="real", error_type="genome_kind")


class ProblemSpec(BaseModel):
    model_config = STRICT
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
            bad.append(("fitness", "a custom problem needs its fitness function: "
                                   "fitness = \"path/to/file.py:function\" (TOML) or "
                                   "--fitness path/to/file.py:function"))
        if meta is not None and self.fitness is not None:
            bad.append(("fitness", f"built-in problem {name} takes no fitness reference"))
        if meta is not None and genome.kind != meta.kind:
            bad.append(("genome.kind", f"problem {name} needs a {meta.kind!r} genome, "
                                       f"not {genome.kind!r}"))
        elif meta is not None and isinstance(genome, TokenGenome) and genome.vocab != meta.vocab:
            bad.append(("genome.vocab", f"problem {name} has exactly {meta.vocab} tokens, "
                                        f"not {genome.vocab}"))
        conflicts(bad)
        return self


class MigrationSpec(BaseModel):
    model_config = STRICT
    interval: int = Field(20, ge=1)  # generations
    migrants: int = Field(2, ge=0)  # per island and migration; < pop checked by RunSpec
    topology: Literal["pool", "ring"] = "pool"


class StopSpec(BaseModel):
    model_config = STRICT
    max_evals: int | None = Field(None, gt=0)
    target: float | None = None  # any sign: a maximised fitness may well be negative
    duration_s: float | None = Field(None, gt=0.0)


class RunSpec(BaseModel):
    model_config = STRICT
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
        bad += [(f"algorithm.{f}", m) for f, m in alg.genome_conflicts(kind)]
        if (migrants := self.migration.migrants) >= alg.pop:
            bad.append(("migration.migrants",
                        f"must be less than algorithm.pop ({alg.pop}), got {migrants}"))
        if self.worker_timeout_s <= self.heartbeat_interval_s:
            # Otherwise every live worker would be declared dead between two heartbeats.
            bad.append(("worker_timeout_s", f"must exceed heartbeat_interval_s "
                                            f"({self.heartbeat_interval_s!r})"))
        conflicts(bad)
        return self


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


__all__ = [
    "GenomeSpec", "MigrationSpec", "ProblemSpec", "RealGenome", "RunSpec", "StopSpec",
    "TokenGenome", "spec_diff", "spec_hash", "spec_json",
]
