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

from ._base import AS_TUPLE, STRICT, conflicts, tagged_union
from .algorithms import _DEPENDENTS, AlgorithmsSpec, expand_portfolio
from .fitness import FitnessRef
from .objective import Direction, reaches
from .problems import BUILTIN_PROBLEMS, declared_params


class RealGenome(BaseModel):
    """Real vectors in a box. ``lower``/``upper``: one bound for every gene, or one per gene
    (a list of ``dim``). ``integer``: the genes that take integer values only, as indices
    and half-open ranges ``"a:b"`` (genes a to b - 1); each algorithm's bound handling ends
    with rounding them (docs/design.md, "Bounds and integer genes")."""

    model_config = STRICT
    kind: Literal["real"] = "real"
    dim: int = Field(ge=1)
    lower: Annotated[float | tuple[float, ...], AS_TUPLE]
    upper: Annotated[float | tuple[float, ...], AS_TUPLE]
    integer: Annotated[tuple[int | str, ...], AS_TUPLE] = ()

    @property
    def width(self) -> int:
        """Genes per genome."""
        return self.dim

    def bounds(self) -> tuple[list[float], list[float]]:
        """Per-gene lower and upper bounds (``dim`` each)."""
        def each(b: float | tuple[float, ...]) -> list[float]:
            return [float(b)] * self.dim if isinstance(b, (int, float)) else list(b)
        return each(self.lower), each(self.upper)

    def integer_genes(self) -> list[int]:
        """The integer genes' indices, sorted, each once."""
        out: set[int] = set()
        for item in self.integer:
            if isinstance(item, int):
                out.add(item)
            else:
                a, b = (int(x) for x in item.split(":"))
                out.update(range(a, b))
        return sorted(out)

    @model_validator(mode="after")
    def _bounds(self) -> RealGenome:
        bad: list[tuple[str, str]] = []
        for name in ("lower", "upper"):
            if isinstance(b := getattr(self, name), tuple) and len(b) != self.dim:
                bad.append((name, f"has {len(b)} bounds; a list needs one per gene "
                                  f"(dim = {self.dim}), or give one number for all"))
        for item in self.integer:
            a, b = (item, item + 1) if isinstance(item, int) else _range(item)
            if not 0 <= a < b <= self.dim:
                bad.append(("integer", f"{item!r} is not a gene index or a range 'a:b' of "
                                       f"genes within 0..{self.dim - 1}"))
        conflicts(bad)
        lo, hi = self.bounds()
        if wrong := [j for j in range(self.dim) if not lo[j] < hi[j]]:
            bad.append(("upper", f"must be greater than lower (gene {wrong[0]}: "
                                 f"{lo[wrong[0]]!r} vs {hi[wrong[0]]!r})"
                        if isinstance(self.lower, tuple) or isinstance(self.upper, tuple)
                        else f"must be greater than lower ({self.lower!r})"))
        elif empty := [j for j in self.integer_genes() if math.floor(hi[j]) < math.ceil(lo[j])]:
            bad.append(("integer", f"gene {empty[0]} holds no integer within its bounds "
                                   f"[{lo[empty[0]]!r}, {hi[empty[0]]!r}]"))
        conflicts(bad)
        return self


def _range(text: str) -> tuple[int, int]:
    parts = text.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return 0, -1  # refused by the caller


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
    direction: Direction = "minimize"
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
        # Every problem's params, built-in or custom, are checked here, before run.json is
        # written: a bad one would be stored for good and refused by every worker's
        # make_problem (the same declaration, config.problems).
        try:
            params = declared_params(name).resolve(self.params)
        except ValueError as e:
            bad.append(("params", str(e)))
        else:
            dim = meta.dim_of(params) if meta is not None and meta.dim_of else None
            if dim is not None and isinstance(genome, RealGenome) and genome.dim != dim:
                given = ", ".join(f"{k} = {v!r}" for k, v in params.items())
                bad.append(("genome.dim", f"problem {name} ({given}) has {dim} genes, "
                                          f"not {genome.dim}"))
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

    def reason(self, direction: str, evaluations: int,
               best: float | None) -> Literal["max_evals", "target"] | None:
        """``"max_evals"`` or ``"target"`` when that criterion is met by the run's
        ``evaluations`` and ``best`` (raw fitness in ``direction``), else None. The one rule
        both roles judge a stop by (``duration_s`` is judged by each worker from run.json's
        creation time, on the bucket's clock)."""
        if self.max_evals is not None and evaluations >= self.max_evals:
            return "max_evals"
        if self.target is not None and best is not None and \
                reaches(direction, best, self.target):
            return "target"
        return None


