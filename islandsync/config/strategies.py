"""Settings of the algorithms that keep per-island state (CMA-ES, SHADE, SNES, PGPE),
torch-free: the one declaration of every field, default and limit, and of the per-island
state each one checkpoints (``island_frames``: name -> (shape, numpy dtype)), from which the
checkpoint reader derives its frame list, dtypes and size cap.

Distribution-based islands (``cmaes``, ``snes``, ``pgpe``) sample ``samples`` points a
generation from a search distribution and keep, as their population of ``pop`` rows, the
best points they have seen: that population is what migration, elites and checkpoints see,
while the distribution is island state.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field

from ._base import STRICT

#: Per-island state by name: (shape, numpy dtype string), exactly as checkpoints hold it.
Frames = dict[str, tuple[tuple[int, ...], str]]
F4, F8, I8 = "<f4", "<f8", "<i8"


def default_samples(dim: int) -> int:
    """lambda = 4 + floor(3 ln D), Hansen's default for CMA-ES (and Wierstra et al.'s for NES)."""
    return 4 + int(3 * math.log(dim))


class CMAESConfig(BaseModel):
    """CMA-ES with IPOP or BIPOP restarts (:class:`~islandsync.search.algorithms.cmaes.CMAES`)."""

    model_config = STRICT
    name: Literal["cmaes"] = "cmaes"
    pop: int = Field(16, ge=4)  # the best points seen, kept as the island's population
    samples: int | None = Field(None, ge=4)  # lambda of the first run; None: 4 + 3 ln D
    sigma_init: float = Field(0.25, gt=0.0, le=1.0)  # sigma0 as a fraction of the box width
    # None: full covariance up to full_max_dim, sep-CMA-ES (diagonal, linear cost) above.
    diagonal: bool | None = None
    full_max_dim: int = Field(300, ge=1)
    restarts: bool = True  # restart a stagnated island (restart_mode: how)
    max_doublings: int = Field(5, ge=0)  # lambda grows to at most samples * 2**max_doublings
    tol_fun: float = Field(1e-12, ge=0.0)  # spread of a generation's scores that is flat
    tol_x: float = Field(1e-12, ge=0.0)  # step size (relative to sigma0) that is converged
    # Active CMA-ES: the worst samples shrink C along their directions (pycma's default).
    # An engine step runs ceil(step_evals / lambda) generations (1: one a step); 64 is about
    # one generation of a 64-point GA/DE/SHADE island, so that a portfolio's islands share
    # the evaluations about evenly (at one generation a step, a CMA-ES island of lambda 15
    # beside SHADE islands of 64 got a quarter of their share). The defaults here keep the
    # meaning of a cmaes table stored before these fields existed; an algorithm named by
    # flags or in a named portfolio gets TUNED_SETTINGS (config.algorithms): True and 64.
    active: bool = False
    step_evals: int = Field(1, ge=1)
    # How a stagnated island restarts (with ``restarts``): "ipop" doubles lambda every time;
    # "bipop" (Hansen 2009, pycma's ``bipop=True``) alternates that large regime with runs of
    # a smaller lambda and sigma, whichever regime has spent fewer evaluations. Lazy eigen:
    # C's eigensystem refreshed every max(1, floor(1 / (10 D (c1 + cmu)))) generations of an
    # island (Hansen's tutorial), not every one; full covariance only. Both defaults keep the
    # meaning (and the trajectory) of a cmaes table stored before they existed.
    restart_mode: Literal["ipop", "bipop"] = "ipop"
    lazy_eigen: bool = False

    def is_diagonal(self, width: int) -> bool:
        return self.diagonal if self.diagonal is not None else width > self.full_max_dim

    def island_frames(self, width: int, dtype: str = "float32") -> Frames:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype (float64
        whatever the genomes' ``dtype``)."""
        d = (width,)
        diagonal = self.is_diagonal(width)
        cov = d if diagonal else (width, width)
        frames = {"mean": (d, F8), "sigma": ((), F8), "cov": (cov, F8), "pc": (d, F8),
                  "ps": (d, F8), "gen": ((), I8), "lam": ((), I8), "restarts": ((), I8),
                  "best": ((), F8), "stall": ((), I8)}
        if self.restart_mode == "bipop":  # the regime of the run, its lambdas and budgets
            frames |= {"regime": ((), I8), "lam_large": ((), I8), "small_evals": ((), I8),
                       "large_evals": ((), I8)}
        if self.lazy_eigen and not diagonal:  # the eigensystem the samples are drawn from
            frames |= {"eig_sqrt": (d, F8), "eig_basis": (cov, F8)}
        return frames

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        if kind != "real":
            return [("name", "cmaes works on real genomes only; use ga for tokens")]
        return []


