"""Bucket operation prices (``views/pricing.py``): a month's cost counts only what is past
the free tier, class A and B apart, and the free hours are bounded by whichever class runs
out first, never past a month."""

from __future__ import annotations

import pytest

from islandsync.config.cadence import Cadence
from islandsync.views.pricing import (
    HOURS_PER_MONTH,
    PRICING,
    Pricing,
    leader_ops_model,
    worker_ops_model,
)

PRICE = Pricing(a_per_million=5.0, b_per_million=0.4, free_a=5_000, free_b=50_000, note="")


def test_a_month_inside_the_free_tier_costs_nothing() -> None:
    assert PRICE.monthly(5_000 / HOURS_PER_MONTH, 50_000 / HOURS_PER_MONTH) == 0.0


def test_only_operations_past_the_free_tier_are_paid_each_class_at_its_price() -> None:
    a_per_h = (5_000 + 1_000_000) / HOURS_PER_MONTH  # one million past the free A
    b_per_h = (50_000 + 2_000_000) / HOURS_PER_MONTH  # two million past the free B
    assert PRICE.monthly(a_per_h, b_per_h) == pytest.approx(5.0 + 2 * 0.4)
    assert PRICE.monthly(a_per_h, 0.0) == pytest.approx(5.0)  # B unused: its tier is not a credit


def test_free_hours_end_when_the_first_class_runs_out() -> None:
    assert PRICE.free_hours(50.0, 100.0) == pytest.approx(100.0)  # A: 5000 / 50
    assert PRICE.free_hours(1.0, 1000.0) == pytest.approx(50.0)  # B: 50000 / 1000
    assert PRICE.free_hours(1.0, 1.0) == HOURS_PER_MONTH  # never past a month
    assert PRICE.free_hours(0.0, 0.0) == HOURS_PER_MONTH


def test_the_three_buckets_are_priced() -> None:
    assert set(PRICING) == {"GCS", "S3", "R2"}
    for price in PRICING.values():
        assert price.a_per_million > price.b_per_million > 0 and price.note


def test_list_prices_count_no_free_tier() -> None:
    assert PRICE.list_monthly(1000, 0) == pytest.approx(730 * 0.005)
    assert PRICE.list_monthly(0, 1000) == pytest.approx(730 * 0.0004)
    assert PRICE.list_monthly(1.0, 1.0) > PRICE.monthly(1.0, 1.0) == 0.0


def test_the_operations_models_follow_the_cadence() -> None:
    c = Cadence.preset("default")  # checkpoint 30, heartbeat 5, poll 2, lease 15, cycle 5
    m = worker_ops_model(c, islands_per_worker=2, elite_epochs_per_h=0)
    # A follower: heartbeats and checkpoints (blob + HEAD) are class A, polls class B only;
    # deletes of old checkpoints are counted apart (no bucket bills them).
    assert m["A"] == 720 + 2 * 120 * 2 and m["B"] == 4 * 1800
    assert m["A_counted_steady"] == m["A"] + 120 * 2
    slow = worker_ops_model(c.scaled(10.0), islands_per_worker=2, elite_epochs_per_h=0)
    assert slow["A"] * 10 == m["A"] and slow["B"] * 10 == m["B"]
    lead = leader_ops_model(c, islands=8, workers=4, elite_epochs_per_h=0)
    # renewals every 5 s and two listings a cycle (A); per cycle assignment + finished, the
    # heartbeats and HEADs that moved, and each checkpoint's elite frame (B)
    assert lead == {"A": 720 + 2 * 720, "B": 2 * 720 + 4 * 720 + 3 * 8 * 120}
