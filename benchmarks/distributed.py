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
one started is killed on the way out, whatever happens. The summary and the Markdown report
are ``distributed_report.py``'s; the cost model is :mod:`islandsync.pricing`'s, the recovery
and failover estimates :mod:`islandsync.config.cadence`'s.
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
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed_report as report

from islandsync.bucket.records import Assignment, read_head
from islandsync.bucket.run import init_run
from islandsync.config import RunSpec, fitness_ref, parse_spec, spec_from_flags
from islandsync.config.cadence import Cadence
from islandsync.durations import duration_type
from islandsync.errors import IslandSyncError, NotFound
from islandsync.store import LATENCY_ENV, BlobStore
from islandsync.testing.cluster import Cluster
from islandsync.testing.machine import code_fingerprint, cpu_times, load_average, machine_info
from islandsync.testing.observe import read_heartbeats, scrape
from islandsync.testing.processes import Proc, cpu_seconds, start_fake_gcs, stop_all
from islandsync.testing.recorder import Recorder

#: benchmarks/: on the workers' PYTHONPATH for ``--fitness workloads:device_bound``.
HERE = Path(__file__).resolve().parent
BUCKET = "islandsync-bench"
DEVICE_BOUND_FITNESS = "workloads:device_bound"
STEADY_TIMEOUT_S = 120.0
#: The frugal cadence this benchmark compares with the default (not a product preset:
#: ``islandsync init --cadence free-tier`` is benchmarks/cost.py's); lease and cycle are the
#: default's.
FRUGAL = {"checkpoint_s": 300.0, "heartbeat_s": 60.0, "poll_s": 30.0, "worker_timeout_s": 150.0}
QUICK = Cadence("quick", 1.0, 0.5, 0.3, 2.0, 3.0, 0.5)
QUICK_FRUGAL = Cadence("quick-frugal", 4.0, 2.0, 1.0, 5.0, 3.0, 0.5)


def parse_workers(text: str) -> list[int]:
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return ns


def log_times(path: Path, pattern: re.Pattern) -> list[tuple[float, re.Match]]:
    """(wall time, match) of every log line ``YYYY-mm-dd HH:MM:SS,mmm ...`` matching."""
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        m = pattern.search(line)
        if m is None:
            continue
        try:
            when = _dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        except ValueError:
            continue
        out.append((when, m))
    return out


# -- one run of the benchmark: a Cluster of processes and the Recorder watching it -------------

@dataclass
class BenchRun:
    """One run: its processes (one :class:`Cluster`), the :class:`Recorder` on its bucket,
    and which candidate leads it now."""

    label: str
    cadence: Cadence
    n: int
    islands: int
    cluster: Cluster
    recorder: Recorder
    leader: str
    workers: list[str]

    @property
    def store(self) -> BlobStore:
        return self.cluster.store

    def proc(self, name: str) -> Proc:
        return self.cluster.procs[name]

    def kill(self, name: str) -> float:
        """kill -9; the wall time of the kill (to compare with log lines and records'
        ``written_at``, all on this machine)."""
        self.cluster.kill(name)
        return self.proc(name).killed_wall  # type: ignore[return-value]

    def live_workers(self) -> list[str]:
        return [w for w in self.workers if not self.proc(w).killed]

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        beats = read_heartbeats(self.store)
        return {w: beats[w] for w in self.live_workers() if w in beats}

    def assignments_since(self, t_mono: float) -> list[Assignment]:
        """Every assignment the recorder first saw at or after ``t_mono`` (monotonic)."""
        return [a for at, a in list(self.recorder.assignment_records) if at >= t_mono]

    def steady(self, beats: dict[str, dict[str, Any]]) -> bool:
        """A leader, every live worker's heartbeat, every island hosted once, every worker
        hosting one (where there are enough) and stepping."""
        if self.recorder.lease_term() == 0:
            return False
        live = self.live_workers()
        if set(beats) != set(live):
            return False
        hosted = [i for w in live for i in beats[w].get("islands") or []]
        if sorted(hosted) != list(range(self.islands)):
            return False
        if len(live) <= self.islands and any(not beats[w].get("islands") for w in live):
            return False
        return all((beats[w].get("rate") or 0) > 0 for w in live)

    def line(self, what: str, beats: dict[str, dict[str, Any]] | None = None) -> str:
        beats = self.heartbeats() if beats is None else beats
        rate = sum(b.get("rate") or 0 for b in beats.values())
        per = {w.rsplit("-", 1)[-1]: len(b.get("islands") or []) for w, b in beats.items()}
        seen = self.recorder.assignments()
        elites = self.recorder.elites()
        return (f"{self.label} {what}: {rate:,.0f} evals/s, islands per worker {per}, leader "
                f"term {seen[-1].term if seen else '-'}, elite epoch "
                f"{elites[-1].epoch if elites else '-'}")


