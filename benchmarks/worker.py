"""Worker throughput: islands stepped batched in one tensor vs one island at a time, and the
share of wall time the loop is blocked on checkpoints.

    python benchmarks/worker.py [--seconds 5] [--repeat 3] [--pop 256] [--dim 100]
                                [--islands 1,4,16] [--device auto] [--algorithm ga] [--json PATH]

Evaluations/s are medians of ``--repeat`` timed windows; batched and one-at-a-time run in the
same process, interleaved, so their ratio is meaningful on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from islandsync.bucket.run import init_run
from islandsync.config import ALGORITHM_CONFIGS, spec_from_flags
from islandsync.search.problems import make_problem
from islandsync.store import open_store
from islandsync.testing.machine import machine_info
from islandsync.worker.engine import Engine, resolve_device
from islandsync.worker.worker import Worker


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rate(engines: list[Engine], seconds: float, device: torch.device) -> float:
    """Evaluations per second stepping every engine in turn for ``seconds``."""
    for e in engines:  # warm-up (allocations, kernels)
        e.step()
    _sync(device)
    evals, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for e in engines:
            evals += e.step()
    _sync(device)
    return evals / (time.perf_counter() - t0)


def throughput(args: argparse.Namespace, device: torch.device) -> list[dict]:
    rows = []
    for k in args.islands:
        spec = spec_from_flags(problem="rastrigin", dim=args.dim, islands=k, pop=args.pop,
                               algorithm=args.algorithm)
        problem = make_problem("rastrigin")
        batched = Engine(spec, problem, device)
        batched.add_fresh(list(range(k)))
        singles = []
        for i in range(k):
            e = Engine(spec, problem, device)
            e.add_fresh([i])
            singles.append(e)
        b_runs, s_runs = [], []
        for r in range(args.repeat):
            b_runs.append(rate([batched], args.seconds, device))
            s_runs.append(rate(singles, args.seconds, device))
            print(f"  islands {k:>3} repeat {r + 1}: batched {b_runs[-1]:>12,.0f}  "
                  f"one-at-a-time {s_runs[-1]:>12,.0f} evals/s", flush=True)
        b, s = statistics.median(b_runs), statistics.median(s_runs)
        rows.append({"islands": k, "batched": b, "one_at_a_time": s, "speedup": b / s})
    return rows


def checkpoint_share(args: argparse.Namespace) -> dict:
    k = max(args.islands)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp)
        spec = spec_from_flags(problem="rastrigin", dim=args.dim, islands=k, pop=args.pop,
                               algorithm=args.algorithm, checkpoint_interval_s=2.0)
        init_run(store, spec)
        worker = Worker(store, device=args.device, duration=args.ckpt_seconds, solo=True,
                        worker_id="bench", progress=False)
        summary = worker.run()
        stats = worker.uploader.stats
        uploads = sorted(stats.upload_seconds)
    return {
        "islands": k,
        "wall_s": summary.wall_s,
        "blocked_s": summary.checkpoint_blocked_s,
        "blocked_share": summary.checkpoint_blocked_s / summary.wall_s,
        "uploads": stats.uploads,
        "upload_s_p50": uploads[len(uploads) // 2] if uploads else None,
        "bytes_raw_per_checkpoint": stats.last_raw,
        "bytes_compressed_per_checkpoint": stats.last_compressed,
        "evals_per_s": summary.evaluations / summary.wall_s,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of one timed window")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--pop", type=int, default=256)
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--islands", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    p.add_argument("--device", default="auto")
    p.add_argument("--algorithm", choices=list(ALGORITHM_CONFIGS), default="ga")
    p.add_argument("--ckpt-seconds", dest="ckpt_seconds", type=float, default=20.0)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    device = resolve_device(args.device)
    machine = machine_info(
        "torch", threads=torch.get_num_threads(),
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu")
    print(f"worker benchmark on {machine}: rastrigin {args.pop} x {args.dim}, {args.algorithm}")
    rows = throughput(args, device)
    print(f"checkpoint blocking: {max(args.islands)} islands, 2 s interval, "
          f"{args.ckpt_seconds:.0f} s solo worker on a local directory", flush=True)
    ckpt = checkpoint_share(args)

    print("\n| islands | batched evals/s | one-at-a-time evals/s | speedup |")
    print("| ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['islands']} | {r['batched']:,.0f} | {r['one_at_a_time']:,.0f} | "
              f"{r['speedup']:.2f}x |")
    print(f"\ncheckpoint: blocked {ckpt['blocked_s'] * 1e3:.1f} ms of {ckpt['wall_s']:.1f} s "
          f"= {ckpt['blocked_share']:.4%} of wall time; {ckpt['uploads']} uploads, "
          f"p50 {ckpt['upload_s_p50']}, {ckpt['bytes_raw_per_checkpoint']:,} B raw -> "
          f"{ckpt['bytes_compressed_per_checkpoint']:,} B per island checkpoint")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine, "args": vars(args), "throughput": rows, "checkpoint": ckpt},
            indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
