"""benchmarks/peers.py: a --quick run end to end against EvoX."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import run_benchmark


def _peers(*args: str) -> int:
    done = run_benchmark("peers", *args)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.returncode


def test_quick_run_reports_both_sides(tmp_path: Path) -> None:
    pytest.importorskip("evox", reason="EvoX is not installed (pip install 'islandsync[bench]')")
    out = tmp_path / "peers.json"
    md = tmp_path / "peers.md"
    assert _peers("--quick", "--json", str(out), "--markdown", str(md)) == 0
    doc = json.loads(out.read_text())
    assert doc["machine"]["evox"] and doc["command"].endswith(f"--markdown {md}")
    assert {r["algorithm"] for r in doc["rows"]} == {"de", "ga"}
    for row in doc["rows"]:
        assert (row["islands"], row["pop"], row["dim"]) == (2, 16, 10)
        for side in ("islandsync", "evox_one", "evox_k"):
            assert row[side]["evals_per_s"] > 0 and row[side]["ms_per_gen"] > 0
        assert row["ratio_vs_best_evox"] == pytest.approx(min(
            row["islandsync"]["evals_per_s"] / row["evox_one"]["evals_per_s"],
            row["islandsync"]["evals_per_s"] / row["evox_k"]["evals_per_s"]))
    assert "| de | 2 x 16 x 10 |" in md.read_text()


def test_islandsync_alone_needs_no_evox(tmp_path: Path) -> None:
    out = tmp_path / "alone.json"
    assert _peers("--quick", "--no-evox", "--algorithms", "de", "--json", str(out)) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["islandsync"]["evals_per_s"] > 0 and "evox_one" not in row


def test_cpu_clock_times_generations_by_cpu_time(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    assert _peers("--quick", "--no-evox", "--algorithms", "de", "--clock", "cpu",
                  "--json", str(out)) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["clock"] == "cpu" and row["islandsync"]["ms_per_gen"] > 0
    done = run_benchmark("peers", "--quick", "--no-evox", "--clock", "sundial")
    assert done.returncode == 2 and "--clock" in done.stderr


def test_quick_run_of_the_distribution_strategies_and_shade(tmp_path: Path) -> None:
    """CMA-ES, SHADE, SNES and PGPE against EvoX's own (its CMAES through the eager subclass;
    PGPE against its OpenES, EvoX 1.4 having no PGPE)."""
    pytest.importorskip("evox", reason="EvoX is not installed (pip install 'islandsync[bench]')")
    out = tmp_path / "peers.json"
    assert _peers("--quick", "--algorithms", "cmaes,shade,snes,pgpe", "--json", str(out)) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["algorithm"] for r in rows] == ["cmaes", "shade", "snes", "pgpe"]
    for row in rows:
        for side in ("islandsync", "evox_one", "evox_k"):
            assert row[side]["evals_per_s"] > 0
    # PGPE samples lambda = P a generation, as the peer's pop_size: the same batch a side.
    pgpe = rows[-1]
    assert pgpe["islandsync"]["evals_per_gen"] == pgpe["evox_k"]["evals_per_gen"] == 2 * 16


def test_an_unknown_algorithm_is_refused() -> None:
    done = run_benchmark("peers", "--quick", "--algorithms", "de,nope")
    assert done.returncode == 2 and "unknown algorithms ['nope']" in done.stderr
