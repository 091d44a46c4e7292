"""The island algorithms' settings, torch-free: the one declaration of every field, default and
limit. :mod:`islandsync.search.algorithms` takes these models as they are and validates
nothing again; the spec (``algorithm`` in run.json) is one of them, chosen by ``name``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    GetCoreSchemaHandler,
    Tag,
    model_validator,
)
from typing_extensions import TypeAliasType

from islandsync.errors import ConfigError

from ._base import AS_TUPLE, STRICT, conflicts, tagged_union
from .strategies import CMAESConfig, PGPEConfig, SHADEConfig, SNESConfig

#: Operators per genome kind; the first is the default (``None`` in the settings).
CROSSOVERS: dict[str, tuple[str, ...]] = {"real": ("sbx", "uniform", "one_point"),
                                          "tokens": ("uniform", "one_point")}
MUTATIONS: dict[str, tuple[str, ...]] = {"real": ("polynomial", "gaussian", "resample"),
                                         "tokens": ("resample",)}


class GAConfig(BaseModel):
    """Generational GA with elitism (:class:`~islandsync.search.algorithms.ga.GeneticAlgorithm`).

    ``tournament`` is at least 2: a tournament of one picks parents uniformly at random, so the
    only selection left would be the elite (none at all with ``elite=0``); such a "GA" is a
    random walk, far likelier a mistake than a wish, and run specs have always refused it.
    """

    model_config = STRICT
    name: Literal["ga"] = "ga"
    pop: int = Field(64, ge=4)
    elite: int = Field(2, ge=0)
    tournament: int = Field(3, ge=2)
    crossover: Literal["sbx", "uniform", "one_point"] | None = None  # None: per genome kind
    crossover_rate: float = Field(0.9, ge=0.0, le=1.0)
    sbx_eta: float = Field(15.0, ge=0.0)
    mutation: Literal["gaussian", "polynomial", "resample"] | None = None  # None: per genome kind
    mutation_rate: float | None = Field(None, gt=0.0, le=1.0)  # None: 1/D, one gene a child
    mutation_sigma: float = Field(0.1, gt=0.0)
    poly_eta: float = Field(20.0, ge=0.0)

    @model_validator(mode="after")
    def _sizes(self) -> GAConfig:
        bad = []
        if self.elite >= self.pop:
            bad.append(("elite", f"must be less than pop ({self.pop}), got {self.elite}"))
        if self.tournament > self.pop:
            bad.append(("tournament", f"must be at most pop ({self.pop}), got {self.tournament}"))
        conflicts(bad)
        return self

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        """``(field, message)`` for each setting that does not apply to a ``kind`` genome."""
        allowed = {"crossover": CROSSOVERS[kind], "mutation": MUTATIONS[kind]}
        return [(f, f"{op} does not apply to a {kind} genome")
                for f, ops in allowed.items() if (op := getattr(self, f)) not in (None, *ops)]

    def island_frames(self, width: int,
                      dtype: str = "float32") -> dict[str, tuple[tuple[int, ...], str]]:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype. None."""
        return {}


class DEConfig(BaseModel):
    """Self-adaptive DE (jDE): each individual carries F and CR, resampled with prob tau
    (:class:`~islandsync.search.algorithms.de.DifferentialEvolution`)."""

    model_config = STRICT
    name: Literal["de"] = "de"
    pop: int = Field(64, ge=4)  # rand/1 needs three others besides the target
    f_init: float = Field(0.5, gt=0.0)
    cr_init: float = Field(0.9, ge=0.0, le=1.0)
    tau_f: float = Field(0.1, ge=0.0, le=1.0)
    tau_cr: float = Field(0.1, ge=0.0, le=1.0)
    f_lower: float = Field(0.1, gt=0.0)
    f_upper: float = Field(1.0, gt=0.0)
    # torch.compile the step's arithmetic into one fused pass (falls back to eager, with a
    # warning, where compiling fails). Off: see benchmarks/README.md, "Peers", for its effect.
    compile: bool = False

    @model_validator(mode="after")
    def _range(self) -> DEConfig:
        if not self.f_lower < self.f_upper:
            conflicts([("f_upper", f"must be greater than f_lower ({self.f_lower!r})")])
        return self

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        """``(field, message)`` for each setting that does not apply to a ``kind`` genome."""
        if kind != "real":
            return [("name", "de works on real genomes only; use ga for tokens")]
        return []

    def island_frames(self, width: int,
                      dtype: str = "float32") -> dict[str, tuple[tuple[int, ...], str]]:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype. None."""
        return {}


#: Every algorithm's settings model by name: the one list of algorithm names. The CLI's
#: choices and help, spec_from_flags, the docs' lists and every registry-wide test take their
#: names from here; search.algorithms.ALGORITHMS registers an implementation under each.
#: Add one with :func:`register_algorithm` (the built-ins are listed here directly).
ALGORITHM_CONFIGS: dict[str, type[BaseModel]] = {
    "ga": GAConfig, "de": DEConfig, "cmaes": CMAESConfig, "shade": SHADEConfig,
    "snes": SNESConfig, "pgpe": PGPEConfig}

#: Models whose schema holds an AlgorithmSpec (RunSpec), rebuilt when the registry changes.
_DEPENDENTS: list[type[BaseModel]] = []


class AlgorithmSpec:
    """The annotation of one algorithm's settings: one of :data:`ALGORITHM_CONFIGS`, chosen by
    ``name`` (missing means ga). Its schema is built from the registry as it is when a model
    using it is built, and again by :func:`register_algorithm`."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return handler.generate_schema(tagged_union(
            ALGORITHM_CONFIGS, field="name", default="ga", error_type="algorithm_name"))


