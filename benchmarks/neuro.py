"""Neuroevolution at equal evaluations: islandsync against EvoTorch's SNES and PGPE.

    python benchmarks/neuro.py [--problems digits,cartpole] [--optimisers NAME,...]
        [--seeds 3] [--digits-evals 20000] [--cartpole-evals 3000]
        [--json PATH] [--png PATH] [--quick]

Both problems are islandsync's built-ins at their default params (``digits``: an MLP
64-32-10, D = 2,410, training cross-entropy; ``cartpole``: a policy 4-8-1, D = 49, minus the
mean return of 8 episodes), and every optimiser gets the same torch fitness function, the
problem's ``evaluate``: islandsync through its engine, EvoTorch through its ``Problem`` with
``vectorized=True`` (one call a generation, the whole population as one tensor).

Optimisers (``--optimisers``, default all; islandsync's are named as by ``init
--algorithm``, with their ``TUNED_SETTINGS``, and the row's settings on top):

- ``portfolio-3``: islandsync's default, the named portfolio (cmaes, shade, snes), one
  island each, at its default settings on the problem's default box [-1, 1];
- ``snes-1``: islandsync's ``snes``, one island, at its default settings on [-1, 1]
  (sigma0 = 0.25 of the width = 0.5);
- ``snes-1-sampled``: as ``snes-1`` with ``repaired_z = "sampled"`` (a sample clamped onto
  the box enters the update with the z it was drawn with);
- ``snes-wide-1``, ``snes-wide-4``: ``snes`` on the box [-4, 4] with ``sigma_init`` 1/16
  (sigma0 = 0.5 again, as EvoTorch's), one island and four islands;
- ``pgpe-1``: islandsync's ``pgpe`` (ClipUp), one island on [-1, 1], ``samples`` 100 as
  ``evotorch-pgpe``'s popsize, its other settings at their defaults, which are the same
  rules of thumb as ``evotorch-pgpe``'s settings below;
- ``evotorch-snes``: EvoTorch 0.6's SNES, ``stdev_init`` 0.5, its default popsize
  (4 + 3 ln D) and learning rates, centre drawn uniform in [-1, 1], no bounds;
- ``evotorch-pgpe``: EvoTorch 0.6's PGPE with ClipUp, popsize 100 (symmetric), max speed
  0.15, centre learning rate 0.075 (max speed / 2), radius_init 2.25 (15 x max speed),
  stdev learning rate 0.1 (the ClipUp paper's rules of thumb, not tuned here), centre
  uniform in [-1, 1], no bounds.

Each run stops before the generation that would pass the budget. What a run returns is the
best of everything it evaluated and, for the distribution methods, its final centre(s)
(islandsync's cmaes/snes/pgpe island means, EvoTorch's centre), evaluated once more and
counted.
Reported: digits' training cross-entropy and held-out accuracy of that solution
(``digits_accuracy``); CartPole's mean return on the 8 training episodes, the evaluations
until it first reached 500 on all of them, and its mean return on 100 other episodes (start
states of seed 1000). Medians over ``--seeds`` seeds. Only quality at equal
evaluations is compared: wall times are printed but are not a measurement (see
benchmarks/README.md, "Neuroevolution"). Needs ``pip install 'islandsync[neuro-bench]'``
(EvoTorch) and matplotlib for ``--png``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from islandsync.config import BUILTIN_PROBLEMS, spec_from_flags
from islandsync.search.control import cartpole_returns
from islandsync.search.neuro import digits_accuracy
from islandsync.search.problems import Problem, make_problem
from islandsync.testing.machine import machine_info
from islandsync.worker.engine import Engine

NEED = "pip install 'islandsync[neuro-bench]' (evotorch)"
#: islandsync configurations: (algorithm, islands, box half-width, settings beside the name).
ISLANDSYNC: dict[str, tuple[str, int, float, dict[str, Any]]] = {
    "portfolio-3": ("portfolio", 3, 1.0, {}),
    "snes-1": ("snes", 1, 1.0, {}),
    "snes-1-sampled": ("snes", 1, 1.0, {"repaired_z": "sampled"}),
    "snes-wide-1": ("snes", 1, 4.0, {"sigma_init": 1 / 16}),
    "snes-wide-4": ("snes", 4, 4.0, {"sigma_init": 1 / 16}),
    # EvoTorch's PGPE row's settings: popsize 100; the rest are pgpe's defaults (ClipUp's
    # rules of thumb: max speed 0.15 on [-1, 1], centre rate 0.075, radius 2.25, ...).
    "pgpe-1": ("pgpe", 1, 1.0, {"samples": 100}),
}
EVOTORCH = ("evotorch-snes", "evotorch-pgpe")
OPTIMISERS = (*ISLANDSYNC, *EVOTORCH)
STDEV_INIT = 0.5  # EvoTorch SNES's stdev_init, and the wide snes' sigma0
PGPE_SETTINGS = {"popsize": 100, "max_speed": 0.15}
HELD_OUT_EPISODES, HELD_OUT_SEED = 100, 1000
CURVE_POINTS = 20
DEFAULTS: dict[str, Any] = {"problems": "digits,cartpole", "seeds": 3, "digits_evals": 20_000,
                            "cartpole_evals": 3_000}
QUICK: dict[str, Any] = {"problems": "digits,cartpole", "seeds": 1, "digits_evals": 600,
                         "cartpole_evals": 300}


class Budget:
    """Counts evaluations of one run and keeps its best point (minimised), and the
    best-so-far at evenly spaced evaluation counts for the curve."""

    def __init__(self, problem: Problem, budget: int, target: float | None = None) -> None:
        self.problem, self.budget, self.target = problem, budget, target
        self.evals, self.best, self.best_x = 0, math.inf, None
        self.curve: list[tuple[int, float]] = []
        self.reached: int | None = None  # evaluations when the best first reached target

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # EvoTorch hands a ReadOnlyTensor, a subclass that every op on it would return (and
        # then refuse in-place updates): the same values as a plain tensor.
        x = x.as_subclass(torch.Tensor)
        y = self.problem.evaluate(x)
        self.evals += x.shape[0]
        j = int(torch.argmin(y))
        if float(y[j]) < self.best:
            self.best, self.best_x = float(y[j]), x[j].detach().clone()
        if self.reached is None and self.target is not None and self.best <= self.target:
            self.reached = self.evals
        step = max(1, self.budget // CURVE_POINTS)
        if not self.curve or self.evals // step > self.curve[-1][0] // step:
            self.curve.append((self.evals, self.best))
        return y


def run_islandsync(name: str, problem: Problem, params: dict[str, Any], ev: Budget,
                   seed: int) -> None:
    algorithm, islands, half, settings = ISLANDSYNC[name]
    # Named as by flags: the algorithm's TUNED_SETTINGS, then the row's own settings;
    # float32 genomes, as EvoTorch's runs here (a new run's "auto" is float64 on a CPU).
    spec = spec_from_flags(problem=problem.name, params=params, islands=islands,
                           algorithm=algorithm, algorithm_settings=settings, lower=-half,
                           upper=half, seed=seed, dtype="float32")
    counted = Problem(problem.name, problem.kind, ev, problem.direction, -half, half)
    engine = Engine(spec, counted, torch.device("cpu"))
    engine.add_fresh(list(range(islands)))
    per_step, since = 0, 0
    while ev.evals + per_step <= ev.budget - islands:  # room left for the final means
        before = ev.evals
        engine.step()
        per_step = ev.evals - before
        since += 1
        if since >= spec.migration.interval:
            since = 0
            engine.migrate(None)
    means = [s.state.island["mean"] for s in engine.stacks
             if s.state is not None and s.state.island and "mean" in s.state.island]
    if means:
        ev(torch.cat(means))


def run_evotorch(name: str, problem: Problem, dim: int, ev: Budget, seed: int) -> None:
    try:
        from evotorch import Problem as EvoProblem
        from evotorch.algorithms import PGPE, SNES
    except ImportError:
        raise SystemExit(f"{name} needs EvoTorch: {NEED}") from None
    lo, hi = BUILTIN_PROBLEMS[problem.name].lower, BUILTIN_PROBLEMS[problem.name].upper
    evo = EvoProblem("min", ev, solution_length=dim, initial_bounds=(lo, hi),
                     vectorized=True, seed=seed, dtype=torch.float32)
    if name == "evotorch-snes":
        searcher: Any = SNES(evo, stdev_init=STDEV_INIT)
    else:
        v = PGPE_SETTINGS["max_speed"]
        searcher = PGPE(evo, popsize=PGPE_SETTINGS["popsize"], center_learning_rate=v / 2,
                        stdev_learning_rate=0.1, radius_init=15 * v, optimizer="clipup",
                        optimizer_config={"max_speed": v})
    size = 0
    while ev.evals + size <= ev.budget - 1:  # room for the final centre
        before = ev.evals
        searcher.step()
        size = ev.evals - before
    ev(searcher.status["center"][None].to(torch.float32))


def outcome(problem: str, params: dict[str, Any], x: torch.Tensor) -> dict[str, float]:
    """The returned solution's figures beyond its fitness."""
    x = x[None].to(torch.float32)
    if problem == "digits":
        return {"test_accuracy": float(digits_accuracy(x, params["hidden"])[0])}
    return {"held_out_return": float(cartpole_returns(x, params["hidden"], HELD_OUT_EPISODES,
                                                      params["steps"], HELD_OUT_SEED)[0])}


