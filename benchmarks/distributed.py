"""The distributed measures of docs/design.md, with real processes: a leader (``islandsync
coordinate``) and N workers (``islandsync worker --no-coordinator --device cpu --quiet``) on a
local directory or on fake-gcs-server, for each N in a list.

    python benchmarks/distributed.py [--workers 1,2,3,4] [--duration 60s]
        [--workload device-bound|compute] [--store file|gcs] [--store-latency 50ms]
        [--cadence default|frugal|both] [--islands 8] [--pop 64] [--dim 100]
        [--device-us 100] [--json PATH] [--markdown PATH] [--workdir DIR] [--keep] [--quick]
    python benchmarks/distributed.py --render RESULT.json [--markdown PATH]

Phases, each printing a line every few seconds:

1. throughput, once per N (always at the default cadence): a fresh run, a leader and N
   workers; warm up until every island is hosted, then a measured window of ``--duration``.
   From the workers' heartbeats (deltas over the window, each worker on its own
   ``written_at`` clock): evaluations/s, seconds blocked on checkpoints, upload histogram and
   bytes, bucket operations by class; from the leader's ``/metrics``
   (``--metrics-port``): ``islandsync_merge_seconds`` and its own bucket operations.
2. faults, in the largest cluster after its window (or a 2-worker one when the largest N is
   1): a second candidate is started and the leader is killed with SIGKILL (failover: until
   the new term's first assignment); then the worker hosting the most islands is killed
   (recovery: until each of its islands is stepping on another worker); then, unless
   ``--quick``, a third candidate is started and the new leader is killed too, to see what
   a leader that takes over after a worker death does with the dead worker.
3. frugal (``--cadence frugal|both``): a cluster at the frugal cadence; bucket operations
   over a window long enough to include a checkpoint, then a worker killed for recovery.

Throughout, a :class:`islandsync.testing.recorder.Recorder` in this process records every
version of ``assignment.json``, ``lease.json``, the elite and the islands' HEADs (through the
read boundary), and counts duplicate genome ids in the elites. The processes are an
:class:`islandsync.testing.cluster.Cluster` per run, running this checkout's islandsync; every
one started is killed on the way out, whatever happens. This script holds the flags and
``main``; its sibling modules hold the runs (``distributed_runs.py``), the phases
(``distributed_phases.py``) and the summary and Markdown report (``distributed_report.py``);
the cost model is :mod:`islandsync.views.pricing`'s, the recovery and failover estimates
:mod:`islandsync.config.cadence`'s.
``ISLANDSYNC_STORE_LATENCY`` (see ``islandsync.store.open_store``) is set only for the
processes started, never for this one, so the recorder sees the bucket without added latency.

``--quick`` is a smoke run: tiny cadences and windows, workers 1,2, 4 islands (flags given
explicitly win); its numbers are not meaningful.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

import distributed_report as report
from distributed_phases import fault_phase, frugal_phase, throughput_phase
from distributed_runs import Bench

from islandsync.durations import duration_type
from islandsync.store import LATENCY_ENV
from islandsync.testing.machine import code_fingerprint, load_average, machine_info


def parse_workers(text: str) -> list[int]:
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return ns


# -- main -----------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=parse_workers, help="worker counts N, e.g. 1,2,3,4")
    p.add_argument("--duration", type=duration_type(), help="measured window per N, e.g. 60s")
    p.add_argument("--workload", choices=["device-bound", "compute"], default="device-bound")
    p.add_argument("--store", choices=["file", "gcs"], default="file")
    p.add_argument("--store-latency", dest="store_latency", default=0.05,
                   type=duration_type(allow_zero=True),
                   help="added to every bucket call of the processes started (default 50ms)")
    p.add_argument("--cadence", choices=["default", "frugal", "both"], default="default",
                   help="which cadences get a measured recovery: default (frugal estimated), "
                        "frugal (a frugal phase measures its operations and recovery; the "
                        "default one is estimated), both")
    p.add_argument("--islands", type=int)
    p.add_argument("--pop", type=int, default=64)
    p.add_argument("--dim", type=int, help="default 100 (device-bound), 1000 (compute)")
    p.add_argument("--device-us", dest="device_us", type=float, default=100.0,
                   help="device-bound: microseconds of 'device' time per genome")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--markdown", help="write a Markdown report here")
    p.add_argument("--workdir", help="runs and logs (default: a new temporary folder)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--quick", action="store_true", help="a smoke run: tiny cadences and windows")
    p.add_argument("--render", metavar="JSON",
                   help="measure nothing: write the Markdown report of an earlier JSON result "
                        "(to --markdown, or stdout)")
    return p


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags, with ``--quick``'s and the workload's defaults where none was given."""
    args = build_parser().parse_args(argv)
    if args.workers is None:
        args.workers = [1, 2] if args.quick else [1, 2, 3, 4]
    if 1 not in args.workers:
        args.workers = [1] + args.workers  # the multiplier's baseline
    if args.duration is None:
        args.duration = 3.0 if args.quick else 60.0
    if args.islands is None:
        args.islands = 4 if args.quick else 8
    if args.dim is None:
        args.dim = 100 if args.workload == "device-bound" else 1000
    if max(args.workers) > args.islands:
        print(f"note: N={max(args.workers)} > {args.islands} islands: some workers idle",
              file=sys.stderr)
    return args