#: Cadence presets: every timing setting of a run, by name (``islandsync init --cadence``).
#: ``default`` is what each field defaults to. ``free-tier`` keeps 4 workers of 2 islands and
#: their leader within Cloudflare R2's free tier around the clock (each worker at most 240
#: class A and 2,000 class B operations an hour, the leader 400 and 3,000) and still recovers a
#: dead worker's islands in under a minute and a dead leader in under 90 s: longer heartbeats
#: and checkpoints, and a leader that checks liveness every cycle but lists ``workers/`` and
#: merges only now and then (docs/design.md "Cadence"; benchmarks/cost.py measures both).
CADENCES: dict[str, dict[str, float]] = {
    "default": {"checkpoint_interval_s": 30.0, "heartbeat_interval_s": 5.0,
                "assignment_poll_s": 2.0, "worker_timeout_s": 12.0, "lease_s": 15.0,
                "leader_cycle_s": 5.0, "merge_interval_s": 0.0, "worker_listing_s": 30.0},
    "free-tier": {"checkpoint_interval_s": 300.0, "heartbeat_interval_s": 25.0,
                  "assignment_poll_s": 10.0, "worker_timeout_s": 40.0, "lease_s": 60.0,
                  "leader_cycle_s": 10.0, "merge_interval_s": 150.0,
                  "worker_listing_s": 300.0},
}
_DEFAULT = CADENCES["default"]


class RunSpec(BaseModel):
    model_config = STRICT
    version: Literal[1] = 1
    problem: ProblemSpec
    algorithm: AlgorithmsSpec  # one, or a portfolio given round-robin (algorithms_of)
    islands: int = Field(ge=1)
    migration: MigrationSpec = Field(default_factory=MigrationSpec)
    elite_size: int = Field(64, ge=1)
    #: The preset the timing settings below started from; they are recorded resolved, so a
    #: later islandsync whose preset differs cannot change a stored run's meaning.
    cadence: Literal["default", "free-tier"] = "default"
    checkpoint_interval_s: float = Field(_DEFAULT["checkpoint_interval_s"], gt=0.0)
    heartbeat_interval_s: float = Field(_DEFAULT["heartbeat_interval_s"], gt=0.0)
    assignment_poll_s: float = Field(_DEFAULT["assignment_poll_s"], gt=0.0)
    worker_timeout_s: float = Field(_DEFAULT["worker_timeout_s"], gt=0.0)
    #: The leader's lease and cycle (``islandsync coordinate --lease/--interval`` override).
    lease_s: float = Field(_DEFAULT["lease_s"], gt=0.0, le=600.0)
    leader_cycle_s: float = Field(_DEFAULT["leader_cycle_s"], gt=0.0)
    #: The leader reads the islands' HEADs and merges a new elite at most this often (0:
    #: every cycle); liveness and placement still run every cycle.
    merge_interval_s: float = Field(_DEFAULT["merge_interval_s"], ge=0.0)
    #: The leader lists ``workers/`` (class A) to find new workers at most this often (0:
    #: every cycle), and at once while islands wait for a worker; known workers' heartbeats
    #: are read by GET (class B) every cycle.
    worker_listing_s: float = Field(_DEFAULT["worker_listing_s"], ge=0.0)
    seed: int = Field(0, ge=0, lt=2**64)  # numpy/torch seeds are unsigned 64-bit
    stop: StopSpec = Field(default_factory=StopSpec)
    # Genomes' and scores' dtype (real genomes): float64 reaches precisions float32 cannot;
    # "auto" (what a new real-genome run gets, DEFAULT_DTYPE) is each worker's own choice,
    # genome_dtype. The model's default stays float32: a run stored before "auto" existed
    # reads with the meaning it had.
    dtype: Literal["auto", "float32", "float64"] = "float32"

    @field_validator("algorithm", mode="before")
    @classmethod
    def _named_portfolio(cls, value: Any) -> Any:
        return expand_portfolio(value)

    @property
    def algorithms(self) -> tuple[Any, ...]:
        """The run's algorithms' settings: one, or a portfolio's entries in order."""
        alg = self.algorithm
        return alg if isinstance(alg, tuple) else (alg,)

    def algorithm_of(self, island: int) -> Any:
        """The settings island ``island`` runs: a portfolio's entry ``island mod n``."""
        algs = self.algorithms
        return algs[island % len(algs)]

    @property
    def max_pop(self) -> int:
        """The largest population of any island of the run."""
        return max(a.pop for a in self.algorithms)

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: Any) -> Any:
        """A named cadence fills the timing settings not given explicitly (explicit wins)."""
        if isinstance(data, dict) and isinstance(name := data.get("cadence"), str) \
                and name in CADENCES:
            return {**CADENCES[name], **data}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        bad: list[tuple[str, str]] = []
        kind, algs = self.problem.genome.kind, self.algorithms
        many = isinstance(self.algorithm, tuple)
        for j, alg in enumerate(algs):
            at = f"algorithm.{j}" if many else "algorithm"
            bad += [(f"{at}.{f}", m) for f, m in alg.genome_conflicts(kind)]
            if (migrants := self.migration.migrants) >= alg.pop:
                bad.append(("migration.migrants",
                            f"must be less than {at}.pop ({alg.pop}), got {migrants}"))
        if many and not 1 <= len(algs) <= self.islands:
            bad.append(("algorithm", f"a portfolio needs 1 to islands ({self.islands}) "
                                     f"entries, got {len(algs)}"))
        if self.dtype != "float32" and kind != "real":
            bad.append(("dtype", f"{self.dtype} applies to real genomes only (tokens are "
                                 f"integers, scored in float32)"))
        if self.worker_timeout_s <= self.heartbeat_interval_s:
            # Otherwise every live worker would be declared dead between two heartbeats.
            bad.append(("worker_timeout_s", f"must exceed heartbeat_interval_s "
                                            f"({self.heartbeat_interval_s!r})"))
        conflicts(bad)
        return self