# -- the benchmark's settings and its runs --------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.say_lock = threading.Lock()
        self.t0 = time.monotonic()
        default = Cadence.preset("default")
        self.default = QUICK if args.quick else default
        self.frugal = QUICK_FRUGAL if args.quick else Cadence(
            "frugal", lease_s=default.lease_s, cycle_s=default.cycle_s, **FRUGAL)
        self.workdir = Path(args.workdir) if args.workdir else Path(
            tempfile.mkdtemp(prefix="islandsync-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.env = {"ISLANDSYNC_BENCH_DEVICE_US": repr(args.device_us)}
        if args.store_latency > 0:
            self.env[LATENCY_ENV] = f"{args.store_latency!r}s"
        self.runs: list[BenchRun] = []
        self.notes: list[str] = []
        self.gcs: subprocess.Popen | None = None
        self.duration = args.duration
        self.progress_every = 1.0 if args.quick else 5.0
        self.warmup_timeout = 40.0 if args.quick else STEADY_TIMEOUT_S

    def context(self) -> report.Context:
        a = self.args
        return report.Context(a.islands, a.store_latency, a.workload, a.quick, self.default,
                              self.frugal)

    def say(self, text: str) -> None:
        with self.say_lock:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def start_store(self) -> None:
        if self.args.store != "gcs":
            return
        log = self.workdir / "fake-gcs-server.log"
        self.gcs, url = start_fake_gcs(BUCKET, log=log, project="bench")
        os.environ["STORAGE_EMULATOR_HOST"] = url  # this process, and every one it starts
        self.say(f"fake-gcs-server on {url} (memory backend), bucket {BUCKET}")

    def new_url(self, label: str) -> str:
        if self.args.store == "gcs":
            return f"gs://{BUCKET}/{label}-{uuid.uuid4().hex[:8]}"
        return str(self.workdir / "runs" / label)

    def spec(self, cadence: Cadence) -> RunSpec:
        a = self.args
        if a.workload == "device-bound":
            import workloads

            base = spec_from_flags(problem="custom", dim=a.dim, lower=-5.12, upper=5.12,
                                   islands=a.islands, pop=a.pop, algorithm="de", seed=1,
                                   fitness=fitness_ref(workloads.device_bound))
        else:
            base = spec_from_flags(problem="rastrigin", dim=a.dim, islands=a.islands,
                                   pop=a.pop, algorithm="de", seed=1)
        data = base.model_dump(mode="json") | {
            k: v for k, v in cadence.spec_fields().items()
            if k not in ("lease_s", "leader_cycle_s")}  # given to each candidate instead
        return parse_spec(data, source=f"benchmark ({cadence.name} cadence)")

    def candidate(self, run: BenchRun, name: str) -> Proc:
        """A coordinator candidate at the run's lease and cycle, with its /metrics."""
        return run.cluster.coordinator(name, "--platform", "local", lease_s=run.cadence.lease_s,
                                       interval_s=run.cadence.cycle_s, metrics=True)

    def start_run(self, label: str, cadence: Cadence, n: int) -> BenchRun:
        """A fresh run, its recorder, a leader (the only candidate) and ``n`` workers."""
        url = self.new_url(label)
        cluster = Cluster(url, self.workdir / label, env=self.env, pythonpath=(HERE,),
                          seed=0, new_session=True)
        spec = self.spec(cadence)
        init_run(cluster.store, spec)
        recorder = Recorder(cluster.store, spec.islands,
                            every=0.1 if self.args.quick else 0.25).start()
        run = BenchRun(label, cadence, n, spec.islands, cluster, recorder, f"{label}-lead", [])
        self.runs.append(run)
        self.candidate(run, run.leader)
        extra = ["--platform", "local"]
        if self.args.workload == "device-bound":
            extra += ["--fitness", DEVICE_BOUND_FITNESS]
        for k in range(n):
            run.workers.append(f"{label}-w{k}")
            run.cluster.worker(run.workers[-1], *extra)
        self.say(f"{label}: leader and {n} worker(s) started on {url} "
                 f"({cadence.name} cadence)")
        return run

    def stop_run(self, run: BenchRun) -> None:
        run.cluster.stop(timeout=60.0)
        run.recorder.stop(last_look=True)

    def wait_steady(self, run: BenchRun, timeout: float) -> bool:
        started = time.monotonic()
        next_line = started + self.progress_every
        while time.monotonic() - started < timeout:
            run.cluster.check_running()
            beats = run.heartbeats()
            if run.steady(beats):
                return True
            if time.monotonic() >= next_line:
                next_line += self.progress_every
                self.say(run.line("warming up", beats))
            time.sleep(0.2)
        return False

    def tick(self, run: BenchRun, seconds: float, what: str, every: float | None = None) -> None:
        """Wait ``seconds``, checking the processes and printing a progress line now and
        then."""
        every = every or self.progress_every
        end = time.monotonic() + seconds
        next_line = time.monotonic() + every
        while (now := time.monotonic()) < end:
            run.cluster.check_running()
            if now >= next_line:
                next_line += every
                self.say(run.line(f"{what} {seconds - (end - now):4.0f}/{seconds:g}s"))
            time.sleep(min(0.5, max(0.05, end - now)))

    def close(self) -> None:
        """Kill whatever still runs, stop the recorders and the fake-gcs-server."""
        for run in self.runs:
            run.cluster.processes.kill_all()
            run.recorder.stop()
        if self.gcs is not None:
            stop_all([self.gcs], timeout=10)
            os.environ.pop("STORAGE_EMULATOR_HOST", None)

    def processes(self) -> list[dict[str, Any]]:
        """Every process started, for the record (a test checks none is left running)."""
        return [{"name": p.name, "role": p.role, "pid": p.pid, "killed": p.killed,
                 "exit": p.popen.returncode} for r in self.runs for p in r.cluster.procs.values()]

    def elite_summary(self) -> dict[str, Any]:
        """Duplicate genome ids in every elite epoch any recorder read."""
        out = {"epochs_seen": 0, "duplicates": 0, "epochs_with_duplicates": [],
               "unreadable": 0}
        for run in self.runs:
            for e in run.recorder.elites():
                dup = len(e.ids) - len(set(e.ids))
                out["epochs_seen"] += 1
                out["duplicates"] += dup
                if dup:
                    out["epochs_with_duplicates"].append(f"{run.label}:{e.epoch}")
            out["unreadable"] += len(run.recorder.unreadable_elites)
        return out


# -- phase: throughput ----------------------------------------------------------------------

def sample_checkpoint(store: BlobStore, islands: int) -> dict[str, Any] | None:
    """Sizes of one island's latest checkpoint blob, frame by frame (the workers count only
    the snapshot's arrays as raw bytes; the blob also carries the elite frame)."""
    from islandsync.bucket import codec

    for i in range(islands):
        cur = read_head(store, i)
        if cur is None or not cur[0].checkpoint:
            continue
        try:
            data = store.get(cur[0].checkpoint).data
            _, frames = codec.decode(data, name=cur[0].checkpoint)
        except (IslandSyncError, NotFound):
            continue
        return {"key": cur[0].checkpoint, "blob_bytes": len(data),
                "frames_raw_bytes": sum(v.nbytes for v in frames.values()),
                "elite_frame_raw_bytes": sum(v.nbytes for k, v in frames.items()
                                             if k.startswith("elite."))}
    return None


CHECKPOINT_FIELDS = (("uploads", "uploads"), ("failures", "failures"),
                     ("seconds_sum", "seconds_sum"), ("bytes_raw", "bytes_raw_total"),
                     ("bytes_compressed", "bytes_compressed_total"))


def worker_window(a: dict[str, Any], z: dict[str, Any], ck: dict[str, float],
                  buckets: dict[str, float]) -> dict[str, float] | None:
    """One worker's deltas between two of its heartbeats ``a`` and ``z`` (on its own
    ``written_at`` clock); its checkpoint counts are added to ``ck`` and ``buckets``."""
    dt = (z.get("written_at") or 0) - (a.get("written_at") or 0)
    if dt <= 0:
        return None
    za, aa = z.get("store", {}).get("ops", {}), a.get("store", {}).get("ops", {})
    zc, ac = z.get("checkpoint", {}), a.get("checkpoint", {})
    for k, src in CHECKPOINT_FIELDS:
        ck[k] += (zc.get(src) or 0) - (ac.get(src) or 0)
    for le, n in (zc.get("seconds_buckets") or {}).items():
        buckets[le] = buckets.get(le, 0) + n - (ac.get("seconds_buckets") or {}).get(le, 0)

    def d(key: str) -> float:
        return (z.get(key) or 0) - (a.get(key) or 0)

    return {"dt": dt, "evals": d("evaluations"), "blocked": d("checkpoint_blocked_s"),
            "generations": d("generations"),
            "A": za.get("A", 0) - aa.get("A", 0), "B": za.get("B", 0) - aa.get("B", 0),
            "islands": len(z.get("islands") or [])}


def window_stats(run: BenchRun, h0: dict[str, dict], h1: dict[str, dict],
                 cpu0: dict[str, float | None], cpu1: dict[str, float | None],
                 wall: float) -> dict[str, Any]:
    """The workers' figures over a window, from their heartbeats at its two ends."""
    per_worker = {}
    agg_rate = blocked = worker_s = 0.0
    ops = {"A": 0.0, "B": 0.0}
    ck = {"uploads": 0, "failures": 0, "seconds_sum": 0.0, "bytes_raw": 0, "bytes_compressed": 0}
    buckets: dict[str, float] = {}
    for w in run.live_workers():
        if w not in h0 or w not in h1:
            continue
        d = worker_window(h0[w], h1[w], ck, buckets)
        if d is None:
            continue
        dt = d["dt"]
        cpu = ((cpu1[w] - cpu0[w]) / wall if cpu0.get(w) is not None
               and cpu1.get(w) is not None else None)
        per_worker[w] = {"islands": d["islands"], "window_s": round(dt, 2),
                         "evals_per_s": round(d["evals"] / dt, 1),
                         "blocked_share": d["blocked"] / dt, "ops_A_per_h": d["A"] * 3600 / dt,
                         "ops_B_per_h": d["B"] * 3600 / dt,
                         "cpu_share": None if cpu is None else round(cpu, 3),
                         "generations_per_s": round(d["generations"] / dt, 2)}
        agg_rate += d["evals"] / dt
        blocked += d["blocked"]
        worker_s += dt
        for k in ops:
            ops[k] += d[k]
    return {"per_worker": per_worker, "evals_per_s": agg_rate,
            "checkpoint_blocked_share": blocked / worker_s if worker_s else None,
            "worker_hours": worker_s / 3600, "ops": ops, "checkpoint": ck,
            "upload_buckets": buckets}


def leader_window(m0: dict[str, float], m1: dict[str, float], wall: float) -> dict[str, Any]:
    """The leader's figures over a window, from its /metrics at its two ends."""
    def delta(name: str) -> float:
        return m1.get(name, 0.0) - m0.get(name, 0.0)

    merge_buckets = {}
    for key in m1:
        m = re.match(r'islandsync_merge_seconds_bucket\{le="([^"]+)"\}', key)
        if m:
            merge_buckets[m[1]] = delta(key)
    merge_sum = delta("islandsync_merge_seconds_sum")
    ops = {k: delta(f'islandsync_bucket_operations_total{{class="{k}",worker="coordinator"}}')
           * 3600 / wall for k in ("A", "B")}
    return {"merge_seconds_sum": merge_sum, "merges": delta("islandsync_merge_seconds_count"),
            "merge_share": merge_sum / wall if wall else None, "merge_buckets": merge_buckets,
            "merge_candidates": m1.get("islandsync_merge_candidates"),
            "duplicates_removed": delta("islandsync_duplicates_removed_total"),
            "ops_per_hour": ops, "metrics_scraped": bool(m0) and bool(m1)}


class Window:
    """What is read at each end of a measured window: the leader's /metrics, the workers'
    heartbeats, every process's CPU seconds, the machine's CPU times and load."""

    def __init__(self, run: BenchRun) -> None:
        self.pids = {w: run.proc(w).pid for w in run.workers}
        self.pids[run.leader] = run.proc(run.leader).pid
        self.pids["benchmark"] = os.getpid()  # its recorder and heartbeat reads
        self.port = run.cluster.metrics_ports[run.leader]
        self.run = run

    def read(self) -> dict[str, Any]:
        return {"wall": time.time(), "metrics": scrape(self.port),
                "beats": self.run.heartbeats(), "mono": time.monotonic(),
                "cpu": {k: cpu_seconds(p) for k, p in self.pids.items()},
                "machine": cpu_times(), "load": load_average()}


def cpu_use(start: dict[str, Any], end: dict[str, Any], wall: float) -> dict[str, Any]:
    """How busy the machine's CPUs were over the window, and how much of that was this
    cluster (cores)."""
    ncpu = os.cpu_count() or 1
    m0, m1 = start["machine"], end["machine"]
    busy = None
    if m0 and m1 and m1[1] > m0[1]:
        busy = (m1[0] - m0[0]) / (m1[1] - m0[1]) * ncpu
    c0, c1 = start["cpu"], end["cpu"]
    used = [c1[k] - c0[k] for k in c0 if c0.get(k) is not None and c1.get(k) is not None]
    ours = sum(used) / wall if used else None
    bench = (None if c0.get("benchmark") is None
             else round((c1["benchmark"] - c0["benchmark"]) / wall, 3))
    return {"cores": ncpu, "busy_cores": None if busy is None else round(busy, 2),
            "this_cluster_cores": None if ours is None else round(ours, 2),
            "benchmark_cores": bench,
            "others_cores": None if busy is None or ours is None
            else round(max(0.0, busy - ours), 2)}


def elite_epochs(run: BenchRun, t0: float, t1: float) -> int:
    """Elite epochs written between monotonic ``t0`` and ``t1``: the newest epoch the
    recorder had seen by each (it may not read every one; the epochs count on)."""
    seen = run.recorder.elites()
    before = max((e.epoch for e in seen if e.at < t0), default=None)
    by_end = max((e.epoch for e in seen if e.at < t1), default=None)
    if before is None or by_end is None:
        return sum(1 for e in seen if t0 <= e.at < t1)
    return by_end - before


def measure_window(b: Bench, run: BenchRun, steady: bool) -> dict[str, Any]:
    """The measured window of a throughput phase, after the cluster settled."""
    window = Window(run)
    start = window.read()
    assign0 = len(run.recorder.assignment_records)
    b.tick(run, b.duration, "window")
    end = window.read()
    wall = end["wall"] - start["wall"]
    stats = window_stats(run, start["beats"], end["beats"], start["cpu"], end["cpu"], wall)
    leader = leader_window(start["metrics"], end["metrics"], wall)
    lc0, lc1 = start["cpu"].get(run.leader), end["cpu"].get(run.leader)
    leader["cpu_share"] = None if lc0 is None or lc1 is None else round((lc1 - lc0) / wall, 4)
    first = min(run.proc(w).started_wall for w in run.workers)
    return {
        "workers": run.n, "steady": steady, "window_s": round(wall, 2),
        "islands_per_worker": {w: len(b_.get("islands") or [])
                               for w, b_ in sorted(end["beats"].items())},
        "evals_per_s": round(stats["evals_per_s"], 1), "per_worker": stats["per_worker"],
        "checkpoint_blocked_share": stats["checkpoint_blocked_share"],
        "checkpoint": stats["checkpoint"], "upload_buckets": stats["upload_buckets"],
        "worker_ops_per_hour": {k: (v / stats["worker_hours"] if stats["worker_hours"]
                                    else None) for k, v in stats["ops"].items()},
        "leader": leader,
        "elite_epochs_per_hour": elite_epochs(run, start["mono"], end["mono"]) * 3600 / wall,
        "assignments_written_in_window": len(run.recorder.assignment_records) - assign0,
        "sample_checkpoint": sample_checkpoint(run.store, b.args.islands),
        "loadavg": {"start": start["load"], "end": end["load"]},
        "window_after_worker_start_s": [round(start["wall"] - first, 1),
                                        round(end["wall"] - first, 1)],
        "machine_cpu": cpu_use(start, end, wall),
    }


def throughput_phase(b: Bench, run: BenchRun) -> dict[str, Any]:
    """Warm up until every island is hosted, settle, then measure a window."""
    steady = b.wait_steady(run, b.warmup_timeout)
    if not steady:
        b.say(f"{run.label}: not every island hosted after {b.warmup_timeout:g}s; "
              f"measuring anyway")
        b.notes.append(f"N={run.n}: warm-up did not reach one host per island within "
                       f"{b.warmup_timeout:g}s; the window was measured anyway")
    settle = run.cadence.heartbeat_s + 0.5
    b.say(run.line(f"steady, settling {settle:g}s"))
    time.sleep(settle)
    result = measure_window(b, run, steady)
    b.say(f"{run.label}: {result['evals_per_s']:,.0f} evals/s aggregate over "
          f"{result['window_s']:.0f}s; islands {result['islands_per_worker']}; checkpoint "
          f"blocked {100 * (result['checkpoint_blocked_share'] or 0):.3f}%; merge "
          f"{100 * (result['leader']['merge_share'] or 0):.3f}% of the leader; load "
          f"{result['loadavg']['end']}")
    return result


# -- phase: faults --------------------------------------------------------------------------

def wait_new_term(b: Bench, run: BenchRun, killed_mono: float, killed_wall: float,
                  old_term: int, tag: str) -> Assignment | None:
    """The first assignment of a term above ``old_term`` seen after the kill, or None."""
    c = run.cadence
    limit = 2 * c.lease_s + 4 * c.cycle_s + 30
    next_line = time.monotonic() + b.progress_every
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        news = [a for a in run.assignments_since(killed_mono) if a.term > old_term]
        if news:
            return news[0]
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: waiting for a new leader ({time.time() - killed_wall:.0f}s since "
                  f"kill)")
        time.sleep(0.05)
    b.say(f"{tag}: no assignment of a new term within {limit:g}s")
    return None


def wait_hosted_again(run: BenchRun, first: Assignment, killed_wall: float) -> float | None:
    """Seconds after the kill until every island is hosted by a live worker again (by
    heartbeats written after ``first``), or None."""
    c = run.cadence
    t_end = time.monotonic() + c.worker_timeout_s + 4 * c.cycle_s + c.poll_s + 30
    while time.monotonic() < t_end:
        beats = run.heartbeats()
        if run.steady(beats) and all(b_.get("written_at", 0) > first.written_at
                                     for b_ in beats.values()):
            return round(time.time() - killed_wall, 2)
        time.sleep(0.25)
    return None


def failover(b: Bench, run: BenchRun, standby: str, tag: str) -> dict[str, Any]:
    """Kill -9 the leader with ``standby`` watching; until the new term's first assignment."""
    old, old_term = run.leader, run.recorder.lease_term()
    dead = sorted(w for w in run.workers if run.proc(w).killed)
    t_kill = run.kill(old)
    b.say(f"{tag}: kill -9 leader {old} (term {old_term}); candidate {standby} watching")
    first = wait_new_term(b, run, run.proc(old).killed_at, t_kill, old_term, tag)
    run.leader = standby
    out: dict[str, Any] = {"killed": old, "old_term": old_term, "new_leader": standby,
                           "lease_s": run.cadence.lease_s, "cycle_s": run.cadence.cycle_s,
                           "estimate": run.cadence.failover_estimate(
                               b.context().leader_calls_s(len(run.live_workers())))}
    took = log_times(run.proc(standby).log, re.compile(r"took over from .*term (\d+)"))
    took = [t for t, _ in took if t >= t_kill]
    out["takeover_s"] = round(took[0] - t_kill, 2) if took else None
    out["failover_s"] = None if first is None else round(first.written_at - t_kill, 2)
    if first is None:
        return out
    if out["takeover_s"] is not None:
        # The new leader reads heartbeats, HEADs and elites and merges before it writes the
        # assignment: bucket calls at the store's latency.
        out["first_cycle_s"] = round(out["failover_s"] - out["takeover_s"], 2)
    out["new_term"] = first.term
    to_dead = {i: w for i, w in first.islands.items() if w in dead}
    out["first_assignment_workers"] = list(first.workers)
    out["dead_workers_listed_alive"] = [w for w in first.workers if w in dead]
    out["islands_assigned_to_dead_workers"] = {str(i): w for i, w in sorted(to_dead.items())}
    out["dead_workers_before"] = dead
    b.say(f"{tag}: term {first.term} assignment by {standby} {out['failover_s']:.1f}s "
          f"after the kill (lease taken at {out['takeover_s']}s)"
          + (f"; it gives islands {sorted(to_dead)} to dead worker(s) "
             f"{sorted(set(to_dead.values()))}" if to_dead else ""))
    if to_dead or out["dead_workers_listed_alive"]:
        out["all_islands_hosted_again_s"] = wait_hosted_again(run, first, t_kill)
        out["idle_islands_s"] = idle_from_logs(run, sorted(to_dead), t_kill)
        b.say(f"{tag}: every island hosted by a live worker again "
              f"{out['all_islands_hosted_again_s']}s after the kill")
    return out


def idle_from_logs(run: BenchRun, islands: list[int], since: float) -> dict[str, Any]:
    """Per island: seconds from its release by a live owner (after ``since``) to its next
    claim by a live worker, from the workers' logs."""
    released: dict[int, float] = {}
    claimed: dict[int, float] = {}
    rel = re.compile(r"islands \[([0-9, ]+)\] released")
    got = re.compile(r"island (\d+) claimed at generation")
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, rel):
            for i in (int(x) for x in m[1].split(",")):
                if when >= since and i in islands and i not in released:
                    released[i] = when
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, got):
            i = int(m[1])
            if i in released and when >= released[i] and (i not in claimed
                                                             or when < claimed[i]):
                claimed[i] = when
    return {str(i): round(claimed[i] - released[i], 2) for i in islands
            if i in released and i in claimed}


