"""islandsync's engine against EvoX on one device: the same problem, sizes and device.

    python benchmarks/peers.py [--sizes 8x64x100,8x512x100,8x1024x1000] [--algorithms de,ga]
        [--repeats 3] [--gens 20] [--device auto] [--threads N] [--clock wall|cpu] [--compile]
        [--json PATH] [--markdown PATH] [--quick]

Needs EvoX (``pip install 'islandsync[bench]'``). For each size ``K x P x D`` (islands x
population per island x dimension, float32 Rastrigin in [-5.12, 5.12]) and algorithm:

- ``islandsync``: one :class:`~islandsync.worker.engine.Engine` hosting K islands as one
  tensor, driven as the worker drives it: ``step()``, and ``migrate()`` every
  ``migration.interval`` generations (20), so genome ids, the residency check and the NaN/inf
  accounting are all paid for. A timed window is ``--gens`` generations (20 by default: one
  migration per window).
- ``evox, one population``: one EvoX population of K*P in a ``StdWorkflow``.
- ``evox, K in turn``: K EvoX populations of P, each in its own ``StdWorkflow``, stepped one
  after the other (what K islands without batching cost).

The peers: CMA-ES, SHADE and SNES against EvoX's ``CMAES`` (full covariance at every D; ours
switches to the diagonal sep-CMA-ES above D = 300, so at D = 1,000 the two do different
work), ``SHADE`` and ``SNES``, each with the same population per island (ours sample lambda = P
a generation here, as EvoX's ``pop_size``); DE against EvoX's
``DE`` (DE/rand/1/bin, F 0.5, CR 0.9, clamped into the box);
islandsync runs jDE (self-adaptive F and CR, bound repair by redraw), a little more work per
generation than plain DE. EvoX 1.4 has no single-objective GA, so the GA's peer is the same
generational GA assembled from EvoX's own operators (``tournament_selection`` of 3,
``simulated_binary`` at rate 0.9 and eta 15, ``polynomial_mutation`` at 1/D and eta 20, the
best 2 per population kept): its closest algorithm, and the one that does the same work; its
NSGA-II would add a non-dominated sort that one objective does not need, and its PSO is a
different algorithm. EvoX 1.4 has no PGPE either (its ``es_variants`` are OpenES, XNES,
SeparableNES, DES, SNES, ARS, ASEBO, PersistentES, NoiseReuseES, GuidedES, ESMC, CMAES and the
VirtualES pair), so PGPE's peer is its closest, ``OpenES`` with mirrored sampling and its one
optimiser, ``adam`` (no ClipUp): the same antithetic batch of lambda = P and a step of the
centre from it, without PGPE's ranking, per-gene sigma update and box repair, so a little
less work a generation than ours. Both sides evaluate the same function: islandsync's
``rastrigin``.

All sides run in one process, taking turns generation by generation (islandsync, evox,
evox-in-turn, then again), so load on a shared machine hits every side alike; a window's
time is each side's sum over its ``--gens`` generations, and the tables hold the medians of
``--repeats`` windows. ``--clock cpu`` (a CPU run only) times each generation by the
process's CPU time instead of the wall clock: on a machine shared with other processes, a
generation during which the scheduler ran someone else is charged their turn by the wall
clock, which at a millisecond a generation and a load of several processes a core swamps
the difference between the sides; CPU time counts only the work done (with ``--threads 1``,
all of it on the timing thread). On a GPU the run also reports the share of the
memory-bandwidth roofline the engine reaches: bytes a generation must move at minimum (the
population read once, the trial batch written once and read once by the fitness function,
the survivors written once: 16 bytes per gene) over its time, against the bandwidth a
device-to-device copy reaches.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from islandsync.config import ALGORITHM_CONFIGS, PGPEConfig, spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.testing.machine import machine_info
from islandsync.worker.engine import Engine, resolve_device

CPU_SIZES = ((8, 64, 100), (8, 512, 100), (8, 1024, 1000))
GPU_SIZES = (*CPU_SIZES, (8, 4096, 1000))
QUICK: dict[str, Any] = {"sizes": ((2, 16, 10),), "repeats": 1, "gens": 4, "interval": 2}
LOWER, UPPER = -5.12, 5.12
GA_ELITE, GA_TOURNAMENT = 2, 3
EVOX_HINT = "pip install 'islandsync[bench]' (EvoX)"
#: The registry's algorithms (islandsync.config.ALGORITHM_CONFIGS) with a peer in EvoX 1.4
#: (the GA's is assembled from EvoX's operators; PGPE's is its OpenES: see the docstring).
ALGORITHMS = ("de", "ga", "cmaes", "shade", "snes", "pgpe")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------- EvoX side


def _evox_parts(device: torch.device) -> tuple[Any, Any]:
    """EvoX's problem wrapper and GA class, built only when EvoX is importable."""
    from evox.core import Algorithm, Mutable, Problem
    from evox.operators.crossover import simulated_binary
    from evox.operators.mutation import polynomial_mutation
    from evox.operators.selection import tournament_selection

    rastrigin = make_problem("rastrigin").evaluate

    class Rastrigin(Problem):
        """islandsync's rastrigin, so both sides evaluate the same function."""

        def evaluate(self, pop: torch.Tensor) -> torch.Tensor:
            return rastrigin(pop)

    class EvoxGA(Algorithm):
        """Generational GA with elitism from EvoX's operators (see the module docstring)."""

        def __init__(self, pop_size: int, lb: torch.Tensor, ub: torch.Tensor,
                     elite: int) -> None:
            super().__init__()
            self.pop_size, self.elite, self.dim = pop_size, elite, lb.shape[0]
            self.lb, self.ub = lb[None, :].to(device), ub[None, :].to(device)
            pop = torch.rand(pop_size, self.dim, device=device) * (self.ub - self.lb) + self.lb
            self.pop = Mutable(pop)
            self.fit = Mutable(torch.full((pop_size,), float("inf"), device=device))

        def init_step(self) -> None:
            self.fit = self.evaluate(self.pop)

        def step(self) -> None:
            n = self.pop_size - self.elite
            pairs = (n + 1) // 2
            idx = tournament_selection(2 * pairs, self.fit, GA_TOURNAMENT)
            # simulated_binary pairs the first half with the second half of its input.
            kids = simulated_binary(self.pop[idx], pro_c=0.9, dis_c=15.0)[:n]
            kids = polynomial_mutation(kids, self.lb, self.ub, pro_m=1.0, dis_m=20.0)
            kids = kids.clamp(LOWER, UPPER)
            kid_fit = self.evaluate(kids)
            keep = torch.topk(self.fit, self.elite, largest=False).indices
            self.pop = torch.cat([self.pop[keep], kids])
            self.fit = torch.cat([self.fit[keep], kid_fit])

    return Rastrigin, EvoxGA


