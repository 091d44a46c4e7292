"""Search quality: does the island model pay off?

    python benchmarks/quality.py [--problems rastrigin,schwefel,rosenbrock,symbolic_regression]
        [--algorithms ga,de] [--seeds 10] [--islands 8] [--pop 64] [--dim 100]
        [--evals 200000] [--migration-interval 20] [--migrants 2]
        [--json PATH] [--png PATH] [--markdown PATH] [--quick]

Best fitness against evaluations for four configurations with the same total population
(islands x pop) and the same evaluation budget:

- ``pool``: K islands with migration, topology pool (each island takes the best of all others);
- ``ring``: K islands with migration, topology ring (island i takes from island i-1);
- ``isolated``: K islands, migrants 0: ``Engine.migrate`` is still called every interval, as
  the worker calls it, and moves nothing;
- ``panmictic``: one island of K x pop.

Every run goes in-process through :class:`islandsync.worker.engine.Engine` on the CPU, driven the
way ``islandsync.worker.worker.Worker._loop`` drives it: ``step()``, and after every
``migration.interval`` steps ``migrate(foreign)`` (None here: there is no coordinator, so the
only migrants are the other local islands' elites). The initial populations count towards
the budget. A run stops before the step that would take it past the budget, so no run uses
more evaluations than the budget; best-so-far (in the problem's own direction) is read after
every step and sampled at 20 checkpoints of the budget.

The same seed gives pool, ring and isolated the same initial islands, so they differ only
from the first migration on. DE is skipped on token genomes (symbolic regression): DE works
on real vectors only.

``--quick`` picks tiny sizes for a smoke run (a few seconds); flags given explicitly win.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from islandsync.config import ALGORITHM_CONFIGS, BUILTIN_PROBLEMS, RunSpec, spec_from_flags
from islandsync.search.problems import Problem, make_problem
from islandsync.testing.machine import machine_info as machine
from islandsync.worker.engine import Engine

CONFIGS = ("pool", "ring", "isolated", "panmictic")
PROBLEMS = ("rastrigin", "schwefel", "rosenbrock", "symbolic_regression")
ALGORITHMS = tuple(ALGORITHM_CONFIGS)
CHECKPOINTS = 20
HIT_TOL = 1e-10  # "optimum hit": best within this of the known optimum (float32 rounding)

# Defaults: the full run (4 problems x 2 algorithms - DE on symbolic regression, x 4
# configurations x 10 seeds = 280 runs) took 718 s on 2 shared vCPUs (AMD EPYC, one torch
# thread) with an evaluation budget of 200,000 per run: within ~15 minutes with some margin
# for a busier machine (see benchmarks/README.md, "Quality").
DEFAULTS: dict[str, Any] = {"seeds": 10, "islands": 8, "pop": 64, "dim": 100, "evals": 200_000,
                            "migration_interval": 20, "migrants": 2}
QUICK: dict[str, Any] = {"seeds": 2, "islands": 4, "pop": 8, "dim": 10, "evals": 2_000,
                         "migration_interval": 5, "migrants": 2}

PLOT_HINT = "pip install 'islandsync[plot]'"


# ---------------------------------------------------------------------------- one run


def make_spec(problem: str, algorithm: str, config: str, *, islands: int, pop: int, dim: int,
              evals: int, migration_interval: int, migrants: int, seed: int) -> RunSpec:
    """The run spec of one configuration: same total population ``islands * pop`` for all."""
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; expected one of {CONFIGS}")
    shape = {"dim": dim} if BUILTIN_PROBLEMS[problem].kind == "real" else {}
    if config == "panmictic":
        # One island: nothing to exchange with, so migrants 0 says so in the record.
        layout = {"islands": 1, "pop": islands * pop, "migrants": 0, "topology": "pool"}
    elif config == "isolated":
        layout = {"islands": islands, "pop": pop, "migrants": 0, "topology": "pool"}
    else:
        layout = {"islands": islands, "pop": pop, "migrants": migrants, "topology": config}
    return spec_from_flags(problem=problem, algorithm=algorithm, max_evals=evals,
                           migration_interval=migration_interval, seed=seed, **shape, **layout)


def checkpoints_for(budget: int, initial: int, n: int = CHECKPOINTS) -> list[int]:
    """``n`` evenly spaced evaluation counts up to ``budget``; none below ``initial`` (the
    evaluations of the first populations, the same for every configuration)."""
    return sorted({max(initial, round(budget * j / n)) for j in range(1, n + 1)})


def run_one(spec: RunSpec, problem: Problem, budget: int,
            checkpoints: list[int]) -> tuple[dict[str, Any], Engine]:
    """Evolve ``spec`` until the next step would pass ``budget`` evaluations. Returns the
    record (curve of best-so-far at ``checkpoints``, in the problem's own direction) and the
    engine, for inspection."""
    t0 = time.perf_counter()
    engine = Engine(spec, problem, torch.device("cpu"))
    engine.add_fresh(list(range(spec.islands)))
    assert engine.state is not None
    total = sum(engine.evals.values())
    if total > budget:
        raise ValueError(f"budget {budget} is below the {total} evaluations of the first "
                         f"populations ({spec.islands} x {spec.algorithm.pop})")
    best = float(engine.state.scores.min())  # minimisation score
    trace = [(total, best)]
    since_migration, migrations, moved, steps, made = 0, 0, 0, 0, 0
    while total + made <= budget:  # made: the previous step's evaluations (constant per run)
        made = engine.step()
        steps += 1
        total += made
        # As islandsync.worker.worker.Worker._loop: count steps, migrate every interval.
        since_migration += 1
        if since_migration >= spec.migration.interval:
            since_migration = 0
            moved += engine.migrate(None)
            migrations += 1
        best = min(best, float(engine.state.scores.min()))
        trace.append((total, best))
        if made == 0:  # pragma: no cover - an engine with islands always evaluates
            break
    assert total == sum(engine.evals.values())
    sign = 1.0 if spec.problem.direction == "minimize" else -1.0  # scores are minimised
    # Sample the best-so-far trace (non-increasing) at the checkpoints.
    curve, j = [], 0
    for c in checkpoints:
        while j + 1 < len(trace) and trace[j + 1][0] <= c:
            j += 1
        curve.append(trace[j][1] * sign)
    record = {
        "seed": spec.seed,
        "evals_used": total,
        "evals_per_step": made,
        "steps": steps,
        "migrate_calls": migrations,
        "genomes_moved": moved,
        # Genomes at the end not born on the island that holds them (migrants that stayed).
        "foreign_born": sum(int((st.state.origin != st.island_ids[:, None]).sum())
                            for st in engine.stacks),
        "final": trace[-1][1] * sign,
        "curve": curve,
        "wall_s": round(time.perf_counter() - t0, 4),
    }
    return record, engine


# ---------------------------------------------------------------------------- statistics


def quantile(values: list[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default), without numpy's NaN surprises."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rank_sum_p(a: list[float], b: list[float]) -> float:
    """Two-sided Mann-Whitney U p-value, normal approximation with tie correction and
    continuity correction. Rough for 10 vs 10, good enough to flag a coin toss."""
    n1, n2 = len(a), len(b)
    if not n1 or not n2:
        return math.nan
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    r1 = sum(r for r, (_, g) in zip(ranks, pooled) if g == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    var = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if var <= 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(var)
    return min(1.0, math.erfc(max(z, 0.0) / math.sqrt(2)))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    finals = [r["final"] for r in runs]
    curves = list(zip(*(r["curve"] for r in runs)))
    return {
        "final": {"median": quantile(finals, 0.5), "q25": quantile(finals, 0.25),
                  "q75": quantile(finals, 0.75), "min": min(finals), "max": max(finals)},
        "median_curve": [quantile(list(c), 0.5) for c in curves],
        "q25_curve": [quantile(list(c), 0.25) for c in curves],
        "q75_curve": [quantile(list(c), 0.75) for c in curves],
    }


# ---------------------------------------------------------------------------- the benchmark


def machine_info() -> dict[str, Any]:
    return machine("torch", torch_threads=torch.get_num_threads(), device="cpu")


def run_benchmark(args: argparse.Namespace, log: Any = None) -> dict[str, Any]:
    log = log or (lambda line: print(line, flush=True))
    started = time.perf_counter()
    pairs = [(p, a) for p in args.problems for a in args.algorithms]
    # What an algorithm's settings refuse for a problem's genome (the real-only ones on
    # tokens), from the registry's own rule, not a list here.
    refused = {(p, a): why for p, a in pairs
               for _, why in ALGORITHM_CONFIGS[a]().genome_conflicts(BUILTIN_PROBLEMS[p].kind)[:1]}
    todo = [pair for pair in pairs if pair not in refused]
    skipped = [{"problem": p, "algorithm": a, "reason": why} for (p, a), why in refused.items()]
    initial = args.islands * args.pop
    checkpoints = checkpoints_for(args.evals, initial)
    total_runs = len(todo) * len(CONFIGS) * args.seeds
    done_runs = 0
    log(f"quality: {len(todo)} problem x algorithm pairs x {len(CONFIGS)} configurations x "
        f"{args.seeds} seeds = {total_runs} runs; budget {args.evals:,} evaluations per run, "
        f"total population {args.islands} x {args.pop} = {initial}")
    results = []
    for problem_name, algorithm in todo:
        # As the worker builds it: the spec's params (none here), so the problem's defaults.
        problem = make_problem(problem_name, {})
        params = dict(BUILTIN_PROBLEMS[problem_name].params)  # recorded for the reader
        configs: dict[str, Any] = {}
        for config in CONFIGS:
            t0 = time.perf_counter()
            runs, spec = [], None
            for seed in range(args.seeds):
                spec = make_spec(problem_name, algorithm, config, islands=args.islands,
                                 pop=args.pop, dim=args.dim, evals=args.evals,
                                 migration_interval=args.migration_interval,
                                 migrants=args.migrants, seed=seed)
                record, _ = run_one(spec, problem, args.evals, checkpoints)
                runs.append(record)
                done_runs += 1
            assert spec is not None
            summary = summarise(runs)
            configs[config] = {
                "islands": spec.islands,
                "pop_per_island": spec.algorithm.pop,
                "total_pop": spec.islands * spec.algorithm.pop,
                "migration": spec.migration.model_dump(mode="json"),
                "spec": spec.model_dump(mode="json", exclude={"seed"}),
                "runs": runs,
                **summary,
            }
            elapsed = time.perf_counter() - started
            eta = elapsed / done_runs * (total_runs - done_runs)
            f = summary["final"]
            log(f"  {problem_name:<19} {algorithm} {config:<9} median {f['median']:.6g} "
                f"[{f['q25']:.4g}, {f['q75']:.4g}]  {time.perf_counter() - t0:6.1f} s  "
                f"({done_runs}/{total_runs} runs, elapsed {elapsed:5.0f} s, ETA {eta:5.0f} s)")
        direction = problem.direction
        pick = min if direction == "minimize" else max
        winner = pick(CONFIGS, key=lambda c: configs[c]["final"]["median"])
        for c in CONFIGS:
            configs[c]["p_vs_winner"] = (None if c == winner else rank_sum_p(
                [r["final"] for r in configs[c]["runs"]],
                [r["final"] for r in configs[winner]["runs"]]))
        results.append({"problem": problem_name, "algorithm": algorithm,
                         "direction": direction, "optimum": problem.optimum, "params": params,
                         "genome": configs[CONFIGS[0]]["spec"]["problem"]["genome"],
                         "winner": winner, "configs": configs})
    wall = time.perf_counter() - started
    return {
        "benchmark": "quality",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "wall_s": round(wall, 1),
        "args": {k: v for k, v in vars(args).items() if k not in ("json", "png", "markdown")},
        "budget": {"evals": args.evals, "initial_evals": initial, "checkpoints": checkpoints},
        "configurations": list(CONFIGS),
        "results": results,
        "skipped": skipped,
    }


# ---------------------------------------------------------------------------- reports


def _num(x: float) -> str:
    if x is None or not math.isfinite(x):
        return str(x)
    return f"{x:.4g}" if abs(x) < 1e5 else f"{x:.4e}"


def markdown(data: dict[str, Any]) -> str:
    m, a = data["machine"], data["args"]
    lines = [
        "# Quality: islands with migration vs isolated islands vs one panmictic population",
        "",
        (f"Budget: **{data['budget']['evals']:,} evaluations per run** (initial populations "
        f"included), total population {a['islands']} islands x {a['pop']} = "
        f"{a['islands'] * a['pop']} in every configuration (panmictic: 1 x "
        f"{a['islands'] * a['pop']}); real problems in {a['dim']} dimensions; migration every "
        f"{a['migration_interval']} generations, {a['migrants']} migrants per island; "
        f"{a['seeds']} seeds."),
        "",
        (f"Machine: {m['processor']} ({m['machine']}), {m['cpu_count']} CPUs, torch "
        f"{m['torch']} (torch threads: {m['torch_threads']}), Python {m['python']}. "
        f"Wall time: {data['wall_s']:.0f} s. Date: {data['date']}."),
        "",
        ("Numbers are the best objective value found within the budget (all these problems "
        "minimise: lower is better; optimum 0), over the seeds: median and interquartile range "
        f"(25th-75th percentile). Optimum hit: runs whose best is within {HIT_TOL:g} of the "
        "known optimum. "
        "Migrants moved: genomes `Engine.migrate` actually moved per run, of the slots "
        "offered (migrations x islands x migrants). p: two-sided Mann-Whitney U test of that "
        "configuration's final values against the winner's (normal approximation)."),
        "",
    ]
    for res in data["results"]:
        lines += [f"## {res['problem']} / {res['algorithm']}", "",
                  ("| configuration | layout | median final best | IQR (25th-75th) | "
                   "optimum hit | migrants moved | p vs winner |"),
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for c in data["configurations"]:
            cfg = res["configs"][c]
            f = cfg["final"]
            mig = cfg["migration"]
            layout = f"{cfg['islands']} x {cfg['pop_per_island']}"
            if cfg["islands"] > 1:
                layout += (f", {mig['migrants']} migrants / {mig['interval']} gen "
                           f"({mig['topology']})" if mig["migrants"] else ", no migration")
            p = cfg.get("p_vs_winner")
            name = f"**{c}**" if c == res["winner"] else c
            runs = cfg["runs"]
            opt = res.get("optimum")
            hits = "-" if opt is None else \
                f"{sum(abs(r['final'] - opt) <= HIT_TOL for r in runs)}/{len(runs)}"
            slots = runs[0]["migrate_calls"] * cfg["islands"] * mig["migrants"]
            moved = statistics.mean(r["genomes_moved"] for r in runs)
            lines.append(f"| {name} | {layout} | {_num(f['median'])} | "
                         f"{_num(f['q25'])} - {_num(f['q75'])} | {hits} | "
                         f"{moved:.0f} / {slots} | {'winner' if p is None else f'{p:.2g}'} |")
        lines += ["", f"Winner: **{res['winner']}** (lowest median).", ""]
    for s in data["skipped"]:
        lines += [f"Skipped {s['problem']} / {s['algorithm']}: {s['reason']}.", ""]
    algs = list(dict.fromkeys(r["algorithm"] for r in data["results"]))
    lines += ["## Winners", "",
              ("Lowest median final best; next: the runner-up and the p of its difference "
               "from the winner (above 0.05: not a clear win at this many seeds)."), "",
              "| problem | " + " | ".join(algs) + " |"]
    lines.append("| --- |" + " --- |" * len(algs))
    for prob in dict.fromkeys(r["problem"] for r in data["results"]):
        row = []
        for alg in algs:
            hit = [r for r in data["results"] if r["problem"] == prob and r["algorithm"] == alg]
            row.append(_winner_cell(hit[0]) if hit else "-")
        lines.append(f"| {prob} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _winner_cell(res: dict[str, Any]) -> str:
    """``pool (next: panmictic, p 0.16)``: the winner, the runner-up and how sure we are."""
    winner = res["winner"]
    rest = [c for c in res["configs"] if c != winner]
    sign = 1.0 if res["direction"] == "minimize" else -1.0
    nxt = min(rest, key=lambda c: sign * res["configs"][c]["final"]["median"])
    return f"{winner} (next: {nxt}, p {res['configs'][nxt]['p_vs_winner']:.2g})"


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise SystemExit(f"--png needs matplotlib: {PLOT_HINT}") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(data: dict[str, Any], path: str | os.PathLike[str]) -> None:
    plt = _pyplot()
    from matplotlib import ticker
    problems = list(dict.fromkeys(r["problem"] for r in data["results"]))
    algs = list(dict.fromkeys(r["algorithm"] for r in data["results"]))
    fig, axes = plt.subplots(len(problems), len(algs), squeeze=False,
                             figsize=(5.5 * len(algs), 3.6 * len(problems)))
    x = data["budget"]["checkpoints"]
    colours = {"pool": "tab:blue", "ring": "tab:green", "isolated": "tab:orange",
               "panmictic": "tab:red"}
    for i, prob in enumerate(problems):
        for j, alg in enumerate(algs):
            ax = axes[i][j]
            hit = [r for r in data["results"] if r["problem"] == prob and r["algorithm"] == alg]
            if not hit:
                ax.text(0.5, 0.5, f"{alg} on {prob}: skipped\n(de needs real genomes)",
                        ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            res = hit[0]
            values = []
            for c in data["configurations"]:
                cfg = res["configs"][c]
                ax.plot(x, cfg["median_curve"], label=c, color=colours.get(c))
                ax.fill_between(x, cfg["q25_curve"], cfg["q75_curve"], alpha=0.2,
                                color=colours.get(c))
                values += cfg["q25_curve"] + cfg["q75_curve"]
            if values and all(v > 0 and math.isfinite(v) for v in values):
                ax.set_yscale("log")
            ax.set_title(f"{prob} / {alg} (winner: {res['winner']})")
            ax.set_xlabel("evaluations")
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(
                lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
            ax.set_ylabel("best so far (median, IQR)")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(f"islandsync quality: {data['args']['islands']} x {data['args']['pop']} vs "
                 f"1 x {data['args']['islands'] * data['args']['pop']}, "
                 f"{data['args']['seeds']} seeds, {data['budget']['evals']:,} evaluations")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- command line


def _names(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        names = [t.strip() for t in text.split(",") if t.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{','.join(bad) or text!r}: choose from "
                                             f"{','.join(allowed)}")
        return names
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--problems", type=_names(PROBLEMS), default=list(PROBLEMS))
    p.add_argument("--algorithms", type=_names(ALGORITHMS), default=list(ALGORITHMS))
    p.add_argument("--seeds", type=int, help=f"seeds per configuration ({DEFAULTS['seeds']})")
    p.add_argument("--islands", type=int, help=f"K, islands ({DEFAULTS['islands']})")
    p.add_argument("--pop", type=int, help=f"population per island ({DEFAULTS['pop']})")
    p.add_argument("--dim", type=int, help=f"dimension of the real problems ({DEFAULTS['dim']})")
    p.add_argument("--evals", type=int,
                   help=f"evaluation budget per run ({DEFAULTS['evals']:,})")
    p.add_argument("--migration-interval", dest="migration_interval", type=int,
                   help=f"generations between migrations ({DEFAULTS['migration_interval']})")
    p.add_argument("--migrants", type=int,
                   help=f"migrants per island and migration ({DEFAULTS['migrants']})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1: the tensors are small, and one thread "
                        "keeps its speed on a shared machine where two spin on each other)")
    p.add_argument("--json", help="write every curve here")
    p.add_argument("--png", help=f"plot here (needs matplotlib: {PLOT_HINT})")
    p.add_argument("--markdown", help="write the tables here")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke run: " + ", ".join(
                       f"{k}={v}" for k, v in QUICK.items()))
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("seeds", "islands", "pop", "dim", "evals", "migration_interval", "threads"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.islands < 2:
        p.error("--islands must be >= 2 (one island is the panmictic configuration)")
    if args.evals < args.islands * args.pop:
        p.error(f"--evals {args.evals} is below the {args.islands * args.pop} evaluations of "
                f"the first populations")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.png:
        _pyplot()  # fail now, not after the whole run
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        data = run_benchmark(args)
    finally:
        torch.set_num_threads(threads)  # main() may run inside a test session
    text = markdown(data)
    print()
    print(text)
    print(f"wall time {data['wall_s']:.0f} s; budget {args.evals:,} evaluations per run")
    for path, content in ((args.json, json.dumps(data, indent=1) + "\n"),
                          (args.markdown, text)):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
    if args.png:
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        plot(data, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