@dataclass
class Lost:
    """A killed worker's islands, as they come back."""

    victim: str
    generations: dict[int, int]  # island -> its HEAD generation before the kill
    t_kill: float  # wall
    claimed: dict[int, tuple[str, float]]  # island -> (new owner, HEAD written_at)
    hosted: dict[int, float]  # island -> written_at of a heartbeat listing it
    advanced: dict[int, float]  # island -> written_at of a HEAD past the old generation

    def look(self, run: BenchRun) -> None:
        for i, gen in self.generations.items():
            cur = read_head(run.store, i)
            if cur is None:
                continue
            h = cur[0]
            if h.owner in (self.victim, None):
                continue
            self.claimed.setdefault(i, (h.owner, h.written_at))
            if i not in self.advanced and h.generation > gen:
                self.advanced[i] = h.written_at
        beats = run.heartbeats()
        for i, (owner, _) in self.claimed.items():
            hb = beats.get(owner)
            if i not in self.hosted and hb and i in (hb.get("islands") or []) \
                    and hb.get("written_at", 0) > self.t_kill:
                self.hosted[i] = hb["written_at"]


def kill_busiest_worker(b: Bench, run: BenchRun, tag: str) -> tuple[Lost, float | None]:
    beats = run.heartbeats()
    victim = max(run.live_workers(),
                 key=lambda w: (len(beats.get(w, {}).get("islands") or []), w))
    gens: dict[int, int] = {}
    for i in range(b.args.islands):
        cur = read_head(run.store, i)
        if cur is not None and cur[0].owner == victim:
            gens[i] = cur[0].generation
    last_beat = beats.get(victim, {}).get("written_at")
    t_kill = run.kill(victim)
    b.say(f"{tag}: kill -9 worker {victim} (islands {sorted(gens)}; its last heartbeat "
          f"{t_kill - last_beat if last_beat else float('nan'):.1f}s before)")
    return Lost(victim, gens, t_kill, {}, {}, {}), last_beat


