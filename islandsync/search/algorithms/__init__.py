"""Island algorithms: the plug point (:class:`Algorithm`), the built-ins (``ga``, ``de``) and
:func:`make_algorithm`, which builds one from the run spec's ``algorithm`` and ``genome``."""

from __future__ import annotations

from typing import Any

from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import (
    Algorithm,
    Evaluate,
    IslandState,
    check_algorithm,
    initial_state,
)
from islandsync.search.algorithms.de import DifferentialEvolution
from islandsync.search.algorithms.ga import GeneticAlgorithm

ALGORITHMS = ("ga", "de")

_GA_FIELDS = ("elite", "tournament", "crossover", "crossover_rate", "sbx_eta", "mutation",
              "mutation_rate", "mutation_sigma", "poly_eta")
_DE_FIELDS = ("f_init", "cr_init", "tau_f", "tau_cr", "f_lower", "f_upper")


def _given(spec: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    # Attributes the spec leaves unset or None take the constructor's default.
    out = {f: getattr(spec, f, None) for f in fields}
    return {f: v for f, v in out.items() if v is not None}


def make_algorithm(spec_algorithm: Any, genome: Any) -> Algorithm:
    """Build the algorithm a run spec names.

    ``spec_algorithm`` is read by attribute: ``name`` (``"ga"`` | ``"de"``), ``pop``, and the
    fields of :class:`GeneticAlgorithm` or :class:`DifferentialEvolution`; a missing or None
    field takes the constructor's default (``mutation_rate`` None means 1/D). ``genome`` has
    ``kind="real", dim, lower, upper`` or ``kind="tokens", length, vocab``. An object that
    already implements the protocol (has ``step``) is checked and returned as it is.

    Raises:
        ConfigError: unknown algorithm, an invalid field, or an invalid combination (de with
            token genomes, sbx or polynomial with tokens, tournament > pop, elite >= pop);
            the message names the field.
    """
    if callable(getattr(spec_algorithm, "step", None)):
        check_algorithm(spec_algorithm)
        return spec_algorithm  # type: ignore[no-any-return]
    name = getattr(spec_algorithm, "name", None)
    if name not in ALGORITHMS:
        raise ConfigError(f"algorithm.name={name!r} is not one of {ALGORITHMS}")
    kind = getattr(genome, "kind", None)
    if kind not in ("real", "tokens"):
        raise ConfigError(f"genome.kind={kind!r} must be 'real' or 'tokens'")
    pop = getattr(spec_algorithm, "pop", None)
    common: dict[str, Any] = {} if pop is None else {"pop": pop}
    if name == "de" and kind != "real":
        raise ConfigError("algorithm.name='de' needs genome.kind='real' (DE works on real "
                          "vectors; use 'ga' for tokens)")
    try:
        if name == "de":
            return DifferentialEvolution(dim=genome.dim, lower=genome.lower, upper=genome.upper,
                                         **common, **_given(spec_algorithm, _DE_FIELDS))
        if kind == "real":
            shape = {"dim": genome.dim, "lower": genome.lower, "upper": genome.upper}
        else:
            shape = {"dim": genome.length, "vocab": genome.vocab}
        return GeneticAlgorithm(kind=kind, **shape, **common,
                                **_given(spec_algorithm, _GA_FIELDS))
    except ConfigError as err:
        # Point at the spec's section: "ga: tournament=..." -> "algorithm: ga: tournament=...".
        raise ConfigError(f"algorithm: {err}") from None


__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "DifferentialEvolution",
    "Evaluate",
    "GeneticAlgorithm",
    "IslandState",
    "check_algorithm",
    "initial_state",
    "make_algorithm",
]