class SHADEConfig(BaseModel):
    """SHADE: success-history adaptive DE, current-to-pbest/1/bin with an external archive
    (:class:`~islandsync.search.algorithms.shade.SHADE`). Defaults are Tanabe & Fukunaga's
    (2013): memories at 0.5, pbest rates uniform on [2/P, p_max], an archive of P."""

    model_config = STRICT
    name: Literal["shade"] = "shade"
    pop: int = Field(64, ge=4)  # current-to-pbest/1 needs x_i, r1, r2 apart and a pbest
    memory: int | None = Field(None, ge=1)  # H, entries of M_CR and M_F; None: pop
    p_max: float = Field(0.2, gt=0.0, le=1.0)

    def memory_size(self) -> int:
        return self.memory if self.memory is not None else self.pop

    def island_frames(self, width: int, dtype: str = "float32") -> Frames:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype (the
        archive holds genomes, of the run's ``dtype``)."""
        h = (self.memory_size(),)
        genes = F8 if dtype == "float64" else F4
        return {"archive": ((self.pop, width), genes), "archive_n": ((), I8),
                "m_cr": (h, F4), "m_f": (h, F4), "m_pos": ((), I8)}

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        if kind != "real":
            return [("name", "shade works on real genomes only; use ga for tokens")]
        return []


class SNESConfig(BaseModel):
    """Separable natural evolution strategy (Schaul, Glasmachers, Schmidhuber 2011;
    :class:`~islandsync.search.algorithms.snes.SNES`): O(D) state, for large D."""

    model_config = STRICT
    name: Literal["snes"] = "snes"
    pop: int = Field(8, ge=2)  # the best points seen; keep it small for a large D
    samples: int | None = Field(None, ge=2)  # lambda; None: 4 + 3 ln D
    sigma_init: float = Field(0.25, gt=0.0, le=1.0)  # as a fraction of the box width
    lr_center: float = Field(1.0, gt=0.0)
    lr_sigma: float | None = Field(None, gt=0.0)  # None: (3 + ln D) / (5 sqrt D)
    # The z with which a sample clamped onto the box (or rounded, in an integer gene) enters
    # the update; the repaired point is what is scored either way. "clipped": the repaired
    # point's z, Hansen-clipped like a migrant's (Hansen's advice for repaired samples, and
    # the meaning of a snes table stored before this field existed). "sampled": the z it was
    # drawn with (EvoX's practice), so a clamp does not shorten it. Measured
    # (benchmarks/README.md, "Neuroevolution" and "BBOB"): "sampled" is worse on digits on
    # [-1, 1] and better on BBOB's ill-conditioned and multimodal groups, so it is not the
    # default of flags or named portfolios.
    repaired_z: Literal["clipped", "sampled"] = "clipped"

    def island_frames(self, width: int, dtype: str = "float32") -> Frames:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype (of the
        genomes: the run's ``dtype``)."""
        genes = F8 if dtype == "float64" else F4
        return {"mean": ((width,), genes), "sigma": ((width,), genes)}

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        if kind != "real":
            return [("name", "snes works on real genomes only; use ga for tokens")]
        return []


class PGPEConfig(BaseModel):
    """PGPE with the ClipUp optimiser (Sehnke et al. 2010; Toklu et al. 2020;
    :class:`~islandsync.search.algorithms.pgpe.PGPE`): O(D) state, for large D. The
    defaults are the ClipUp paper's rules of thumb, as EvoTorch's PGPE takes them; speeds
    and the radius are fractions of the box width (0.075 of [-1, 1] is a speed of 0.15)."""

    model_config = STRICT
    name: Literal["pgpe"] = "pgpe"
    pop: int = Field(8, ge=2)  # the best points seen; keep it small for a large D
    # lambda, even (antithetic pairs); None: 4 + 3 ln D rounded up to even
    samples: int | None = Field(None, ge=2, multiple_of=2)
    max_speed: float = Field(0.075, gt=0.0)  # ClipUp's velocity limit, of the box width
    lr_center: float | None = Field(None, gt=0.0)  # ClipUp's step; None: max_speed / 2
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    radius_init: float | None = Field(None, gt=0.0)  # |sigma0|; None: 15 x max_speed
    lr_sigma: float = Field(0.1, gt=0.0)
    sigma_max_change: float = Field(0.2, gt=0.0, lt=1.0)  # sigma moves by at most 20 %

    def sample_count(self, dim: int) -> int:
        n = self.samples or default_samples(dim)
        return n + n % 2

    def island_frames(self, width: int, dtype: str = "float32") -> Frames:
        """Per-island state (``IslandState.island``) by name: shape and numpy dtype (of the
        genomes: the run's ``dtype``)."""
        genes = F8 if dtype == "float64" else F4
        return {"mean": ((width,), genes), "sigma": ((width,), genes),
                "velocity": ((width,), genes)}

    def genome_conflicts(self, kind: str) -> list[tuple[str, str]]:
        if kind != "real":
            return [("name", "pgpe works on real genomes only; use ga for tokens")]
        return []


__all__ = ["CMAESConfig", "PGPEConfig", "SHADEConfig", "SNESConfig", "default_samples"]