def run_one(problem_name: str, optimiser: str, budget: int, seed: int) -> dict[str, Any]:
    params = BUILTIN_PROBLEMS[problem_name].resolve({})
    problem = make_problem(problem_name, params)
    dim = BUILTIN_PROBLEMS[problem_name].default_dim(params)
    # CartPole is solved on its training episodes at a return of ``steps`` in each.
    ev = Budget(problem, budget, None if problem_name == "digits" else -float(params["steps"]))
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    if optimiser in ISLANDSYNC:
        run_islandsync(optimiser, problem, params, ev, seed)
    else:
        run_evotorch(optimiser, problem, dim, ev, seed)  # type: ignore[arg-type]
    assert ev.best_x is not None and ev.evals <= budget, (ev.evals, budget)
    record = {"problem": problem_name, "params": params, "dim": dim, "optimiser": optimiser,
              "seed": seed, "budget": budget, "evals": ev.evals, "fitness": ev.best,
              **outcome(problem_name, params, ev.best_x), "curve": ev.curve,
              "wall_s": round(time.perf_counter() - t0, 1)}
    if problem_name == "digits":
        record["train_cross_entropy"] = ev.best
    else:
        record["train_return"] = -ev.best
        record["evals_to_solve"] = ev.reached  # None: not solved within the budget
    return record