def watch_recovery(b: Bench, run: BenchRun, lost: Lost, tag: str, wait_advance: bool) -> float:
    """Until each lost island steps elsewhere (and, with ``wait_advance``, its HEAD is past
    its pre-kill generation, or a little later gave up on that); returns the time limit."""
    c = run.cadence
    limit = c.worker_timeout_s + 4 * c.cycle_s + 2 * c.poll_s + 30
    limit += c.checkpoint_s if wait_advance else 0
    deadline = time.monotonic() + limit
    next_line = time.monotonic() + b.progress_every
    claim_deadline = None
    n = len(lost.generations)
    while time.monotonic() < deadline:
        lost.look(run)
        if len(lost.hosted) == n and claim_deadline is None:
            # Stepping again; wait a little longer to see HEAD generations advance too.
            claim_deadline = time.monotonic() + (
                c.checkpoint_s + 2 * c.heartbeat_s + 5 if wait_advance else 0)
        if len(lost.advanced) == n or (claim_deadline and time.monotonic() > claim_deadline):
            break
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: {time.time() - lost.t_kill:4.0f}s since kill: claimed "
                  f"{sorted(lost.claimed)}, stepping {sorted(lost.hosted)}, HEAD advanced "
                  f"{sorted(lost.advanced)} of {sorted(lost.generations)}")
        time.sleep(0.25)
    return limit


