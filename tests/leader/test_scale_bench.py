"""benchmarks/scale.py --quick: the harness runs end to end and reports every measure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO


def test_scale_benchmark_quick(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    subprocess.run([sys.executable, str(REPO / "benchmarks" / "scale.py"), "--quick",
                    "--store-latency", "5ms", "--json", str(out)], check=True, cwd=REPO,
                   capture_output=True, timeout=180)
    doc = json.loads(out.read_text())
    (size,) = doc["sizes"]
    assert size["cycle_s"]["n"] > 0 and size["cycle_s"]["p95"] is not None
    assert size["lease_losses"] == 0
    assert size["recovery_s"] is not None and size["failover_s"] is not None
    assert size["ops_per_worker_hour"]["A"] > 0 and size["leader_ops_per_hour"]["B"] > 0
    # The leader's own records: never more than one write a second to one of them.
    assert size["max_leader_writes_per_s_one_object"] <= 1