def summarise(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over seeds per (problem, optimiser), in the records' order."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["problem"], r["optimiser"]), []).append(r)
    out = []
    for (problem, optimiser), rs in rows.items():
        keys = ("train_cross_entropy", "test_accuracy") if problem == "digits" else \
            ("train_return", "held_out_return")
        extra = {} if problem == "digits" else {
            "solved": sum(r["evals_to_solve"] is not None for r in rs),
            # Unsolved runs count as the budget (an upper bound) in this median.
            "evals_to_solve": statistics.median(r["evals_to_solve"] or r["budget"] for r in rs)}
        out.append({**extra, "problem": problem, "optimiser": optimiser, "seeds": len(rs),
                    "budget": rs[0]["budget"], "evals": statistics.median(r["evals"] for r in rs),
                    **{k: statistics.median(r[k] for r in rs) for k in keys},
                    **{f"{k}_all": [round(r[k], 4) for r in rs] for k in keys}})
    return out


def markdown(summary: list[dict[str, Any]]) -> str:
    lines = []
    for problem in dict.fromkeys(s["problem"] for s in summary):
        rows = [s for s in summary if s["problem"] == problem]
        if problem == "digits":
            lines += [f"digits (D = 2,410), {rows[0]['budget']:,} evaluations, medians "
                      f"over {rows[0]['seeds']} seeds:", "",
                      "| optimiser | training cross-entropy | test accuracy | per seed |",
                      "| --- | --- | --- | --- |"]
            lines += [f"| {s['optimiser']} | {s['train_cross_entropy']:.3f} | "
                      f"{s['test_accuracy']:.3f} | {s['test_accuracy_all']} |" for s in rows]
        else:
            lines += [f"cartpole (D = 49), {rows[0]['budget']:,} evaluations, medians over "
                      f"{rows[0]['seeds']} seeds:", "",
                      "| optimiser | return, 8 training episodes | evaluations to 500 (solved "
                      "runs) | return, 100 other episodes | per seed |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [f"| {s['optimiser']} | {s['train_return']:.1f} | "
                      f"{s['evals_to_solve']:,.0f} ({s['solved']}/{s['seeds']}) | "
                      f"{s['held_out_return']:.1f} | {s['held_out_return_all']} |" for s in rows]
        lines.append("")
    return "\n".join(lines)


def plot(records: list[dict[str, Any]], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no plot: pip install 'islandsync[plot]'")
        return False
    problems = list(dict.fromkeys(r["problem"] for r in records))
    fig, axes = plt.subplots(1, len(problems), figsize=(6 * len(problems), 4.2), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for optimiser in dict.fromkeys(r["optimiser"] for r in records):
            runs = [r["curve"] for r in records
                    if r["problem"] == problem and r["optimiser"] == optimiser]
            if not runs:
                continue
            n = min(len(c) for c in runs)
            xs = [statistics.median(c[i][0] for c in runs) for i in range(n)]
            ys = [statistics.median(c[i][1] for c in runs) for i in range(n)]
            ys = ys if problem == "digits" else [-y for y in ys]
            ax.plot(xs, ys, label=optimiser)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("training cross-entropy (median best so far)" if problem == "digits"
                      else "mean return, training episodes (median best so far)")
        if problem == "digits":
            ax.set_yscale("log")
        ax.set_title(problem)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--problems", help=f"comma list (default {DEFAULTS['problems']})")
    ap.add_argument("--optimisers", default=",".join(OPTIMISERS),
                    help=f"comma list of {', '.join(OPTIMISERS)}")
    ap.add_argument("--seeds", type=int, help=f"seeds 1..N (default {DEFAULTS['seeds']})")
    ap.add_argument("--digits-evals", dest="digits_evals", type=int,
                    help=f"digits' budget (default {DEFAULTS['digits_evals']})")
    ap.add_argument("--cartpole-evals", dest="cartpole_evals", type=int,
                    help=f"cartpole's budget (default {DEFAULTS['cartpole_evals']})")
    ap.add_argument("--json", help="write every record and the summary here")
    ap.add_argument("--png", help="write the median curves here")
    ap.add_argument("--quick", action="store_true", help="tiny budgets, one seed (a smoke run)")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    bad = [o for o in args.optimisers.split(",") if o not in OPTIMISERS]
    bad += [p for p in args.problems.split(",") if p not in ("digits", "cartpole")]
    if bad:
        ap.error(f"unknown {', '.join(bad)}; optimisers: {', '.join(OPTIMISERS)}; problems: "
                 "digits, cartpole")
    return args


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    args = parse_args(argv)
    torch.set_num_threads(1)  # one thread for every optimiser: the machine is shared
    records = []
    for problem in args.problems.split(","):
        budget = args.digits_evals if problem == "digits" else args.cartpole_evals
        for optimiser in args.optimisers.split(","):
            for seed in range(1, args.seeds + 1):
                r = run_one(problem, optimiser, budget, seed)
                records.append(r)
                extra = (f"test accuracy {r['test_accuracy']:.3f}" if problem == "digits"
                         else f"held-out return {r['held_out_return']:.1f}")
                log(f"{problem} {optimiser} seed {seed}: fitness {r['fitness']:.4f} after "
                    f"{r['evals']} evaluations, {extra} ({r['wall_s']} s)")
    summary = summarise(records)
    log(markdown(summary))
    out = {"command": " ".join(["python benchmarks/neuro.py", *(sys.argv[1:] if argv is None
                                                                 else argv)]),
           "records": records, "summary": summary, "args": vars(args),
           "machine": machine_info("torch", "evotorch", torch_threads=torch.get_num_threads())}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    if args.png and plot(records, args.png):
        log(f"plot: {args.png}")
    return out


if __name__ == "__main__":
    main()
