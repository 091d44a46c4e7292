"""What bucket operations cost on the three buckets islandsync runs on: each one's list prices
and monthly free operations, in one place (the report's cost table, ``islandsync report --json``
and ``benchmarks/cost.py`` read them here). Operation classes are the same on all three
(:data:`islandsync.store.counting.OPERATION_CLASS`). Prices as of 2026-11; benchmarks/README.md
gives each one's source and which were checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_MONTH = 730.0


@dataclass(frozen=True)
class Pricing:
    """A bucket's list prices per million operations and its monthly free operations."""

    a_per_million: float
    b_per_million: float
    free_a: int
    free_b: int
    note: str

    def monthly(self, a_per_h: float, b_per_h: float) -> float:
        """USD a month (730 h) of this many operations an hour, after the free tier."""
        a, b = a_per_h * HOURS_PER_MONTH, b_per_h * HOURS_PER_MONTH
        return (max(0.0, a - self.free_a) * self.a_per_million
                + max(0.0, b - self.free_b) * self.b_per_million) / 1e6

    def free_hours(self, a_per_h: float, b_per_h: float) -> float:
        """Hours a month (at most 730) this many operations an hour stay in the free tier."""
        limits = [f / r for f, r in ((self.free_a, a_per_h), (self.free_b, b_per_h)) if r > 0]
        return min([HOURS_PER_MONTH, *limits])


#: List prices (2026-11) of the three buckets islandsync runs on; benchmarks/README.md gives
#: the sources. Operation classes are the same on all three (store/counting.py).
PRICING = {
    "GCS": Pricing(5.0, 0.4, 5_000, 50_000, "Standard; Always Free 5 k A / 50 k B a month "
                                            "(US regions)"),
    "S3": Pricing(5.0, 0.4, 2_000, 20_000, "Standard us-east-1; free tier 2 k PUT-LIST / "
                                           "20 k GET a month (new accounts' first year)"),
    "R2": Pricing(4.5, 0.36, 1_000_000, 10_000_000, "Standard; 1 M class A / 10 M class B "
                                                    "free a month"),
}


__all__ = ["HOURS_PER_MONTH", "PRICING", "Pricing"]
