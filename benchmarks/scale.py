"""Scale: W workers and K islands on one bucket, with the real coordinator.

Simulated workers run the real worker bucket side (``BucketLink``: heartbeats, assignment
polls, claims, elite reads; ``Uploader``: checkpoint blobs and HEAD CAS) at the run's real
cadence, with a loop that stands in for the engine (no torch: islands "evolve" by counters,
snapshots are small random populations), as threads, so 64 fit on 2 cores. Three real
``Coordinator`` candidates compete for the lease. Every bucket call goes through a
``TappedStore`` that sleeps ``--store-latency`` first (a local directory behaving like a
remote bucket), counts operations by class per role, and logs every write's key and time.
The cluster, its simulated workers and their stores are ``islandsync.testing.threads``'; the
run's cadence is the product's default preset (``islandsync.config.cadence``).

Per size W x K it reports: the leader's cycle seconds (p50, p95, max) over a steady window,
lease losses (term changes nobody caused), recovery seconds after killing W/8 workers (kill ->
each of their islands claimed by a live worker), failover seconds after killing the leader
(kill -> an assignment of a higher term), operations per worker-hour by class (and by
operation) and the leader's own per hour, and the most writes any one object took within one
second. A kill is a kill -9 as the bucket sees it: the victim's every later call fails.

``--compare-before TREE`` also measures the leader cycle at 32 x 256 on the code in TREE (a
checkout of an older commit: ``git worktree add /tmp/before <commit>``), in a child process
with ``PYTHONPATH=TREE``, and on this tree the same way.

    python benchmarks/scale.py                      # 8x64, 32x256, 64x512 at 50 ms
    python benchmarks/scale.py --compare-before /tmp/before
    python benchmarks/scale.py --quick              # seconds, for tests
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from islandsync.bucket.layout import ASSIGNMENT_KEY, ELITE_HEAD_KEY, LEASE_KEY
from islandsync.config.cadence import Cadence
from islandsync.store.counting import OPERATION_CLASS
from islandsync.testing.machine import machine_info
from islandsync.testing.processes import child_env
from islandsync.testing.threads import ThreadCluster

SIZES = [(8, 64), (32, 256), (64, 512)]


# -- the harness ------------------------------------------------------------------------------

@dataclass
class Settings:
    """One measurement's settings: the run's cadence (the product's default preset, or a
    smoke run's), the latency every bucket call gets, the steady window, and how long any one
    wait may take."""

    cadence: Cadence
    latency: float
    steady_s: float = 60.0
    timeout_s: float = 90.0

    def as_dict(self) -> dict[str, Any]:
        return {"latency": self.latency, **self.cadence.as_dict(), "steady_s": self.steady_s,
                "timeout_s": self.timeout_s}


QUICK_CADENCE = Cadence("quick", checkpoint_s=1.0, heartbeat_s=0.4, poll_s=0.2,
                        worker_timeout_s=2.0, lease_s=3.0, cycle_s=0.5)
QUICK = {"steady_s": 4.0, "timeout_s": 30.0}


def wait_until(check: Any, timeout: float, poll: float = 0.1) -> float | None:
    """Seconds until ``check()`` held, or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if check():
            return time.monotonic() - t0
        time.sleep(poll)
    return None


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(values, q))


def per_hour(n: float, seconds: float) -> float:
    return n * 3600.0 / seconds if seconds > 0 else 0.0


