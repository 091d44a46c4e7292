"""A cadence as one value (``config/cadence.py``): read from the presets and from a run's
spec, written back to a spec unchanged, and the recovery and failover times its rules allow
(the figures benchmarks/distributed.py holds its measurements against)."""

from __future__ import annotations

import pytest

from islandsync.config import CADENCES, spec_from_flags
from islandsync.config.cadence import Cadence, claim_calls_s, leader_calls_s


def test_a_preset_is_the_cadence_a_run_of_it_records() -> None:
    for name in CADENCES:
        spec = spec_from_flags(problem="rastrigin", dim=4, islands=2, pop=8, cadence=name)
        assert Cadence.of(spec) == Cadence.preset(name)
    default = Cadence.preset("default")
    assert (default.checkpoint_s, default.heartbeat_s, default.poll_s, default.worker_timeout_s,
            default.lease_s, default.cycle_s) == (30.0, 5.0, 2.0, 12.0, 15.0, 5.0)


def test_a_cadence_written_into_a_spec_reads_back_the_same() -> None:
    quick = Cadence.preset("default").scaled(0.1, "quick")
    assert quick.checkpoint_s == pytest.approx(3.0) and quick.lease_s == pytest.approx(1.5)
    spec = spec_from_flags(problem="rastrigin", dim=4, islands=2, pop=8)
    assert Cadence.of(spec.model_copy(update=quick.spec_fields()), "quick") == quick
    assert quick.as_dict()["coordinator_cycle_s"] == quick.cycle_s


def test_recovery_follows_the_liveness_rules() -> None:
    c = Cadence.preset("default")  # timeout 12, heartbeat 5, cycle 5, poll 2
    assert c.recovery_estimate() == {"expected_s": 15.5, "best_s": 7.0, "worst_s": 24.0,
                                     "bucket_calls_s": 0.0}
    slow = c.recovery_estimate(calls_s=0.5)
    assert slow["expected_s"] == 16.0 and slow["best_s"] == 7.5 and slow["worst_s"] == 24.5


def test_failover_follows_the_lease_rules() -> None:
    c = Cadence.preset("default")  # lease 15 renewed every 5, cycle 5
    assert c.failover_estimate() == {"expected_s": 17.5, "best_s": 10.0, "worst_s": 25.0,
                                     "bucket_calls_s": 0.0}
    free = Cadence.preset("free-tier")
    est = free.failover_estimate()
    assert est["best_s"] <= est["expected_s"] <= est["worst_s"]
    assert est["worst_s"] > c.failover_estimate()["worst_s"]  # a longer lease waits longer


def test_bucket_calls_on_the_way_count_round_trips() -> None:
    # lease read + takeover, workers/ listed, 20 heartbeats 16 at a time, assignment read+write
    assert leader_calls_s(0.05, workers=20, readers=16) == pytest.approx(0.05 * 7)
    assert leader_calls_s(0.05, workers=16, readers=16) == pytest.approx(0.05 * 6)
    assert claim_calls_s(0.05) == pytest.approx(0.3)
    assert leader_calls_s(0.0, workers=100, readers=16) == 0.0
