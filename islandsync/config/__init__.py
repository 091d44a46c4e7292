"""The run spec (``<run>/run.json``) and everything that reads or checks it, torch-free.

By concept: :mod:`.spec` (the models, canonical JSON, hash and diff), :mod:`.algorithms`
(each algorithm's settings), :mod:`.problems` (the built-in problems' table), :mod:`.fitness`
(a custom problem's fitness reference), :mod:`.objective` (which score is better) and :mod:`.loading` (JSON, TOML and command-line
flags). Everything public is importable from ``islandsync.config`` itself.
"""

from __future__ import annotations

from .algorithms import (
    ALGORITHM_CONFIGS,
    CROSSOVERS,
    DEFAULT_ALGORITHM,
    MUTATIONS,
    PORTFOLIOS,
    AlgorithmSpec,
    AlgorithmsSpec,
    CMAESConfig,
    DEConfig,
    GAConfig,
    PGPEConfig,
    SHADEConfig,
    SNESConfig,
    register_algorithm,
    unregister_algorithm,
)
from .fitness import FitnessRef, check_fitness, fitness_ref, load_fitness
from .loading import SPEC_FLAGS, load_toml, parse_spec, spec_from_flags
from .objective import DIRECTIONS, Direction, best_of, is_better, reaches, to_fitness, to_score
from .problems import BUILTIN_PROBLEMS, SYMREG_TOKENS, BuiltinProblem
from .spec import (
    CADENCES,
    DEFAULT_DTYPE,
    GenomeSpec,
    MigrationSpec,
    ProblemSpec,
    RealGenome,
    RunSpec,
    StopSpec,
    TokenGenome,
    cadence_line,
    genome_dtype,
    spec_diff,
    spec_hash,
    spec_json,
)

__all__ = [
    "ALGORITHM_CONFIGS", "BUILTIN_PROBLEMS", "CADENCES", "CROSSOVERS", "DEFAULT_DTYPE",
    "DIRECTIONS",
    "MUTATIONS", "PORTFOLIOS", "SPEC_FLAGS", "SYMREG_TOKENS", "AlgorithmSpec", "AlgorithmsSpec",
    "BuiltinProblem", "CMAESConfig", "DEConfig", "Direction", "FitnessRef", "GAConfig",
    "GenomeSpec", "MigrationSpec", "PGPEConfig", "ProblemSpec", "RealGenome", "RunSpec", "SHADEConfig",
    "SNESConfig", "StopSpec", "TokenGenome",
    "best_of", "cadence_line", "check_fitness", "fitness_ref", "genome_dtype", "is_better", "load_fitness",
    "load_toml", "parse_spec", "reaches", "register_algorithm", "spec_diff", "spec_from_flags",
    "spec_hash", "spec_json", "to_fitness", "to_score", "unregister_algorithm",
]
