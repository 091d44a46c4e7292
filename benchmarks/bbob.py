"""BBOB (COCO's noiseless suite, through ``cocoex``): which configuration should be the default?

    python benchmarks/bbob.py [--dims 10,40] [--functions 1-24] [--instances 1-5]
        [--budget-factor 10000] [--optimisers pygmo-sade,cma-ipop,ga,de,cmaes,shade,snes]
        [--islands 8] [--pop 64] [--seed 1] [--coco-out DIR]
        [--json PATH] [--png PATH] [--markdown PATH] [--quick]

Every optimiser gets the same budget of ``budget-factor x D`` evaluations on each (function,
dimension, instance) of the suite (``--budget-factor 100000`` is the issue's longer budget):

- each islandsync algorithm alone, and each named portfolio (``portfolio``: cmaes, shade and
  snes islands in turn), and the :data:`VARIANTS` (``cmaes-bipop``, ``portfolio-bipop``: their
  cmaes islands with BIPOP restarts): ``islands x pop`` (8 x 64) in one process through
  :class:`islandsync.worker.engine.Engine` on the CPU, driven as ``benchmarks/quality.py``
  drives it (``step()``, ``migrate(None)`` every ``migration.interval`` steps), with the
  defaults of ``islandsync init`` otherwise (bounds [-5, 5], BBOB's domain; ``--dtype auto``,
  the default: float64 genomes on this CPU, as a CPU worker runs them);
- ``pygmo-sade``: pygmo's archipelago of ``islands`` sade islands of ``pop`` with a ring
  topology, evolved in chunks of :data:`SADE_CHUNK` generations (migration between chunks);
  ``memory=True`` so that sade's adapted F and CR survive the chunks, ``ftol = xtol = 0``.
  Its islands run in this process (:class:`InProcessIsland`): BBOB's functions are not
  picklable, and one process is what every other optimiser here gets;
- ``cma-ipop``: pycma's IPOP-CMA-ES (``cma.fmin2``, ``restarts=9``, ``incpopsize=2``), x0
  uniform in [-4, 4]^D per restart, sigma0 = 2, no bounds (COCO's own example setup).

A run stops at its budget or once it has reached the final target f - f_opt < 1e-8
(COCO's convention), whichever comes first; so a precision below 1e-8 counts as 1e-8
("solved"). The precision is the best f - f_opt of all evaluations of the run, computed in
float64 by this script from cocoex's values. The islandsync engine scores in float32: it is
given f - f_opt (a constant shift: no algorithm here depends on it) so that scores keep
their resolution down to the target.

Per function group (separable f1-5, moderate f6-9, ill-conditioned f10-14, multimodal
f15-19, weak structure f20-24) it prints the median precision over the group's (function,
instance) pairs and the fraction of pairs solved. ``--coco-out DIR`` also writes COCO's
own data (cocoex's ``bbob`` observer, one folder per optimiser, under cocoex's ``exdata/``)
for cocopp.

``--quick`` picks tiny sizes for a smoke run (three functions, D = 5, one instance, small
islands); flags given explicitly win. Needs ``pip install 'islandsync[bbob]'`` (cocoex,
pygmo, cma); matplotlib for the plot.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from islandsync.config import ALGORITHM_CONFIGS, PORTFOLIOS, genome_dtype, spec_from_flags
from islandsync.config.algorithms import expand_portfolio
from islandsync.search.problems import make_problem
from islandsync.testing.machine import machine_info as machine
from islandsync.worker.engine import Engine

TARGET = 1e-8  # COCO's final target precision
GROUPS = {"separable": range(1, 6), "moderate": range(6, 10), "ill-conditioned": range(10, 15),
          "multimodal": range(15, 20), "weak-structure": range(20, 25)}
PEERS = ("pygmo-sade", "cma-ipop")
#: Variants beside the registry's names: an algorithm or named portfolio whose cmaes
#: entries get these settings (BIPOP restarts, issue 20).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cmaes-bipop": ("cmaes", {"restart_mode": "bipop"}),
    "portfolio-bipop": ("portfolio", {"restart_mode": "bipop"})}
OPTIMISERS = PEERS + tuple(ALGORITHM_CONFIGS) + tuple(PORTFOLIOS) + tuple(VARIANTS)
SADE_CHUNK = 20  # generations per archipelago.evolve call (the engine's default interval)
DEFAULTS: dict[str, Any] = {"dims": "10,40", "functions": "1-24", "instances": "1-5",
                            "budget_factor": 10_000, "islands": 8, "pop": 64}
QUICK: dict[str, Any] = {"dims": "5", "functions": "1,10,15", "instances": "1",
                         "budget_factor": 400, "islands": 4, "pop": 16}
NEED = "pip install 'islandsync[bbob]' (cocoex, pygmo, cma)"


def int_list(text: str) -> list[int]:
    """``"1-5,8"`` -> [1, 2, 3, 4, 5, 8]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += range(int(lo), int(hi or lo) + 1)
    return out


