"""benchmarks/neuro.py: a --quick run of islandsync's side end to end (EvoTorch's side needs
the neuro-bench extra, which the test extra leaves out)."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_benchmark


def test_quick_run_of_islandsync_side(tmp_path: Path) -> None:
    out = tmp_path / "neuro.json"
    done = run_benchmark("neuro", "--quick", "--optimisers", "portfolio-3,snes-wide-4",
                         "--json", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["command"].startswith("python benchmarks/neuro.py --quick")
    assert [(r["problem"], r["optimiser"]) for r in doc["records"]] == [
        ("digits", "portfolio-3"), ("digits", "snes-wide-4"),
        ("cartpole", "portfolio-3"), ("cartpole", "snes-wide-4")]
    for r in doc["records"]:
        assert 0 < r["evals"] <= r["budget"]
        if r["problem"] == "digits":
            assert 0.0 <= r["test_accuracy"] <= 1.0 and r["train_cross_entropy"] > 0
        else:
            assert 1.0 <= r["held_out_return"] <= 500.0 and 1.0 <= r["train_return"] <= 500.0
    assert "| portfolio-3 |" in done.stdout and "test accuracy" in done.stdout


def test_unknown_optimiser_is_refused_with_one_line() -> None:
    done = run_benchmark("neuro", "--quick", "--optimisers", "nope")
    assert done.returncode == 2 and "unknown nope; optimisers: portfolio-3" in done.stderr