def _eager_cmaes(cmaes: type) -> type:
    """EvoX 1.4's CMAES chooses between decomposing C and keeping B, D with ``torch.cond``,
    which torch 2.13 refuses outside ``torch.compile`` ("Encountered aliasing during higher
    order op tracing"); in eager mode the same choice is a Python branch, which is what this
    subclass does: the same work, the same results."""

    class EagerCMAES(cmaes):  # type: ignore[misc, valid-type]
        def _conditional_decomposition(self, iteration: torch.Tensor, C: torch.Tensor) -> Any:
            due = int(iteration) % self.decomp_per_iter == 0
            return (self._decomposition if due else self._no_decomposition)(C)

    return EagerCMAES


def evox_workflows(algorithm: str, pops: int, pop: int, dim: int, device: torch.device,
                   elite: int = GA_ELITE) -> list[Any]:
    """``pops`` EvoX workflows of ``pop`` individuals each, initialised (first evaluation);
    a GA keeps its best ``elite``."""
    from evox.algorithms import CMAES, DE, SHADE, SNES, OpenES
    from evox.workflows import StdWorkflow

    problem_cls, ga_cls = _evox_parts(device)
    lb = torch.full((dim,), LOWER, device=device)
    ub = torch.full((dim,), UPPER, device=device)
    flows = []
    for _ in range(pops):
        # The distribution strategies start, as ours do, from a mean drawn in the box with a
        # step of a quarter of its width (EvoX's own examples use sigma = 1 on [-5, 5]).
        mean = (torch.rand(dim, device=device) * (UPPER - LOWER) + LOWER)
        sigma = (UPPER - LOWER) / 4
        if algorithm == "de":
            alg = DE(pop_size=pop, lb=lb, ub=ub, device=device)
        elif algorithm == "shade":
            alg = SHADE(pop_size=pop, lb=lb, ub=ub, device=device)
        elif algorithm == "cmaes":
            alg = _eager_cmaes(CMAES)(mean_init=mean, sigma=sigma, pop_size=pop, device=device)
        elif algorithm == "snes":
            alg = SNES(pop_size=pop, center_init=mean, sigma=sigma, device=device)
        elif algorithm == "pgpe":
            # OpenES, mirrored (pop must be even, as ours), stepped by Adam at ClipUp's
            # default centre step (our lr_center: half its max_speed, of the box width).
            lr = PGPEConfig().max_speed / 2 * (UPPER - LOWER)
            alg = OpenES(pop_size=pop, center_init=mean, learning_rate=lr, noise_stdev=sigma,
                         optimizer="adam", mirrored_sampling=True, device=device)
        else:
            alg = ga_cls(pop, lb, ub, elite=elite)
        wf = StdWorkflow(alg, problem_cls(), device=device)
        wf.init_step()
        flows.append(wf)
    return flows