def recovery(b: Bench, run: BenchRun, tag: str, wait_advance: bool = True) -> dict[str, Any]:
    """Kill -9 the worker hosting the most islands; until each is stepping elsewhere."""
    lost, last_beat = kill_busiest_worker(b, run, tag)
    limit = watch_recovery(b, run, lost, tag, wait_advance)
    t_kill, islands = lost.t_kill, lost.generations
    # Exact claim times from the new owners' logs ("island N claimed at generation G":
    # logged when the worker loop puts the island into its engine, just before stepping it).
    pattern = re.compile(r"island (\d+) claimed at generation (\d+)")
    taken: dict[int, float] = {}
    for w in run.live_workers():
        for when, m in log_times(run.proc(w).log, pattern):
            if when >= t_kill and int(m[1]) in islands:
                taken.setdefault(int(m[1]), when)
    # When the leader first wrote an assignment without the victim.
    detect = [a for a in run.assignments_since(run.proc(lost.victim).killed_at - 1)
              if a.written_at >= t_kill and lost.victim not in a.workers]
    out: dict[str, Any] = {
        "victim": lost.victim, "islands": sorted(islands),
        "estimate": run.cadence.recovery_estimate(b.context().calls_s(len(run.live_workers()))),
        "cadence": run.cadence.as_dict(),
        "last_heartbeat_before_kill_s": round(t_kill - last_beat, 2) if last_beat else None,
        "declared_dead_s": round(detect[0].written_at - t_kill, 2) if detect else None,
    }
    every = bool(islands)

    def after(times: dict[int, float]) -> float | None:
        return round(max(times.values()) - t_kill, 2) if every and len(times) == len(islands) \
            else None

    if after(taken) is not None:
        out["recovery_s"], out["source"] = after(taken), ("worker logs: island taken into "
                                                          "the new owner's engine")
    elif after({i: s for i, (_, s) in lost.claimed.items()}) is not None:
        out["recovery_s"] = after({i: s for i, (_, s) in lost.claimed.items()})
        out["source"] = "HEAD written_at of the claiming write"
    else:
        out["recovery_s"], out["source"] = None, f"not all islands recovered within {limit:g}s"
    out["per_island_s"] = {str(i): round(taken[i] - t_kill, 2) for i in sorted(taken)}
    out["claimed_by"] = {str(i): lost.claimed[i][0] for i in sorted(lost.claimed)}
    out["confirmed_by_heartbeat_s"] = after(lost.hosted)
    out["head_advanced_s"] = after(lost.advanced)
    b.say(f"{tag}: recovery {out['recovery_s']}s (declared dead at {out['declared_dead_s']}s, "
          f"stepping confirmed by heartbeat at {out['confirmed_by_heartbeat_s']}s, HEAD "
          f"generations advanced by {out['head_advanced_s']}s)")
    return out