# ---------------------------------------------------------------------------- the problem


class BudgetSpent(Exception):
    """Raised by a strict :class:`Evaluator` asked for one evaluation past its budget."""


class Evaluator:
    """One BBOB problem instance: counts evaluations, keeps the best precision in float64.

    ``shift`` is f_opt: every optimiser is handed f - f_opt (see the module docstring)."""

    def __init__(self, problem: Any, f_opt: float, budget: int) -> None:
        self.problem, self.f_opt, self.budget = problem, f_opt, budget
        self.evals, self.best = 0, math.inf
        self.strict = False  # raise BudgetSpent rather than evaluate past the budget

    def __call__(self, x: np.ndarray) -> float:
        if self.strict and self.evals >= self.budget:
            raise BudgetSpent
        value = float(self.problem(np.asarray(x, dtype=np.float64))) - self.f_opt
        self.evals += 1
        self.best = min(self.best, value)
        return value

    def batch(self, xs: np.ndarray) -> np.ndarray:
        return np.array([self(x) for x in xs], dtype=np.float64)

    @property
    def done(self) -> bool:
        return self.best < TARGET or self.evals >= self.budget


def optimum_value(suite: Any, function: int, dim: int, instance: int) -> float:
    """f_opt of one instance: cocoex writes x_opt to a file in the current folder only."""
    problem = suite.get_problem_by_function_dimension_instance(function, dim, instance)
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        problem._best_parameter("print")
        x_opt = np.atleast_1d(np.loadtxt("._bbob_problem_best_parameter.txt"))
    value = float(problem(x_opt))
    problem.free()
    return value


# ---------------------------------------------------------------------------- optimisers


