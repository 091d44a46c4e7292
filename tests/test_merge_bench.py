"""benchmarks/merge.py stays runnable: tiny sizes, and its numbers make sense."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import run_benchmark


def test_merge_benchmark_runs_and_ranged_reads_fetch_less(tmp_path: Path) -> None:
    done = run_benchmark("merge", "--candidates", "1000,5000", "--dim", "8", "--repeat", "2",
                         "--islands", "2", "--pop", "4096", "--ckpt-dim", "64",
                         "--json", str(tmp_path / "m.json"))
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads((tmp_path / "m.json").read_text())
    assert [r["candidates"] for r in out["merge"]] == [1000, 5000]
    assert all(r["duplicates_removed"] > 0 and r["median_s"] > 0 for r in out["merge"])
    b = out["bytes"]
    assert b["ranged_reads"] <= 2 * b["islands"] and b["whole_reads"] == b["islands"]
    assert b["ranged_bytes"] * 4 < b["whole_bytes"]
