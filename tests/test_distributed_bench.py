"""benchmarks/distributed.py: a --quick run end to end on a local store, run as a script (real
processes: a leader, workers, a second candidate, kill -9 of each kind), and the histogram
quantiles it reads (the operations models and cadence estimates it holds its figures against
are tested with their modules: tests/views/test_pricing.py, tests/config/test_cadence.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from islandsync.errors import ConfigError
from islandsync.store import LATENCY_ENV, LocalStore, open_store
from islandsync.store.counting import CountingStore
from islandsync.testing.observe import bucket_range, quantile_from_buckets

from .conftest import run_benchmark

KEYS = {"throughput_multiplier", "checkpoint_overhead", "merge_overhead", "recovery_s",
        "failover_s", "duplicates", "ops_per_worker_hour"}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, float, Path]:
    out = tmp_path_factory.mktemp("distributed")
    t0 = time.monotonic()
    done = run_benchmark("distributed", "--quick", "--store", "file", "--workers", "1,2",
                         "--duration", "2s", "--store-latency", "0",
                         "--workdir", str(out / "work"), "--json", str(out / "d.json"),
                         "--markdown", str(out / "d.md"), timeout=230)
    elapsed = time.monotonic() - t0
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return (json.loads((out / "d.json").read_text()), (out / "d.md").read_text(), elapsed,
            out / "work")


@pytest.mark.timeout(240)
def test_quick_run_reports_every_measure(report: tuple[dict, str, float, Path]) -> None:
    data, md, elapsed, _ = report
    assert KEYS <= set(data)
    assert data["throughput_multiplier"]["1"] == 1.0
    assert data["throughput_multiplier"]["2"] > 0
    assert data["duplicates"] == 0
    assert data["details"]["elite"]["epochs_seen"] > 0
    ops = data["ops_per_worker_hour"]
    assert ops["default"]["worker"]["A"] > 0 and ops["default"]["worker"]["B"] > 0
    assert ops["default"]["leader"]["A"] > 0
    assert ops["default"]["worker"]["cost_per_worker_month_usd"] > 0
    assert ops["frugal"]["recovery_source"] == "estimated"
    assert 0 <= data["checkpoint_overhead"]["share"] < 0.5
    assert data["checkpoint_overhead"]["uploads"] > 0
    assert data["merge_overhead"]["merges"] > 0
    assert data["recovery_s"] is not None and data["recovery_s"] > 0
    assert data["failover_s"] is not None and data["failover_s"] > 0
    for key in ("cpu_count", "platform", "python", "torch"):
        assert key in data["benchmark"]["machine"]
    assert "benchmarks/distributed.py --quick" in data["benchmark"]["command"]
    assert "| measure | target | measured | verdict |" in md
    assert elapsed < 120, f"the quick run took {elapsed:.0f}s"


@pytest.mark.timeout(240)
def test_no_process_left_behind(report: tuple[dict, str, float, Path]) -> None:
    data, _, _, workdir = report
    procs = data["benchmark"]["processes"]
    assert len(procs) >= 6  # 2 leaders, 3 workers, a second candidate
    for proc in procs:
        assert proc["exit"] is not None, f"{proc['name']} still running when it ended"
        # Not running now either: no process with that pid works on the benchmark's runs
        # (a pid the kernel gave to someone else since is not ours).
        try:
            argv = Path(f"/proc/{proc['pid']}/cmdline").read_bytes()
        except OSError:
            continue
        assert str(workdir).encode() not in argv, f"{proc['name']} still running"


def test_quantiles_interpolate_like_prometheus() -> None:
    buckets = {"0.1": 0, "0.25": 10, "0.5": 20, "+Inf": 20}
    assert quantile_from_buckets(buckets, 0.5) == pytest.approx(0.25)
    assert quantile_from_buckets(buckets, 0.25) == pytest.approx(0.175)
    assert bucket_range(buckets, 0.95) == "(0.25, 0.5]"
    assert quantile_from_buckets({"+Inf": 0}, 0.5) is None


@pytest.mark.parametrize("text,seconds", [("50ms", 0.05), ("0.05", 0.05), ("0.05s", 0.05),
                                          ("250us", 0.00025), (" 1 s ", 1.0)])
def test_store_latency_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str,
                           seconds: float) -> None:
    monkeypatch.setenv(LATENCY_ENV, text)
    store = open_store(tmp_path / "run")
    assert isinstance(store, CountingStore) and isinstance(store.inner, LocalStore)
    assert store.latency_s == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "0", "0ms"])
def test_store_latency_env_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               text: str) -> None:
    monkeypatch.setenv(LATENCY_ENV, text)
    assert isinstance(open_store(tmp_path / "run"), LocalStore)


@pytest.mark.parametrize("text", ["fast", "-5ms", "5 parsecs", "nan"])
def test_store_latency_env_bad(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                               text: str) -> None:
    monkeypatch.setenv(LATENCY_ENV, text)
    with pytest.raises(ConfigError, match=LATENCY_ENV):
        open_store(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was created
