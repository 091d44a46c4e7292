"""benchmarks/scale.py --quick: the harness runs end to end and reports every measure."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import run_benchmark


def test_scale_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = run_benchmark("scale", "--quick", "--store-latency", "5ms", "--json", str(out),
                         timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert "cpu_count" in doc["benchmark"]["machine"]
    (size,) = doc["sizes"]
    assert size["cycle_s"]["n"] > 0 and size["cycle_s"]["p95"] is not None
    assert size["lease_losses"] == 0
    assert size["recovery_s"] is not None and size["failover_s"] is not None
    assert size["ops_per_worker_hour"]["A"] > 0 and size["leader_ops_per_hour"]["B"] > 0
    # The leader's own records: never more than one write a second to one of them.
    assert size["max_leader_writes_per_s_one_object"] <= 1
