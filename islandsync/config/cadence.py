"""A run's timing as one value, and how long a dead worker's islands or a dead leader's lease
take to come back from it: the arithmetic of the liveness and lease rules, for the benchmarks
that measure those times to hold their measurements against (``benchmarks/distributed.py``,
``benchmarks/scale.py``) and for anyone choosing a cadence.

The timing settings themselves, and the presets, are :data:`islandsync.config.spec.CADENCES`
and :class:`~islandsync.config.spec.RunSpec`'s fields: :meth:`Cadence.preset` and
:meth:`Cadence.of` read them there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .spec import CADENCES, RunSpec


@dataclass(frozen=True)
class Cadence:
    """Every setting a recovery or failover time depends on, in seconds."""

    name: str
    checkpoint_s: float
    heartbeat_s: float
    poll_s: float
    worker_timeout_s: float
    lease_s: float
    cycle_s: float

    @classmethod
    def preset(cls, name: str = "default") -> Cadence:
        """A preset of :data:`~islandsync.config.spec.CADENCES` (``islandsync init --cadence``)."""
        c = CADENCES[name]
        return cls(name, c["checkpoint_interval_s"], c["heartbeat_interval_s"],
                   c["assignment_poll_s"], c["worker_timeout_s"], c["lease_s"],
                   c["leader_cycle_s"])

    @classmethod
    def of(cls, spec: RunSpec, name: str | None = None) -> Cadence:
        """A run's cadence, as its run.json records it."""
        return cls(name or spec.cadence, spec.checkpoint_interval_s, spec.heartbeat_interval_s,
                   spec.assignment_poll_s, spec.worker_timeout_s, spec.lease_s,
                   spec.leader_cycle_s)

    def spec_fields(self) -> dict[str, float]:
        """The RunSpec fields this cadence sets (``spec.model_copy(update=...)``)."""
        return {"checkpoint_interval_s": self.checkpoint_s,
                "heartbeat_interval_s": self.heartbeat_s, "assignment_poll_s": self.poll_s,
                "worker_timeout_s": self.worker_timeout_s, "lease_s": self.lease_s,
                "leader_cycle_s": self.cycle_s}

    def as_dict(self) -> dict[str, Any]:
        """As the benchmarks record it (the leader's cycle as ``coordinator_cycle_s``)."""
        out = self.spec_fields()
        out["coordinator_cycle_s"] = out.pop("leader_cycle_s")
        return out

    def scaled(self, factor: float, name: str | None = None) -> Cadence:
        """Every interval times ``factor`` (a smoke run's tiny cadence)."""
        values = {k: v * factor for k, v in asdict(self).items() if k != "name"}
        return Cadence(name or f"{self.name} x{factor:g}", **values)

    def recovery_estimate(self, calls_s: float = 0.0) -> dict[str, float]:
        """Kill -> islands claimed elsewhere, from the liveness rules and the leader loop: the
        leader notices a new heartbeat generation at its next cycle and calls the worker dead
        once that generation has stood still for worker_timeout (checked each cycle); the new
        owner reads the assignment at its next poll. The kill falls anywhere in a heartbeat
        interval. ``calls_s``: seconds of bucket calls on the way (the leader's reads and
        merge before it writes the assignment, then the claim), added to each."""
        t, hb, c, p = self.worker_timeout_s, self.heartbeat_s, self.cycle_s, self.poll_s
        return {"expected_s": round(t - hb / 2 + c + p / 2 + calls_s, 1),
                "best_s": round(max(0.0, t - hb) + calls_s, 1),
                "worst_s": round(t + 2 * c + p + calls_s, 1), "bucket_calls_s": calls_s}

    def failover_estimate(self, calls_s: float = 0.0) -> dict[str, float]:
        """Kill -> a candidate takes over (the lease blob's generation unchanged for lease_s
        on the candidate's clock, judged at its cycles; renewals every lease_s/3), plus
        ``calls_s`` for the new leader's first cycle (its reads and merge before it writes
        the assignment)."""
        ren = self.lease_s / 3
        return {"expected_s": round(self.lease_s - ren / 2 + self.cycle_s + calls_s, 1),
                "best_s": round(self.lease_s - ren + calls_s, 1),
                "worst_s": round(self.lease_s + 2 * self.cycle_s + calls_s, 1),
                "bucket_calls_s": calls_s}


def leader_calls_s(latency: float, workers: int, readers: int) -> float:
    """Round trips of a new leader's path to its first assignment write, at ``latency`` each
    (the assignment comes before the HEADs and the merge): the lease read and takeover
    write, the listing of workers/, every heartbeat (read ``readers`` at a time: the
    leader's ``islandsync.bucket.heads.DEFAULT_READERS``), the assignment read and its write."""
    heartbeat_rounds = -(-workers // readers)
    return round(latency * (2 + 1 + heartbeat_rounds + 2), 2)


def claim_calls_s(latency: float) -> float:
    """Round trips of a claim: read the assignment, HEAD, CAS it, list and read the
    checkpoint."""
    return round(latency * 6, 2)


__all__ = ["Cadence", "claim_calls_s", "leader_calls_s"]