# ---------------------------------------------------------------------------- timing


def islandsync_generation(engine: Engine, interval: int, count: list[int]) -> None:
    """One generation as the worker runs it: a step, and a migration when one is due
    (``count`` holds the generations stepped so far)."""
    engine.step()
    count[0] += 1
    if count[0] % interval == 0:
        engine.migrate()


def evox_generation(flows: list[Any]) -> None:
    for wf in flows:
        wf.step()


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def timed_window(sides: dict[str, Callable[[], None]], gens: int,
                 device: torch.device, clock: Callable[[], float] = time.perf_counter
                 ) -> dict[str, float]:
    """Seconds each side spends on ``gens`` generations, the sides taking turns generation by
    generation: load that comes and goes on a shared machine hits every side alike."""
    spent = dict.fromkeys(sides, 0.0)
    for _ in range(gens):
        for name, generation in sides.items():
            _sync(device)
            t0 = clock()
            generation()
            _sync(device)
            spent[name] += clock() - t0
    return spent


def peak_bandwidth(device: torch.device) -> float | None:
    """Bytes/s of a device-to-device copy (read + write), the roofline's ceiling; GPU only."""
    if device.type != "cuda":
        return None
    a = torch.empty(1 << 28, dtype=torch.float32, device=device)  # 1 GiB
    b = torch.empty_like(a)
    b.copy_(a)
    _sync(device)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        b.copy_(a)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * a.numel() * 4 / min(times)


