"""benchmarks/quality.py: a tiny run end to end, and the isolated islands really isolated."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch

from .conftest import load_benchmark

K, POP, EVALS, INTERVAL, MIGRANTS, SEEDS = 3, 6, 600, 3, 2, 2


quality = load_benchmark("quality")


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
    assert quality.main(argv) == 0
    return json.loads((out / "q.json").read_text()), out


def test_every_configuration_present(report: tuple[dict, Path]) -> None:
    data, _ = report
    pairs = {(r["problem"], r["algorithm"]) for r in data["results"]}
    assert pairs == {("rastrigin", "ga"), ("rastrigin", "de"), ("symbolic_regression", "ga")}
    assert data["skipped"] == [{"problem": "symbolic_regression", "algorithm": "de",
                                "reason": "de works on real genomes only"}]
    for res in data["results"]:
        assert set(res["configs"]) == set(quality.CONFIGS)
        assert res["direction"] == "minimize"
        assert res["winner"] == min(quality.CONFIGS,
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


def test_isolated_islands_keep_their_own_genomes() -> None:
    """Every genome on an isolated island was born there; with migration, some were not."""
    problem = quality.make_problem("rastrigin")
    kwargs = {"islands": K, "pop": POP, "dim": 5, "evals": EVALS,
              "migration_interval": INTERVAL, "migrants": MIGRANTS, "seed": 0}
    checkpoints = quality.checkpoints_for(EVALS, K * POP)
    _, iso = quality.run_one(quality.make_spec("rastrigin", "ga", "isolated", **kwargs),
                             problem, EVALS, checkpoints)
    assert torch.equal(iso.state.origin, iso.stacks[0].island_ids[:, None].expand_as(iso.state.origin))
    record, pool = quality.run_one(quality.make_spec("rastrigin", "de", "pool", **kwargs),
                                   problem, EVALS, checkpoints)
    assert record["genomes_moved"] > 0
    # DE keeps a migrant until one of its own trials beats it: some stay foreign-born.
    assert bool((pool.state.origin != pool.stacks[0].island_ids[:, None]).any())


def test_reports_written(report: tuple[dict, Path]) -> None:
    _, out = report
    text = (out / "q.md").read_text()
    assert "| configuration |" in text and "## rastrigin / ga" in text
    assert f"{EVALS:,} evaluations per run" in text
    for name in quality.CONFIGS:
        assert name in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    png = out / "q.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_defaults_and_explicit_flags() -> None:
    args = quality.parse_args(["--quick", "--seeds", "3"])
    assert args.seeds == 3 and args.evals == quality.QUICK["evals"]
    args = quality.parse_args([])
    assert args.evals == quality.DEFAULTS["evals"] and args.islands == 8 and args.pop == 64
    with pytest.raises(SystemExit):
        quality.parse_args(["--problems", "nope"])


def test_png_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(SystemExit, match=r"pip install 'islandsync\[plot\]'"):
        quality.main(["--quick", "--png", str(tmp_path / "q.png")])  # before any run
    assert not (tmp_path / "q.png").exists()
