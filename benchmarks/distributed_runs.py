"""The runs of ``benchmarks/distributed.py``: :class:`Bench` (the benchmark's settings, its
store, its runs and their processes) and :class:`BenchRun` (one run: an
:class:`islandsync.testing.cluster.Cluster` of processes and the
:class:`islandsync.testing.recorder.Recorder` on its bucket). A sibling module of the script
(``python benchmarks/distributed.py`` puts benchmarks/ on sys.path)."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed_report as report

from islandsync.bucket.records import Assignment
from islandsync.bucket.run import init_run
from islandsync.config import RunSpec, fitness_ref, parse_spec, spec_from_flags
from islandsync.config.cadence import Cadence
from islandsync.store import LATENCY_ENV, BlobStore
from islandsync.testing.cluster import Cluster
from islandsync.testing.observe import read_heartbeats
from islandsync.testing.processes import Proc, start_fake_gcs, stop_all
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