def measure(size: tuple[int, int, int], algorithm: str, args: argparse.Namespace,
            device: torch.device, log: Callable[[str], None]) -> dict[str, Any]:
    k, p, d = size
    # The distribution strategies sample lambda = P a generation, as EvoX's do (pop_size):
    # their own default lambda is 4 + 3 ln D, a different batch, and so different work.
    same_batch = {"samples": p} if algorithm in ("cmaes", "snes", "pgpe") else None
    # float32, as EvoX runs it (a new run's "auto" would be float64 on a CPU)
    spec = spec_from_flags(problem="rastrigin", dim=d, islands=k, pop=p, algorithm=algorithm,
                           migration_interval=args.interval, algorithm_settings=same_batch,
                           dtype="float32")
    if args.compile and algorithm == "de":  # the DE setting; the GA has none
        spec = spec.model_copy(
            update={"algorithm": spec.algorithm.model_copy(update={"compile": True})})
    engine = Engine(spec, make_problem("rastrigin"), device)
    engine.add_fresh(list(range(k)))
    torch.manual_seed(0)  # EvoX draws from torch's global generator
    # Evaluations per generation, the same on every side: a GA re-evaluates no elite.
    evals = k * (p - GA_ELITE) if algorithm == "ga" else k * p
    stepped = [0]
    sides: dict[str, Callable[[], None]] = {
        "islandsync": lambda: islandsync_generation(engine, args.interval, stepped)}
    if args.evox:
        # One population keeps as many elites as the K islands do together.
        one = evox_workflows(algorithm, 1, k * p, d, device, elite=GA_ELITE * k)
        each = evox_workflows(algorithm, k, p, d, device)
        sides["evox_one"] = lambda: evox_generation(one)
        sides["evox_k"] = lambda: evox_generation(each)
    # Warm-up: allocations, first-call paths (and compilation, with --compile).
    clock = CLOCKS[args.clock]
    timed_window(sides, min(args.gens, 3), device, clock)
    windows: dict[str, list[float]] = {name: [] for name in sides}
    # islandsync's own count: a CMA-ES island runs ceil(step_evals / lambda) generations of
    # its lambda a step (so 8 x 68 evaluations at 8 x 64 x 100, not 8 x 64).
    evals_before = sum(engine.evals.values())
    for r in range(args.repeats):
        for name, sec in timed_window(sides, args.gens, device, clock).items():
            windows[name].append(sec)
        log(f"  {algorithm} {k}x{p}x{d} repeat {r + 1}/{args.repeats}: " + "  ".join(
            f"{name} {args.gens / runs[-1]:>8,.1f}" for name, runs in windows.items())
            + " generations/s")
    row: dict[str, Any] = {"algorithm": algorithm, "islands": k, "pop": p, "dim": d,
                           "gens_per_window": args.gens, "repeats": args.repeats,
                           "compile": bool(args.compile and algorithm == "de"),
                           "clock": args.clock}
    own = (sum(engine.evals.values()) - evals_before) / (args.repeats * args.gens)
    for name, runs in windows.items():
        sec = statistics.median(runs) / args.gens
        per_gen = own if name == "islandsync" else evals
        row[name] = {"evals_per_s": per_gen / sec, "ms_per_gen": sec * 1e3,
                     "evals_per_gen": per_gen, "windows_s": [round(t, 4) for t in runs]}
    if args.evox:
        row["ratio_vs_evox_one"] = row["islandsync"]["evals_per_s"] / row["evox_one"][
            "evals_per_s"]
        row["ratio_vs_evox_k"] = row["islandsync"]["evals_per_s"] / row["evox_k"]["evals_per_s"]
        row["ratio_vs_best_evox"] = min(row["ratio_vs_evox_one"], row["ratio_vs_evox_k"])
    if args.peak_bw:
        min_bytes = 16 * k * p * d  # see the module docstring
        row["min_bytes_per_gen"] = min_bytes
        row["roofline_share"] = min_bytes / (row["islandsync"]["ms_per_gen"] / 1e3) / args.peak_bw
    return row


# ---------------------------------------------------------------------------- reporting


