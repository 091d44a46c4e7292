"""A real genome's box on the device: per-gene bounds, integer genes and the genomes' dtype.

A run with one bound for every gene, no integer genes and float32 genomes (every run before
per-gene bounds existed) gets plain Python floats from :meth:`Box.bounds` and an identity
:meth:`Box.repair`, so each algorithm computes exactly what it did before. Otherwise
``bounds`` gives ``[D]`` tensors, which broadcast wherever the floats did.

Integer genes: each algorithm keeps its own bound handling (clamping, DE's and SHADE's
move towards the parent, SBX's and polynomial mutation's bounded steps), then
:meth:`Box.repair` rounds the integer genes to the nearest integer within their bounds,
the last thing before a genome is evaluated: no algorithm evaluates a point outside the box
or a fraction in an integer gene. CMA-ES and SNES treat a rounded sample as they treat a
clamped one: it enters their update as an injected point, its step clipped.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from islandsync.config import RealGenome

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class Box:
    """``genome``'s box for genomes of ``dtype`` (the run's ``dtype``)."""

    def __init__(self, genome: RealGenome, dtype: str = "float32") -> None:
        self.dtype = DTYPES[dtype]
        lo, hi = genome.bounds()
        self.scalar = not isinstance(genome.lower, tuple) and not isinstance(genome.upper, tuple)
        widths = [b - a for a, b in zip(lo, hi)]
        self._lo: float | list[float] = lo
        self._hi: float | list[float] = hi
        #: The mean and largest gene width: what a scalar step size is measured against.
        self.width = math.fsum(widths) / len(widths)
        if self.scalar:
            self._lo, self._hi = float(genome.lower), float(genome.upper)  # type: ignore[arg-type]
            self.width = self._hi - self._lo
        self.max_width = max(widths)
        self.integer = genome.integer_genes()
        ints = set(self.integer)
        self._ilo = [float(math.ceil(a)) if j in ints else a for j, a in enumerate(lo)]
        self._ihi = [float(math.floor(b)) if j in ints else b for j, b in enumerate(hi)]
        self._on: dict[tuple[torch.device, torch.dtype], tuple[Tensor, ...]] = {}

    @property
    def plain(self) -> bool:
        """One bound for all genes, no integer genes, float32: the original arithmetic."""
        return self.scalar and not self.integer and self.dtype == torch.float32

    def _tensors(self, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, ...]:
        key = (torch.device(device), dtype)
        if (got := self._on.get(key)) is None:
            mask = torch.zeros(len(self._ilo), dtype=torch.bool)
            mask[self.integer] = True
            lo = self._lo if self.scalar else torch.tensor(self._lo, dtype=dtype)
            hi = self._hi if self.scalar else torch.tensor(self._hi, dtype=dtype)
            got = self._on[key] = tuple(
                t.to(device) if isinstance(t, Tensor) else torch.tensor(t, dtype=dtype,
                                                                        device=device)
                for t in (lo, hi, mask, torch.tensor(self._ilo, dtype=dtype),
                          torch.tensor(self._ihi, dtype=dtype)))
        return got

    def bounds(self, device: torch.device, dtype: torch.dtype | None = None
               ) -> tuple[float | Tensor, float | Tensor]:
        """Lower and upper bounds: floats when every gene shares them, else ``[D]`` tensors
        of ``dtype`` (default: the genomes') on ``device``."""
        if self.scalar:
            return self._lo, self._hi  # type: ignore[return-value]
        lo, hi, *_ = self._tensors(device, dtype or self.dtype)
        return lo, hi

    def repair(self, x: Tensor) -> Tensor:
        """``x`` with its integer genes rounded to the nearest integer within their bounds
        (``x`` itself when there are none)."""
        if not self.integer:
            return x
        _, _, mask, ilo, ihi = self._tensors(x.device, x.dtype)
        return torch.where(mask, torch.clamp(torch.round(x), ilo, ihi), x)

    def contains(self, x: Tensor) -> Tensor:
        """``[...]`` bool: whether each genome of ``x [..., D]`` lies in the box with its
        integer genes on integers (False for NaN)."""
        lo, hi = self.bounds(x.device, x.dtype)
        ok = ((x >= lo) & (x <= hi)).all(-1)
        return ok if not self.integer else ok & (self.repair(x) == x).all(-1)

    def uniform(self, g: torch.Generator, shape: tuple[int, ...]) -> Tensor:
        """Uniform genomes in the box (integer genes rounded), of the genomes' dtype."""
        lo, hi = self.bounds(g.device)
        u = torch.rand(shape, generator=g, device=g.device, dtype=self.dtype)
        return self.repair(lo + (hi - lo) * u)


__all__ = ["DTYPES", "Box"]