def run_islandsync(algorithm: str, ev: Evaluator, dim: int, islands: int, pop: int,
                   seed: int, dtype: str) -> None:
    def fitness(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(ev.batch(x.double().numpy())).to(x.dtype)

    base, cmaes = VARIANTS.get(algorithm, (algorithm, {}))
    named: str | list[dict[str, Any]] = base
    settings = None
    if base in PORTFOLIOS and cmaes:  # only the portfolio's cmaes tables take them
        named = [{**e, **cmaes} if e["name"] == "cmaes" else e for e in expand_portfolio(base)]
    elif cmaes:
        settings = cmaes
    spec = spec_from_flags(problem="custom", fitness=fitness, dim=dim, lower=-5.0, upper=5.0,
                           islands=islands, pop=pop, algorithm=named, seed=seed,
                           max_evals=ev.budget, dtype=dtype, algorithm_settings=settings)
    problem = make_problem("custom", {"lower": -5.0, "upper": 5.0}, fitness=fitness)
    engine = Engine(spec, problem, torch.device("cpu"))
    engine.add_fresh(list(range(islands)))
    since_migration, made = 0, 0
    # As benchmarks/quality.py: stop before the step that would pass the budget.
    while not ev.done and ev.evals + made <= ev.budget:
        made = engine.step()
        since_migration += 1
        if since_migration >= spec.migration.interval:
            since_migration = 0
            engine.migrate(None)


class BBOBProblem:
    """pygmo's user-defined problem over an :class:`Evaluator`. pygmo deep-copies a problem
    into every island; the copies share the one evaluator (one count, one best)."""

    def __init__(self, ev: Evaluator, dim: int) -> None:
        self.ev, self.dim = ev, dim

    def __deepcopy__(self, memo: dict) -> BBOBProblem:
        return BBOBProblem(self.ev, self.dim)

    def fitness(self, x: np.ndarray) -> list[float]:
        return [self.ev(x)]

    def get_bounds(self) -> tuple[list[float], list[float]]:
        return [-5.0] * self.dim, [5.0] * self.dim


class InProcessIsland:
    """A pygmo island that evolves in the archipelago's own thread, under the GIL: serial,
    in this process, with no pickling of the problem."""

    def run_evolve(self, algo: Any, pop: Any) -> tuple[Any, Any]:
        return algo, algo.evolve(pop)

    def get_name(self) -> str:
        return "in-process island"


def run_pygmo_sade(ev: Evaluator, dim: int, islands: int, pop: int, seed: int) -> None:
    import pygmo as pg

    prob = pg.problem(BBOBProblem(ev, dim))
    per_step = islands * pop  # one generation of every island
    chunk = SADE_CHUNK
    # ftol = xtol = 0: sade's own early exit (population spread below 1e-6) would end each
    # chunk early and throttle it near the optimum; every other optimiser here runs to the
    # budget or the 1e-8 target.
    def sade(gen: int) -> Any:
        return pg.algorithm(pg.sade(gen=gen, memory=True, ftol=0.0, xtol=0.0, seed=seed))

    archi = pg.archipelago(n=islands, t=pg.topology(pg.ring()), udi=InProcessIsland(),
                           algo=sade(chunk), prob=prob, pop_size=pop, seed=seed)
    while not ev.done:
        left = (ev.budget - ev.evals) // per_step
        if left <= 0:
            break
        if left < chunk:  # the last, shorter chunk: exactly to the budget
            chunk = left
            for island in archi:
                island.set_algorithm(sade(chunk))
        archi.evolve(1)
        archi.wait_check()


def run_cma_ipop(ev: Evaluator, dim: int, seed: int) -> None:
    import cma

    rng = np.random.default_rng(seed)
    opts = {"maxfevals": ev.budget, "ftarget": TARGET, "verbose": -9, "seed": seed,
            "verb_log": 0, "verb_disp": 0}
    ev.strict = True  # pycma's maxfevals counts per restart, not for the whole run
    with contextlib.suppress(BudgetSpent):
        cma.fmin2(ev, lambda: rng.uniform(-4, 4, dim), 2.0, opts, restarts=9,
                  incpopsize=2)


def run_optimiser(name: str, ev: Evaluator, dim: int, args: argparse.Namespace) -> None:
    if name == "pygmo-sade":
        run_pygmo_sade(ev, dim, args.islands, args.pop, args.seed)
    elif name == "cma-ipop":
        run_cma_ipop(ev, dim, args.seed)
    else:
        run_islandsync(name, ev, dim, args.islands, args.pop, args.seed, args.dtype)


# ---------------------------------------------------------------------------- the suite


def median(values: list[float]) -> float:
    xs = sorted(values)
    if not xs:
        return math.nan
    mid = len(xs) // 2
    return xs[mid] if len(xs) % 2 else math.sqrt(xs[mid - 1] * xs[mid])  # geometric middle


def group_of(function: int) -> str:
    return next(g for g, fs in GROUPS.items() if function in fs)


def run_suite(args: argparse.Namespace, log: Callable[[str], None],
              save: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Every optimiser on every (dimension, function, instance); ``save`` gets the records
    after each, so that a run cut short keeps what it measured."""
    import cocoex

    dims, functions, instances = (int_list(args.dims), int_list(args.functions),
                                  int_list(args.instances))
    suite = cocoex.Suite("bbob", "", f"dimensions:{','.join(map(str, dims))} "
                         f"instance_indices:{min(instances)}-{max(instances)}")
    observers = {}
    if args.coco_out:
        for name in args.optimisers:
            # cocoex writes under ./exdata/ (its convention), in a new folder if this exists.
            observers[name] = cocoex.Observer(
                "bbob", f"result_folder: {Path(args.coco_out) / name} algorithm_name: {name}")
    records: list[dict[str, Any]] = []
    todo = [(d, f, i) for d in dims for f in functions for i in instances]
    started = time.perf_counter()
    for n, (dim, function, instance) in enumerate(todo, 1):
        f_opt = optimum_value(suite, function, dim, instance)
        for name in args.optimisers:
            problem = suite.get_problem_by_function_dimension_instance(function, dim, instance)
            if name in observers:
                problem.observe_with(observers[name])
            ev = Evaluator(problem, f_opt, args.budget_factor * dim)
            t0 = time.perf_counter()
            run_optimiser(name, ev, dim, args)
            # Labelled by the dtype the engine ran (auto: float64 here, on the CPU).
            ran = genome_dtype(args.dtype, "cpu")
            label = f"{name}-{ran}" if ran != "float32" and name not in PEERS else name
            records.append({"optimiser": label, "dim": dim, "function": function,
                            "instance": instance, "group": group_of(function),
                            "precision": max(ev.best, TARGET), "solved": ev.best < TARGET,
                            "evals": ev.evals, "budget": ev.budget,
                            "wall_s": round(time.perf_counter() - t0, 3)})
            problem.free()
        done = [r for r in records if (r["dim"], r["function"], r["instance"])
                == (dim, function, instance)]
        log(f"[{n}/{len(todo)} {time.perf_counter() - started:7.0f}s] f{function:02d} "
            f"i{instance} D={dim}: " + "  ".join(
                f"{r['optimiser']} {r['precision']:.1e} ({r['wall_s']:.0f}s)" for r in done))
        save(records)
    for observer in observers.values():
        log(f"# COCO data: {observer.result_folder}")
    return records


def labels(records: list[dict[str, Any]]) -> list[str]:
    """The optimisers of ``records`` in first-seen order (a float64 run is ``NAME-float64``)."""
    return list(dict.fromkeys(r["optimiser"] for r in records))


def table(records: list[dict[str, Any]], optimisers: list[str]) -> dict[int, dict]:
    """{dim: {optimiser: {group: (median precision, fraction solved, pairs)}}}."""
    out: dict[int, dict] = {}
    for dim in sorted({r["dim"] for r in records}):
        out[dim] = {}
        for name in optimisers:
            row = {}
            for group in GROUPS:
                rs = [r for r in records if r["dim"] == dim and r["optimiser"] == name
                      and r["group"] == group]
                if rs:
                    row[group] = (median([r["precision"] for r in rs]),
                                  sum(r["solved"] for r in rs) / len(rs), len(rs))
            out[dim][name] = row
    return out


def markdown(summary: dict[int, dict], budget_factor: int) -> str:
    lines = []
    for dim, rows in summary.items():
        groups = [g for g in GROUPS if any(g in row for row in rows.values())]
        lines += [f"D = {dim}, budget {budget_factor:,} x D: median f - f_opt (fraction of "
                  f"(function, instance) pairs solved to 1e-8)", "",
                  "| optimiser | " + " | ".join(groups) + " |",
                  "| --- |" + " --- |" * len(groups)]
        for name, row in rows.items():
            cells = [f"{row[g][0]:.2g} ({row[g][1]:.0%})" if g in row else "-" for g in groups]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[int, dict], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    dims = list(summary)
    fig, axes = plt.subplots(1, len(dims), figsize=(7 * len(dims), 4.5), squeeze=False)
    for ax, dim in zip(axes[0], dims):
        rows = summary[dim]
        groups = [g for g in GROUPS if any(g in row for row in rows.values())]
        width = 0.8 / max(1, len(rows))
        for k, (name, row) in enumerate(rows.items()):
            xs = [j + k * width for j in range(len(groups))]
            ax.bar(xs, [row[g][0] if g in row else math.nan for g in groups], width,
                   label=name)
        ax.set_yscale("log")
        ax.set_ylim(bottom=TARGET / 10)  # bars at the floor (solved) stay visible
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], groups)
        ax.set_title(f"BBOB D={dim}: median f - f_opt (lower is better, floor 1e-8)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return True


def machine_info() -> dict[str, Any]:
    return machine("torch", "coco-experiment", "pygmo", "cma",
                   torch_threads=torch.get_num_threads(), device="cpu")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dims")
    p.add_argument("--functions")
    p.add_argument("--instances")
    p.add_argument("--budget-factor", type=int, help="evaluations per dimension "
                   "(10000; the issue's longer budget is 100000)")
    p.add_argument("--optimisers", default=",".join(OPTIMISERS))
    p.add_argument("--islands", type=int)
    p.add_argument("--pop", type=int)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dtype", choices=("auto", "float32", "float64"), default="auto",
                   help="the islandsync runs' genomes and scores (the run setting; auto, "
                        "the default: float64 on a CPU, float32 on a GPU)")
    p.add_argument("--coco-out", help="write COCO-format data under this folder")
    p.add_argument("--json", help="write every run's record and the summary here")
    p.add_argument("--png", help="the plot (default bbob.png beside --json, if given)")
    p.add_argument("--markdown", help="write the tables here")
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="run nothing: the tables (and plot) of these --json files together")
    args = p.parse_args(argv)
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.optimisers = [o for o in args.optimisers.split(",") if o]
    if unknown := [o for o in args.optimisers if o not in OPTIMISERS]:
        p.error(f"--optimisers: unknown {', '.join(unknown)}; expected some of "
                f"{', '.join(OPTIMISERS)}")
    try:
        for key in ("dims", "functions", "instances"):
            int_list(getattr(args, key))
    except ValueError:
        p.error("--dims, --functions and --instances take lists like 1-5,8")
    if not set(int_list(args.functions)) <= set(range(1, 25)):
        p.error("--functions: BBOB has functions 1 to 24")
    return args


def merged(paths: list[str]) -> tuple[list[dict[str, Any]], list[str], int]:
    """The records of several ``--json`` files (e.g. one per dimension or function set, run
    side by side), their optimisers in first-seen order, and their one budget factor."""
    records: list[dict[str, Any]] = []
    factors = set()
    seen = set()
    for path in paths:
        data = json.loads(Path(path).read_text())
        for record in data["records"]:  # a run measured twice: the first file's record
            key = (record["optimiser"], record["dim"], record["function"], record["instance"])
            if key not in seen:
                seen.add(key)
                records.append(record)
        factors.add(data["args"]["budget_factor"])
    if len(factors) != 1:
        raise SystemExit(f"bbob.py: --merge: the files have different budgets {factors}")
    return records, labels(records), factors.pop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        records, names, factor = merged(args.merge)
        summary = table(records, names)
        print(markdown(summary, factor))
        if args.markdown:
            Path(args.markdown).write_text(markdown(summary, factor))
        if args.json:
            Path(args.json).write_text(json.dumps({"merged": args.merge, "command": " ".join(
                sys.argv), "args": {"optimisers": names, "budget_factor": factor},
                "records": records}, indent=1))
        if args.png and not plot(summary, args.png):
            print("# no plot: matplotlib is missing (pip install 'islandsync[plot]')")
        return 0
    for module in ("cocoex", *(["pygmo"] if "pygmo-sade" in args.optimisers else []),
                   *(["cma"] if "cma-ipop" in args.optimisers else [])):
        try:
            __import__(module)
        except ImportError:
            print(f"bbob.py: module {module} is missing; {NEED}", file=sys.stderr)
            return 2
    torch.set_num_threads(1)  # one core per run, as every peer here gets
    info = machine_info()
    log = lambda line: print(line, flush=True)  # noqa: E731
    log(f"# {_dt.datetime.now().isoformat(timespec='seconds')} "
        f"{' '.join(f'{k}={v}' for k, v in info.items())}")
    log(f"# dims {args.dims}, functions {args.functions}, instances {args.instances}, budget "
        f"{args.budget_factor} x D, {args.islands} islands x {args.pop}, seed {args.seed}")
    started = time.perf_counter()

    def save(records: list[dict[str, Any]]) -> None:
        if args.json:
            summary = table(records, labels(records))
            Path(args.json).write_text(json.dumps(
                {"machine": info, "command": " ".join(sys.argv), "args": vars(args),
                 "summary": {d: {o: {g: list(c) for g, c in row.items()}
                                 for o, row in rows.items()} for d, rows in summary.items()},
                 "records": records}, indent=1))

    records = run_suite(args, log, save)
    summary = table(records, labels(records))
    text = markdown(summary, args.budget_factor)
    log("\n" + text)
    log(f"# total {time.perf_counter() - started:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(text)
    png = args.png or (str(Path(args.json).with_suffix(".png")) if args.json else None)
    if png and not plot(summary, png):
        log("# no plot: matplotlib is missing (pip install 'islandsync[plot]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