def run_phases(b: Bench) -> tuple[dict[int, dict], dict | None, dict | None]:
    """Throughput for each N; faults in the largest cluster (a 2-worker one when that is 1);
    the frugal phase if asked."""
    args = b.args
    phases: dict[int, dict] = {}
    faults = frugal = None
    with_recovery = args.cadence != "frugal"
    big = max(args.workers)
    for n in args.workers:
        run = b.start_run(f"n{n}", b.default, n)
        try:
            phases[n] = throughput_phase(b, run)
            if n == big and n >= 2:
                faults = fault_phase(b, run, with_recovery)
        finally:
            b.stop_run(run)
    if faults is None:
        run = b.start_run("faults-n2", b.default, 2)
        try:
            b.wait_steady(run, b.warmup_timeout)
            faults = fault_phase(b, run, with_recovery)
        finally:
            b.stop_run(run)
    if args.cadence in ("frugal", "both"):
        frugal = frugal_phase(b, max(2, big))
    return phases, faults, frugal


def command_line(argv: list[str]) -> str:
    exe = sys.executable
    if os.path.abspath(exe).startswith(os.getcwd() + os.sep):
        exe = os.path.relpath(exe)
    return " ".join(shlex.quote(x) for x in [exe, "benchmarks/distributed.py", *argv])


def settings(b: Bench) -> dict[str, Any]:
    a = b.args
    return {"workers": a.workers, "duration_s": a.duration, "workload": a.workload,
            "store": a.store, "store_latency_s": a.store_latency, "islands": a.islands,
            "pop": a.pop, "dim": a.dim, "algorithm": "de",
            "device_us_per_row": a.device_us if a.workload == "device-bound" else None,
            "cadence": a.cadence, "quick": a.quick,
            "cadences": {"default": b.default.as_dict(), "frugal": b.frugal.as_dict()},
            "workdir": str(b.workdir) if a.keep else None}


def measure(b: Bench, argv: list[str]) -> dict[str, Any]:
    """Every phase, with every process stopped on the way out (SIGTERM too)."""
    def on_signal(num: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(num).name)

    meta = {"name": "distributed", "command": command_line(argv),
            "started_at": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": machine_info("torch", "islandsync")}
    print(f"machine: {json.dumps(meta['machine'])}", flush=True)
    code_start, t0 = code_fingerprint(), time.monotonic()
    old = signal.signal(signal.SIGTERM, on_signal)
    try:
        b.start_store()
        a = b.args
        b.say(f"distributed benchmark: workers {a.workers}, {a.duration:g}s windows, "
              f"{a.workload}, store {a.store} +{1000 * a.store_latency:g} ms, "
              f"{a.islands} islands; work folder {b.workdir}")
        phases, faults, frugal = run_phases(b)
    except KeyboardInterrupt:
        b.say("interrupted: stopping every process")
        raise
    finally:
        b.close()
        signal.signal(signal.SIGTERM, old)
    code_end = code_fingerprint()
    if code_end["sha256"] != code_start["sha256"]:
        b.notes.append(
            f"the islandsync sources changed during this run ({code_start['sha256']} -> "
            f"{code_end['sha256']}, newest file {code_end['newest_file']}): processes started "
            f"at different times may have run different code")
        b.say("WARNING: " + b.notes[-1])
    meta |= {"code": {"start": code_start, "end": code_end},
             "wall_s": round(time.monotonic() - t0, 1), "settings": settings(b),
             "load_avg_at_end": load_average(), "processes": b.processes()}
    return {"benchmark": meta} | report.summarise(b.context(), phases, faults, frugal,
                                                  b.elite_summary(), b.notes)


def write(path: str | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.render:
        text = report.markdown(json.loads(Path(args.render).read_text()))
        if args.markdown:
            write(args.markdown, text)
        else:
            print(text)
        return 0
    os.environ.pop(LATENCY_ENV, None)  # never for this process: see the module doc
    b = Bench(args)
    result = measure(b, argv)
    write(args.json, json.dumps(result, indent=2, default=float) + "\n")
    text = report.markdown(result)
    write(args.markdown, text)
    print()
    print(text)
    if not args.keep and not args.workdir:
        shutil.rmtree(b.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