def measure(workers: int, islands: int, cadence: Settings, *, kills: bool = True,
            stop_criterion: bool = True) -> dict[str, Any]:
    """One size: warm up, a steady window, then kill workers (recovery), then the leader."""
    with tempfile.TemporaryDirectory(prefix="islandsync-scale-") as tmp:
        cl = ThreadCluster(Path(tmp) / "run", workers, islands, cadence.cadence,
                           cadence.latency, stop_criterion)
        t_start = time.monotonic()
        try:
            cl.start_coordinator("c0")
            wait_until(lambda: cl.lease()[1] == "c0", 10)
            for name in ("c1", "c2"):
                cl.start_coordinator(name)
            cl.start_workers()
            placed = wait_until(lambda: all(o is not None for o in cl.owners().values()),
                                cadence.timeout_s, poll=0.5)
            warm = time.monotonic()
            term0 = cl.lease()[0]
            before = {"workers": [s.store.snapshot() for s in cl.sims]}
            leader = cl.lease()[1]
            before["leader"] = cl.coords[leader][1].snapshot() if leader in cl.coords else {}
            terms: set[int] = set()
            while time.monotonic() - warm < cadence.steady_s:
                terms.add(cl.lease()[0])
                time.sleep(0.2)
            steady = time.monotonic() - warm
            after_workers = [s.store.snapshot() for s in cl.sims]
            leader_after = cl.coords[leader][1].snapshot() if leader in cl.coords else {}
            lease_losses = len({t for t in terms if t != term0}) + (cl.lease()[0] != term0)
            cycles = [d for name, rows in cl.cycles.items() for t, d in rows if t >= warm]
            ops = _ops(before["workers"], after_workers, before["leader"], leader_after, steady)
            end = warm + steady
            writes, hottest = cl.log.max_per_second(since=warm, until=end)
            leader_writes, leader_hottest = cl.log.max_per_second(
                since=warm, until=end, keys=lambda k: k in (ASSIGNMENT_KEY, LEASE_KEY, ELITE_HEAD_KEY))
            result: dict[str, Any] = {
                "workers": workers, "islands": islands, "latency_ms": cadence.latency * 1000,
                "placed_s": None if placed is None else round(placed, 1),
                "steady_s": round(steady, 1),
                "cycle_s": {"n": len(cycles), "p50": _r(pct(cycles, 50)),
                            "p95": _r(pct(cycles, 95)), "max": _r(max(cycles, default=None))},
                "lease_losses": lease_losses,
                "ops_per_worker_hour": ops["worker"],
                "ops_per_worker_hour_by_op": ops["worker_by_op"],
                "leader_ops_per_hour": ops["leader"],
                "max_writes_per_s_one_object": writes, "hottest_object": hottest,
                "max_leader_writes_per_s_one_object": leader_writes,
                "hottest_leader_object": leader_hottest,
            }
            if kills:
                result |= _kills(cl, cadence)
            result["all_cycles_s"] = {"p50": _r(pct([d for rows in cl.cycles.values()
                                                    for _, d in rows], 50)),
                                      "max": _r(max((d for rows in cl.cycles.values()
                                                     for _, d in rows), default=None))}
            result["wall_s"] = round(time.monotonic() - t_start, 1)
            return result
        finally:
            cl.close()


