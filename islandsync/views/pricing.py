"""What bucket operations cost on the three buckets islandsync runs on: each one's list prices
and monthly free operations, in one place (the report's cost table, ``islandsync report --json``
and ``benchmarks/cost.py`` read them here). Operation classes are the same on all three
(:data:`islandsync.store.counting.OPERATION_CLASS`). Prices as of 2026-11; benchmarks/README.md
gives each one's source and which were checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from islandsync.config.cadence import Cadence

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

    def list_monthly(self, a_per_h: float, b_per_h: float) -> float:
        """USD a month (730 h) of this many operations an hour at list prices, no free tier."""
        return HOURS_PER_MONTH * (a_per_h * self.a_per_million
                                  + b_per_h * self.b_per_million) / 1e6

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


# -- how many operations: a model read off the code, checked against the benchmarks' counts --

def worker_ops_model(c: Cadence, islands_per_worker: float,
                     elite_epochs_per_h: float) -> dict[str, Any]:
    """Operations per follower worker-hour by source (the worker's bucket thread's poll and
    heartbeat, the uploader), as the code reads today.

    poll (every assignment_poll_s): get finished.json, stat assignment.json, get lease.json,
    stat elite/HEAD.json (4 B; a follower does not list workers/, only a solo worker does);
    a new elite epoch costs two more gets (B); heartbeat: one put (A); each island
    checkpoint: put blob, put HEAD (2 A), and once an island has more than 3 checkpoints a
    delete of the oldest (free on GCS, S3 and R2). ``A`` and ``B`` are the billable totals;
    ``A_counted_steady`` adds the deletes (as counters that count them as A would)."""
    polls, beats, rounds = 3600 / c.poll_s, 3600 / c.heartbeat_s, 3600 / c.checkpoint_s
    epochs = min(polls, elite_epochs_per_h)
    parts = {
        "poll": {"A": 0.0, "B": 4 * polls},
        "heartbeat": {"A": beats, "B": 0.0},
        "checkpoint": {"A": 2 * rounds * islands_per_worker, "B": 0.0},
        "elite": {"A": 0.0, "B": 2 * epochs},
    }
    total = {k: sum(p[k] for p in parts.values()) for k in ("A", "B")}
    deletes = rounds * islands_per_worker
    return {"A": round(total["A"]), "B": round(total["B"]),
            "A_counted_steady": round(total["A"] + deletes),
            "by_source": {s: {k: round(v) for k, v in p.items()} for s, p in parts.items()}
            | {"checkpoint_delete (not billed)": {"A": round(deletes), "B": 0}}}


def leader_ops_model(c: Cadence, islands: int, workers: int,
                     elite_epochs_per_h: float) -> dict[str, Any]:
    """Operations per hour of the leader, as the code reads today: a lease renewal every
    lease_s/3 (A; its own thread); per cycle a listing of workers/ and one of islands/ (2 A),
    the heartbeats that changed (B) and the HEADs that moved (B: each once per checkpoint),
    assignment.json and finished.json (2 B); per island checkpoint a ranged read of its elite
    frame (2 B); per elite epoch put blob, put HEAD, list elite/, delete the oldest (4 A).
    Housekeeping sweeps from the cycle's own listings: its deletes only (not billed)."""
    cycles = 3600 / c.cycle_s
    renewals = 3600 / (c.lease_s / 3)
    beats = min(workers * 3600 / c.heartbeat_s, workers * cycles)
    island_ckpts = min(islands * 3600 / c.checkpoint_s, islands * cycles)
    epochs = min(cycles, elite_epochs_per_h)
    a = renewals + 2 * cycles + 4 * epochs
    b = 2 * cycles + beats + island_ckpts + 2 * island_ckpts
    return {"A": round(a), "B": round(b)}


__all__ = ["HOURS_PER_MONTH", "PRICING", "Pricing", "leader_ops_model", "worker_ops_model"]