#: The ``dtype`` a new run gets when none is given (``init``, the notebooks, ``islandsync.run``),
#: by genome kind.
DEFAULT_DTYPE: dict[str, str] = {"real": "auto", "tokens": "float32"}


def genome_dtype(dtype: str, device_type: str) -> str:
    """The genomes' and scores' dtype a worker uses on a device of ``device_type`` ("cpu",
    "cuda", "mps", ...) for a run of ``dtype``. "auto": float64 on a CPU, where it costs
    little and reaches BBOB's 1e-8 (float32's grid stops ill-conditioned functions near
    3e-8); float32 on an accelerator, where float64 is slow (a T4 runs it at 1/32 of the
    rate) or missing (MPS). One run may so hold islands of both: a checkpoint records its
    dtype and a worker of the other casts it on resume (docs/design.md, "Genome dtype")."""
    if dtype != "auto":
        return dtype
    return "float64" if device_type == "cpu" else "float32"


#: Fields added after runs were stored, written only when not at these values: a run.json
#: stored before they existed keeps its exact bytes and hash, and reads with the meaning it
#: had. These values never change (a later default must be a new field).
_ADDED_LATER: dict[tuple[str, ...], Any] = {
    ("dtype",): "float32", ("problem", "genome", "integer"): [], ("cadence",): "default",
    **{(k,): _DEFAULT[k] for k in ("lease_s", "leader_cycle_s", "merge_interval_s",
                                   "worker_listing_s")}}
#: The same for fields added to an algorithm's settings table (each table of a portfolio).
_ALGORITHM_ADDED_LATER: dict[str, dict[str, Any]] = {
    "cmaes": {"active": False, "step_evals": 1, "restart_mode": "ipop", "lazy_eigen": False},
    "snes": {"repaired_z": "clipped"}}


def cadence_line(spec: RunSpec) -> str:
    """The run's cadence as ``status`` and the report show it: its preset and every value."""
    values = ", ".join(f"{k.removesuffix('_s')} {getattr(spec, k):g}s"
                       for k in CADENCES["default"])
    return f"{spec.cadence} ({values})"


def spec_json(spec: RunSpec) -> bytes:
    """Canonical bytes of a spec: sorted keys, no whitespace, ASCII, every field written
    (defaults included, so a later change of a default cannot change a stored run's meaning;
    except fields added later, at the value that keeps an older run's meaning, see
    ``_ADDED_LATER``). Floats are written by ``repr``, the shortest text that parses back to
    the same double."""
    data = spec.model_dump(mode="json")
    for path, value in _ADDED_LATER.items():
        *parents, leaf = path
        node = data
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and leaf in node and node[leaf] == value:
            del node[leaf]
    tables = data["algorithm"] if isinstance(data["algorithm"], list) else [data["algorithm"]]
    for table in tables:
        for leaf, value in _ALGORITHM_ADDED_LATER.get(table.get("name"), {}).items():
            if leaf in table and table[leaf] == value:
                del table[leaf]
    return json.dumps(data, sort_keys=True, separators=(",", ":"),
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



_DEPENDENTS.append(RunSpec)  # its algorithm field follows the registry


__all__ = [
    "CADENCES", "DEFAULT_DTYPE", "GenomeSpec", "MigrationSpec", "ProblemSpec", "RealGenome", "RunSpec",
    "StopSpec", "TokenGenome", "cadence_line", "genome_dtype", "spec_diff", "spec_hash", "spec_json",
]