def markdown(rows: list[dict[str, Any]], peak_bw: float | None) -> str:
    head = ("| algorithm | islands x pop x dim | islandsync evals/s (ms/gen) "
            "| EvoX, one population of K*P | EvoX, K populations in turn "
            "| islandsync / best EvoX |")
    if peak_bw:
        head += " roofline share |"
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        def cell(name: str) -> str:
            s = r.get(name)
            return "—" if s is None else f"{s['evals_per_s']:,.0f} ({s['ms_per_gen']:.1f} ms)"
        ratio = f"{r['ratio_vs_best_evox']:.2f}" if "ratio_vs_best_evox" in r else "—"
        line = (f"| {r['algorithm']} | {r['islands']} x {r['pop']:,} x {r['dim']:,} "
                f"| {cell('islandsync')} | {cell('evox_one')} | {cell('evox_k')} | {ratio} |")
        if peak_bw:
            line += f" {r['roofline_share']:.0%} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _sizes(text: str) -> tuple[tuple[int, int, int], ...]:
    try:
        out = tuple(tuple(int(v) for v in s.lower().split("x")) for s in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"sizes are KxPxD[,KxPxD...], got {text!r}") from err
    if not out or any(len(s) != 3 or min(s) < 1 for s in out):
        raise argparse.ArgumentTypeError(f"sizes are KxPxD[,KxPxD...], got {text!r}")
    return out  # type: ignore[return-value]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", type=_sizes, help="KxPxD,... (CPU: 8x64x100,8x512x100,"
                   "8x1024x1000; a GPU adds 8x4096x1000)")
    p.add_argument("--algorithms", default="de,ga",
                   help=f"comma-separated, of {','.join(ALGORITHMS)} (de,ga)")
    p.add_argument("--repeats", type=int, help="timed windows per side (3)")
    p.add_argument("--gens", type=int, help="generations per timed window (20)")
    p.add_argument("--interval", type=int, help="generations between migrations (20)")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, help="torch intra-op threads (torch's default)")
    p.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                   help="time generations by the wall clock, or by the process's CPU time "
                        "(a CPU run on a shared machine; see the module docstring)")
    p.add_argument("--compile", action="store_true",
                   help="DE with its compile setting on (torch.compile of the step's arithmetic)")
    p.add_argument("--no-evox", dest="evox", action="store_false",
                   help="time islandsync alone (no EvoX installed)")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--markdown", help="write the table here")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes for a smoke run: 2x16x10, 1 repeat, 4 generations")
    args = p.parse_args(argv)
    args.algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    if bad := [a for a in args.algorithms if a not in ALGORITHM_CONFIGS]:
        p.error(f"unknown algorithms {bad} (registered: {', '.join(ALGORITHM_CONFIGS)})")
    if bad := [a for a in args.algorithms if a not in ALGORITHMS]:
        p.error(f"no EvoX peer here for {bad} (those with one: {', '.join(ALGORITHMS)})")
    defaults = QUICK if args.quick else {"repeats": 3, "gens": 20, "interval": 20}
    for key in ("repeats", "gens", "interval", "sizes"):
        if getattr(args, key) is None:
            setattr(args, key, defaults.get(key))
    if min(args.repeats, args.gens, args.interval) < 1:
        p.error("--repeats, --gens and --interval must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        print(f"peers: --clock cpu times a CPU run only ({device} does its work off the "
              "process's CPU time); use --clock wall", file=sys.stderr)
        return 2
    if args.sizes is None:
        args.sizes = GPU_SIZES if device.type == "cuda" else CPU_SIZES
    if args.evox:
        try:
            import evox  # noqa: F401
        except ImportError:
            print(f"peers: EvoX is not installed: {EVOX_HINT}, or pass --no-evox",
                  file=sys.stderr)
            return 2
        evox_version = importlib.metadata.version("evox")
    else:
        evox_version = None
    args.peak_bw = peak_bandwidth(device)

    def log(msg: str) -> None:
        print(msg, flush=True)

    log(f"peers: device {device}, torch {torch.__version__} ({torch.get_num_threads()} threads),"
        f" evox {evox_version}, sizes {', '.join('x'.join(map(str, s)) for s in args.sizes)}, "
        f"{args.repeats} repeats of {args.gens} generations, migration every {args.interval}, "
        f"{args.clock} clock")
    if args.peak_bw:
        log(f"  device-to-device copy: {args.peak_bw / 1e9:,.0f} GB/s")
    t0 = time.perf_counter()
    rows = [measure(size, alg, args, device, log)
            for size in args.sizes for alg in args.algorithms]
    table = markdown(rows, args.peak_bw)
    print(table, flush=True)
    log(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.markdown:
        Path(args.markdown).write_text(table)
    if args.json:
        doc = {
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": machine_info(
                "torch", threads=torch.get_num_threads(), evox=evox_version,
                device=str(device),
                gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                copy_bandwidth_bytes_per_s=args.peak_bw),
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
