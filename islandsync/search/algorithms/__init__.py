"""Island algorithms: the plug point (:class:`Algorithm`), the built-ins and their registry
(:data:`ALGORITHMS`), and :func:`make_algorithm`, which builds one from the run spec's
``algorithm`` and ``genome``.

Each built-in takes its settings model from :mod:`islandsync.config.algorithms` (``Config``
on the class) as it is: the model is the one declaration of every field and limit.
"""

from __future__ import annotations

from typing import Any

from islandsync.config import ALGORITHM_CONFIGS, RealGenome, TokenGenome
from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import (
    Algorithm,
    Evaluate,
    IslandState,
    check_algorithm,
    check_settings,
    initial_state,
)
from islandsync.search.algorithms.cmaes import CMAES
from islandsync.search.algorithms.de import DifferentialEvolution
from islandsync.search.algorithms.ga import GeneticAlgorithm
from islandsync.search.algorithms.pgpe import PGPE
from islandsync.search.algorithms.shade import SHADE
from islandsync.search.algorithms.snes import SNES

#: Every algorithm's implementation by name; the names are those of config.ALGORITHM_CONFIGS
#: (the one list of names; a test holds the two equal). Add one with :func:`register`.
ALGORITHMS: dict[str, type[Any]] = {
    cls.name: cls for cls in (GeneticAlgorithm, DifferentialEvolution, CMAES, SHADE, SNES,
                                  PGPE)}


def register(cls: type[Any]) -> type[Any]:
    """Register an algorithm's implementation (usable as a class decorator) under its
    ``name``, which must already name a settings model in
    :data:`islandsync.config.ALGORITHM_CONFIGS` (:func:`~islandsync.config.register_algorithm`),
    the model its ``Config`` attribute names.

    Raises:
        ConfigError: no settings registered under that name, another ``Config``, or a name
            already implemented.
    """
    name, model = getattr(cls, "name", None), getattr(cls, "Config", None)
    if name not in ALGORITHM_CONFIGS:
        raise ConfigError(f"algorithm {cls.__name__}: register its settings model first "
                          f"(islandsync.config.register_algorithm); name={name!r} has none")
    if model is not ALGORITHM_CONFIGS[name]:
        raise ConfigError(f"algorithm {name}: Config must be {ALGORITHM_CONFIGS[name].__name__}")
    if name in ALGORITHMS:
        raise ConfigError(f"algorithm {name!r} already has an implementation")
    ALGORITHMS[name] = cls
    return cls


def unregister(name: str) -> None:
    """Remove an implementation :func:`register` added (tests' throwaway algorithms)."""
    ALGORITHMS.pop(name, None)


def make_algorithm(spec_algorithm: Any, genome: RealGenome | TokenGenome,
                   dtype: str = "float32") -> Algorithm:
    """Build the algorithm a run spec names: ``ALGORITHMS[spec_algorithm.name]`` with the
    spec's settings model (an entry of ``spec.algorithms``), genome (``spec.problem.genome``)
    and genomes' dtype (``spec.dtype``). An object
    that already implements the protocol (has ``step``) is checked and returned as it is.

    Raises:
        ConfigError: unknown algorithm, settings that are not its model, or settings that do
            not fit the genome (de with tokens, sbx with tokens...); the message names the field.
    """
    if callable(getattr(spec_algorithm, "step", None)):
        check_algorithm(spec_algorithm)
        return spec_algorithm  # type: ignore[no-any-return]
    name = getattr(spec_algorithm, "name", None)
    if name not in ALGORITHMS:
        known = "registered settings but no implementation" if name in ALGORITHM_CONFIGS \
            else f"not one of {tuple(ALGORITHMS)}"
        raise ConfigError(f"algorithm.name={name!r}: {known}")
    return ALGORITHMS[name](spec_algorithm, genome, dtype)  # type: ignore[arg-type]


__all__ = [
    "ALGORITHMS",
    "CMAES",
    "PGPE",
    "SHADE",
    "SNES",
    "Algorithm",
    "DifferentialEvolution",
    "Evaluate",
    "GeneticAlgorithm",
    "IslandState",
    "check_algorithm",
    "check_settings",
    "initial_state",
    "make_algorithm",
    "register",
    "unregister",
]