def fault_phase(b: Bench, run: BenchRun, with_recovery: bool = True) -> dict[str, Any]:
    """Failover, then (``with_recovery``) a worker's recovery, then unless ``--quick`` a
    failover to a leader that does not know of the dead worker."""
    out: dict[str, Any] = {"cluster": run.label, "workers": run.n}
    standby = f"{run.label}-standby"
    b.candidate(run, standby)
    # The candidate watches the lease from its first cycle; give it one.
    time.sleep(run.cadence.cycle_s + 2.0)
    run.cluster.check_running()
    out["failover"] = failover(b, run, standby, "failover")
    if not with_recovery:
        out["recovery"] = {}
        return out
    if not b.args.quick:
        b.candidate(run, f"{run.label}-standby2")
    settle = run.cadence.heartbeat_s + run.cadence.poll_s + 1
    b.wait_steady(run, 30 + settle)
    time.sleep(settle)
    out["recovery"] = recovery(b, run, "recovery")
    if not b.args.quick:
        time.sleep(run.cadence.cycle_s + 1)
        out["failover_after_worker_death"] = failover(b, run, f"{run.label}-standby2",
                                                      "failover after a worker death")
    return out


def frugal_phase(b: Bench, n: int) -> dict[str, Any]:
    """The frugal cadence's operations over a window long enough to hold a checkpoint, then
    a worker's recovery."""
    c = b.frugal
    run = b.start_run(f"frugal-n{n}", c, n)
    try:
        b.wait_steady(run, b.warmup_timeout + c.heartbeat_s)
        time.sleep(c.heartbeat_s + 0.5)
        window = max(b.duration, c.checkpoint_s + c.heartbeat_s + 10)
        h0, t0 = run.heartbeats(), time.time()
        b.tick(run, window, "window", every=max(b.progress_every, 10))
        h1 = run.heartbeats()
        stats = window_stats(run, h0, h1, {}, {}, time.time() - t0)
        ops = {k: (v / stats["worker_hours"] if stats["worker_hours"] else None)
               for k, v in stats["ops"].items()}
        rec = recovery(b, run, "frugal recovery", wait_advance=False)
    finally:
        b.stop_run(run)
    return {"workers": n, "window_s": round(window, 1), "worker_ops_per_hour": ops,
            "islands_per_worker": {w: len(v.get("islands") or []) for w, v in h1.items()},
            "recovery": rec}


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
