"""Bucket operation prices (``views/pricing.py``): a month's cost counts only what is past
the free tier, class A and B apart, and the free hours are bounded by whichever class runs
out first, never past a month."""

from __future__ import annotations

import pytest

from islandsync.views.pricing import HOURS_PER_MONTH, PRICING, Pricing

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