def register_algorithm(model: type[BaseModel]) -> str:
    """Add an algorithm's settings model to :data:`ALGORITHM_CONFIGS` under its ``name``
    field's default (a ``Literal`` of that one name), and rebuild the models that hold one.
    Its implementation registers under the same name with
    :func:`islandsync.search.algorithms.register`. Returns the name.

    Raises:
        ConfigError: a name already taken (by an algorithm or a named portfolio), or a model
            without a string ``name`` default, ``pop``, ``genome_conflicts`` or
            ``island_frames``.
    """
    field = model.model_fields.get("name")
    name = None if field is None else field.default
    if not isinstance(name, str) or not name:
        raise ConfigError(f"algorithm settings {model.__name__}: needs a field "
                          f"name: Literal['<name>'] = '<name>'")
    if name in ALGORITHM_CONFIGS or name in PORTFOLIOS:
        raise ConfigError(f"algorithm {name!r} is already registered")
    missing = [m for m in ("genome_conflicts", "island_frames") if not hasattr(model, m)]
    if "pop" not in model.model_fields or missing:
        raise ConfigError(f"algorithm settings {model.__name__}: needs a pop field and the "
                          f"methods genome_conflicts and island_frames")
    ALGORITHM_CONFIGS[name] = model
    _rebuild()
    return name


def unregister_algorithm(name: str) -> None:
    """Remove an algorithm :func:`register_algorithm` added (tests' throwaway ones)."""
    ALGORITHM_CONFIGS.pop(name, None)
    _rebuild()


def _rebuild() -> None:
    for model in _DEPENDENTS:
        model.model_rebuild(force=True)


#: Named portfolios: ``algorithm = "portfolio"`` in a spec (``--algorithm portfolio``) is
#: this list of algorithms at their defaults, written out in full into run.json, so a later
#: change of a named portfolio never changes a stored run.
PORTFOLIOS: dict[str, tuple[str, ...]] = {"portfolio": ("cmaes", "shade", "snes")}

#: The algorithm a spec built from flags gets when none is named (``islandsync init`` with no
#: ``--algorithm``, ``spec_from_flags``), by genome kind. Chosen by measurement on COCO's BBOB
#: (benchmarks/bbob.py; benchmarks/README.md, "BBOB"): the named portfolio. Its algorithms are
#: real-only, so tokens keep ga. A stored spec without ``algorithm.name`` still means ga
#: (AlgorithmSpec's tag default).
DEFAULT_ALGORITHM: dict[str, str] = {"real": "portfolio", "tokens": "ga"}


#: Settings an algorithm named by flags (``--algorithm cmaes``, ``spec_from_flags``) or in a
#: named portfolio gets beyond its model's defaults, which keep the meaning of a settings
#: table stored before a field existed (a table written by hand gets the model's defaults).
#: Measured on BBOB (benchmarks/README.md, "BBOB"): active CMA-ES, and a step of about 64
#: evaluations so that a portfolio's CMA-ES islands get a SHADE island's share.
TUNED_SETTINGS: dict[str, dict[str, Any]] = {"cmaes": {"active": True, "step_evals": 64}}


def named_entry(name: str, pop: int | None = None) -> dict[str, Any]:
    """The settings table of algorithm ``name`` named by flags or in a named portfolio:
    :data:`TUNED_SETTINGS` and ``pop`` when given."""
    return {"name": name, **TUNED_SETTINGS.get(name, {}), **({} if pop is None else {"pop": pop})}


def expand_portfolio(value: Any, pop: int | None = None) -> Any:
    """A spec's ``algorithm`` with a named portfolio (a string) written out as its list of
    settings tables (:func:`named_entry`); anything else as it is."""
    if isinstance(value, str) and value in PORTFOLIOS:
        return [named_entry(n, pop) for n in PORTFOLIOS[value]]
    return value


def _shape(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return "portfolio"
    return "one" if isinstance(value, (dict, BaseModel)) else None


#: A run's ``algorithm``: one settings table (every island runs it), or a portfolio, a list
#: of settings tables given to the islands round-robin (island ``i`` runs entry ``i mod n``;
#: an entry written twice gets twice the islands), pygmo-archipelago style.
# Aliases: AlgorithmSpec's metadata holds a dict, which typing's Union cannot hash.
_One = TypeAliasType("_One", AlgorithmSpec)  # type: ignore[valid-type]
_Many = TypeAliasType(  # type: ignore[valid-type]
    "_Many", Annotated[tuple[AlgorithmSpec, ...], AS_TUPLE])
AlgorithmsSpec = Annotated[
    Union[  # noqa: UP007 - Tag needs the members spelt out
        Annotated[_One, Tag("one")], Annotated[_Many, Tag("portfolio")]],
    Discriminator(_shape, custom_error_type="algorithm_shape",
                  custom_error_message="Input should be a table of one algorithm's settings, "
                  f"a list of them (a portfolio) or one of {sorted(PORTFOLIOS)}")]


__all__ = ["ALGORITHM_CONFIGS", "CROSSOVERS", "DEFAULT_ALGORITHM", "MUTATIONS", "PORTFOLIOS",
           "TUNED_SETTINGS", "AlgorithmSpec", "AlgorithmsSpec", "CMAESConfig", "DEConfig",
           "GAConfig", "PGPEConfig", "SHADEConfig", "SNESConfig", "expand_portfolio", "named_entry",
           "register_algorithm", "unregister_algorithm"]
