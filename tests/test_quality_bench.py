"""benchmarks/quality.py, run as a script: a tiny run end to end, and the isolated islands
really isolated."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from .conftest import run_benchmark

K, POP, EVALS, INTERVAL, MIGRANTS, SEEDS = 3, 6, 600, 3, 2, 2
CONFIGS = ("pool", "ring", "isolated", "panmictic")  # quality.py's, as its JSON lists them


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("quality")
    argv = ["--problems", "rastrigin,symbolic_regression", "--algorithms", "ga,de",
            "--seeds", str(SEEDS), "--islands", str(K), "--pop", str(POP), "--dim", "5",
            "--evals", str(EVALS), "--migration-interval", str(INTERVAL),
            "--migrants", str(MIGRANTS), "--json", str(out / "q.json"),
            "--markdown", str(out / "q.md")]
    try:
        import matplotlib  # noqa: F401
        argv += ["--png", str(out / "q.png")]
    except ImportError:
        pass
    done = run_benchmark("quality", *argv, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "q.json").read_text())
    assert data["configurations"] == list(CONFIGS)
    return data, out


def test_every_configuration_present(report: tuple[dict, Path]) -> None:
    data, _ = report
    pairs = {(r["problem"], r["algorithm"]) for r in data["results"]}
    assert pairs == {("rastrigin", "ga"), ("rastrigin", "de"), ("symbolic_regression", "ga")}
    assert data["skipped"] == [{"problem": "symbolic_regression", "algorithm": "de",
                                "reason": "de works on real genomes only; use ga for tokens"}]
    for res in data["results"]:
        assert set(res["configs"]) == set(CONFIGS)
        assert res["direction"] == "minimize"
        assert res["winner"] == min(CONFIGS,
                                    key=lambda c: res["configs"][c]["final"]["median"])
        for cfg in res["configs"].values():
            assert [r["seed"] for r in cfg["runs"]] == list(range(SEEDS))
    for key in ("processor", "cpu_count", "torch"):
        assert key in data["machine"]
    assert data["wall_s"] >= 0


def test_curves_monotone_and_budget_respected(report: tuple[dict, Path]) -> None:
    data, _ = report
    checkpoints = data["budget"]["checkpoints"]
    assert data["budget"]["evals"] == EVALS
    assert checkpoints[-1] == EVALS and checkpoints[0] >= K * POP
    assert checkpoints == sorted(checkpoints) and len(checkpoints) > 5
    for res in data["results"]:
        sign = 1.0 if res["direction"] == "minimize" else -1.0
        for cfg in res["configs"].values():
            for run in cfg["runs"]:
                curve = [sign * v for v in run["curve"]]
                assert len(curve) == len(checkpoints)
                assert all(b <= a for a, b in itertools.pairwise(curve)), curve
                assert curve[-1] == sign * run["final"]
                # Never past the budget, and stopped only because one more step would be.
                assert run["evals_used"] <= EVALS < run["evals_used"] + run["evals_per_step"]
                assert run["migrate_calls"] == run["steps"] // INTERVAL
            for name in ("median_curve", "q25_curve", "q75_curve"):
                assert len(cfg[name]) == len(checkpoints)
            assert cfg["q25_curve"][-1] <= cfg["median_curve"][-1] <= cfg["q75_curve"][-1]


def test_same_total_population(report: tuple[dict, Path]) -> None:
    data, _ = report
    for res in data["results"]:
        c = res["configs"]
        assert c["panmictic"]["islands"] == 1
        assert c["panmictic"]["pop_per_island"] == K * POP
        assert c["panmictic"]["spec"]["algorithm"]["pop"] == K * POP
        for name in ("pool", "ring", "isolated"):
            assert (c[name]["islands"], c[name]["pop_per_island"]) == (K, POP)
            assert c[name]["spec"]["islands"] == K
        assert {cfg["total_pop"] for cfg in c.values()} == {K * POP}


def test_isolated_never_migrates(report: tuple[dict, Path]) -> None:
    data, _ = report
    for res in data["results"]:
        c = res["configs"]
        assert c["isolated"]["migration"]["migrants"] == 0
        assert c["panmictic"]["migration"]["migrants"] == 0
        for cfg in (c["isolated"], c["panmictic"]):
            assert all(r["genomes_moved"] == 0 for r in cfg["runs"])
        for name, topology in (("pool", "pool"), ("ring", "ring")):
            assert c[name]["migration"] == {"interval": INTERVAL, "migrants": MIGRANTS,
                                            "topology": topology}
            assert sum(r["genomes_moved"] for r in c[name]["runs"]) > 0


def test_isolated_islands_keep_their_own_genomes(report: tuple[dict, Path]) -> None:
    """Every genome on an isolated island was born there; with migration, some were not."""
    data, _ = report
    for res in data["results"]:
        for name in ("isolated", "panmictic"):
            assert [r["foreign_born"] for r in res["configs"][name]["runs"]] == [0] * SEEDS
    de, = (res for res in data["results"] if res["algorithm"] == "de")
    assert sum(r["genomes_moved"] for r in de["configs"]["pool"]["runs"]) > 0
    # DE keeps a migrant until one of its own trials beats it: some stay foreign-born.
    assert sum(r["foreign_born"] for r in de["configs"]["pool"]["runs"]) > 0


def test_reports_written(report: tuple[dict, Path]) -> None:
    _, out = report
    text = (out / "q.md").read_text()
    assert "| configuration |" in text and "## rastrigin / ga" in text
    assert f"{EVALS:,} evaluations per run" in text
    for name in CONFIGS:
        assert name in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = out / "q.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_defaults_and_explicit_flags(tmp_path: Path) -> None:
    done = run_benchmark("quality", "--quick", "--seeds", "3", "--problems", "rastrigin",
                         "--algorithms", "ga", "--json", str(tmp_path / "q.json"), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    args = json.loads((tmp_path / "q.json").read_text())["args"]
    assert args["seeds"] == 3 and args["evals"] == 2_000  # given wins; --quick's budget
    assert (args["islands"], args["pop"]) == (4, 8)
    # Without --quick, the full run's sizes (shown in --help, from the same table).
    help_text = " ".join(run_benchmark("quality", "--help").stdout.split())
    assert "(200,000)" in help_text and "K, islands (8)" in help_text
    assert "population per island (64)" in help_text
    bad = run_benchmark("quality", "--problems", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr


def test_png_without_matplotlib_names_the_extra(tmp_path: Path) -> None:
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "matplotlib.py").write_text("raise ImportError('hidden by the test')\n")
    done = run_benchmark("quality", "--quick", "--png", str(tmp_path / "q.png"),
                         pythonpath=(hidden,))
    assert done.returncode != 0  # before any run
    assert "pip install 'islandsync[plot]'" in done.stdout + done.stderr
    assert "quality:" not in done.stdout  # no run started
    assert not (tmp_path / "q.png").exists()


def test_real_only_algorithms_are_skipped_on_tokens_by_the_registry_rule(tmp_path: Path) -> None:
    """Every real-only algorithm of the registry (not only DE) is skipped on a token problem,
    with its own settings' reason: `--quick` runs every registered algorithm."""
    out = tmp_path / "q.json"
    done = run_benchmark("quality", "--quick", "--problems", "symbolic_regression",
                         "--algorithms", "ga,cmaes,shade", "--seeds", "1", "--evals", "200",
                         "--json", str(out), timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {(r["problem"], r["algorithm"]) for r in data["results"]} == {
        ("symbolic_regression", "ga")}
    assert [(s["algorithm"], s["reason"].split(";")[0]) for s in data["skipped"]] == [
        ("cmaes", "cmaes works on real genomes only"), ("shade", "shade works on real genomes only")]