def _kills(cl: ThreadCluster, cadence: Settings) -> dict[str, Any]:
    # Recovery: kill W/8 workers (at least one) that host islands.
    owners = cl.owners()
    hosting = sorted({o for o in owners.values() if o})
    victims = hosting[:: max(1, len(hosting) // max(1, cl.workers // 8))][: max(1, cl.workers // 8)]
    lost = {i for i, o in owners.items() if o in victims}
    for sim in cl.sims:
        if sim.worker_id in victims:
            sim.kill()

    def recovered() -> bool:
        now = cl.owners()
        return all(now[i] is not None and now[i] not in victims for i in lost)

    recovery = wait_until(recovered, cadence.timeout_s, poll=0.2)
    # Failover: kill the leader; a competitor must write an assignment of a higher term.
    term, leader = cl.lease()
    assigned = cl.assignment_term()
    cl.kill_coordinator(leader)
    failover = wait_until(lambda: cl.assignment_term() > max(term, assigned),
                          cadence.timeout_s, poll=0.1)
    return {"killed_workers": len(victims), "islands_lost": len(lost),
            "recovery_s": _r(recovery, 1), "failover_s": _r(failover, 1),
            "new_leader": cl.lease()[1]}


def _ops(w0: list[dict[str, int]], w1: list[dict[str, int]], l0: dict[str, int],
         l1: dict[str, int], seconds: float) -> dict[str, Any]:
    by_op: dict[str, float] = defaultdict(float)
    for a, b in zip(w0, w1):
        for op in OPERATION_CLASS:
            by_op[op] += b.get(op, 0) - a.get(op, 0)
    n = max(1, len(w0))
    worker_by_op = {op: round(per_hour(v / n, seconds)) for op, v in by_op.items()}
    worker = {"A": sum(v for op, v in worker_by_op.items() if OPERATION_CLASS[op] == "A"),
              "B": sum(v for op, v in worker_by_op.items() if OPERATION_CLASS[op] == "B")}
    leader = dict.fromkeys(OPERATION_CLASS.values(), 0)  # A, B and free (deletes)
    for op in OPERATION_CLASS:
        leader[OPERATION_CLASS[op]] += round(per_hour(l1.get(op, 0) - l0.get(op, 0), seconds))
    return {"worker": worker, "worker_by_op": worker_by_op, "leader": leader}


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def cycle_only(workers: int, islands: int, cadence: Settings, seconds: float) -> dict[str, Any]:
    """The leader cycle alone (no competitors, no kills, no stop criterion), for comparing
    trees: whichever code ``islandsync`` imports from."""
    import islandsync

    with tempfile.TemporaryDirectory(prefix="islandsync-scale-") as tmp:
        cl = ThreadCluster(Path(tmp) / "run", workers, islands, cadence.cadence,
                           cadence.latency, stop_criterion=False)
        try:
            cl.start_coordinator("c0")
            wait_until(lambda: cl.lease()[1] == "c0", 10)
            cl.start_workers()
            t0 = time.monotonic()
            wait_until(lambda: time.monotonic() - t0 >= seconds, seconds + 5, poll=0.5)
            cycles = [d for _, d in cl.cycles["c0"]]
            terms = cl.lease()[0]
        finally:
            cl.close()
    return {"package": str(Path(islandsync.__file__).parent), "workers": workers,
            "islands": islands, "cycles": [round(c, 2) for c in cycles],
            "p50": _r(pct(cycles, 50)), "p95": _r(pct(cycles, 95)),
            "max": _r(max(cycles, default=None)), "lease_term_at_end": terms}


def compare_before(tree: str, cadence: Settings, seconds: float, workers: int,
                   islands: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    here = str(Path(__file__).resolve().parents[1])
    for name, path in (("before", tree), ("after", here)):
        env = child_env(path, threads=None)  # that tree's islandsync first
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, __file__, "--cycle-only", "--workers", str(workers),
                            "--islands", str(islands), "--seconds", str(seconds),
                            "--store-latency", str(cadence.latency), "--json", f.name],
                           env=env, check=True, cwd=path)
            out[name] = json.loads(Path(f.name).read_text())
    return out


def markdown(results: list[dict[str, Any]], compare: dict[str, Any] | None) -> str:
    lines = ["| W x K | cycle p50 / p95 / max (s) | lease losses | recovery (s) | "
             "failover (s) | worker ops/h A / B | leader ops/h A / B | max writes/s one "
             "object (leader's) |", "|" + " --- |" * 8]
    for r in results:
        c = r["cycle_s"]
        lines.append(
            f"| {r['workers']} x {r['islands']} | {c['p50']} / {c['p95']} / {c['max']} "
            f"| {r['lease_losses']} | {r.get('recovery_s')} | {r.get('failover_s')} "
            f"| {r['ops_per_worker_hour']['A']} / {r['ops_per_worker_hour']['B']} "
            f"| {r['leader_ops_per_hour']['A']} / {r['leader_ops_per_hour']['B']} "
            f"| {r['max_writes_per_s_one_object']} ({r['max_leader_writes_per_s_one_object']}) |")
    if compare:
        b, a = compare["before"], compare["after"]
        lines += ["", f"Leader cycle at {b['workers']} x {b['islands']}: before p50 {b['p50']} s, "
                  f"max {b['max']} s ({len(b['cycles'])} cycles); after p50 {a['p50']} s, "
                  f"p95 {a['p95']} s, max {a['max']} s ({len(a['cycles'])} cycles)."]
    return "\n".join(lines)


def parse_latency(text: str) -> float:
    from islandsync.durations import parse_duration

    return parse_duration(text, what="--store-latency", allow_zero=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--store-latency", type=parse_latency, default=0.05)
    p.add_argument("--sizes", default=",".join(f"{w}x{k}" for w, k in SIZES),
                   help="comma-separated WxK (default: %(default)s)")
    p.add_argument("--steady", type=float, default=None, help="seconds of steady window")
    p.add_argument("--quick", action="store_true", help="one small size at a fast cadence")
    p.add_argument("--compare-before", metavar="TREE", default=None)
    p.add_argument("--no-stop-criterion", action="store_true",
                   help="a run without max_evals/target (followers then never judge one)")
    p.add_argument("--cycle-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--islands", type=int, default=256)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--markdown", default=None, help="write the table here")
    args = p.parse_args(argv)
    cadence = (Settings(QUICK_CADENCE, args.store_latency, **QUICK) if args.quick
               else Settings(Cadence.preset("default"), args.store_latency))
    if args.steady is not None:
        cadence.steady_s = args.steady
    machine = machine_info("numpy")
    print(f"machine: {json.dumps(machine)}", flush=True)
    if args.cycle_only:
        result = cycle_only(args.workers, args.islands, cadence, args.seconds)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
        print(json.dumps(result))
        return 0
    sizes = [(4, 16)] if args.quick else [
        tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    results = []
    for w, k in sizes:
        r = measure(w, k, cadence, stop_criterion=not args.no_stop_criterion)
        print(json.dumps(r), flush=True)
        results.append(r)
    compare = None
    if args.compare_before:
        compare = compare_before(args.compare_before, cadence, args.seconds, args.workers,
                                 args.islands)
    md = markdown(results, compare)
    print(md)
    doc = {"benchmark": {"command": "python benchmarks/scale.py " + " ".join(argv or sys.argv[1:]),
                         "cadence": cadence.as_dict(), "cpus": os.cpu_count(),
                         "machine": machine},
           "sizes": results, "compare_before": compare}
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
