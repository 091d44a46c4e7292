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

Throughout, a watcher in this process reads every elite epoch (listing ``elite/``) and counts
duplicate genome ids, and records every version of ``assignment.json``, ``lease.json`` and
the islands' HEADs. Every process started is killed on the way out, whatever happens.
``ISLANDSYNC_STORE_LATENCY`` (see ``islandsync.store.open_store``) is set only for the
processes started, never for this one, so the watcher sees the bucket without added latency.

``--quick`` is a smoke run: tiny cadences and windows, workers 1,2, 4 islands (flags given
explicitly win); its numbers are not meaningful.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# This checkout's islandsync, as for the processes started (their PYTHONPATH), even where
# another copy is installed.
sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from islandsync.bucket.elites import read_elite
from islandsync.bucket.layout import LEASE_KEY, parse_elite_key
from islandsync.bucket.records import read_assignment, read_head
from islandsync.bucket.run import init_run
from islandsync.config import RunSpec, fitness_ref, parse_spec, spec_from_flags
from islandsync.durations import duration_type
from islandsync.errors import IslandSyncError, NotFound
from islandsync.store import (
    LATENCY_ENV,
    BlobStore,
    open_store,
)
from islandsync.testing.observe import read_heartbeats, scrape
from islandsync.testing.processes import (
    Proc,
    Processes,
    child_env,
    cpu_seconds,
    free_port,
    islandsync_argv,
    start_fake_gcs,
)

# GCS Standard storage list prices (USD), as in the project's brief and on
# https://cloud.google.com/storage/pricing-examples ("$0.005 per 1,000 operations" class A,
# "$0.0004 per 1,000 operations" class B); no free tier counted.
PRICES = {"class_a_per_1000": 0.005, "class_b_per_1000": 0.0004,
          "source": "GCS Standard storage list prices, as on "
                    "cloud.google.com/storage/pricing-examples; not re-checked live (this "
                    "machine has no network): check the pricing page before relying on them"}
HOURS_PER_MONTH = 730.0
BUCKET = "islandsync-bench"
DEVICE_BOUND_FITNESS = "workloads:device_bound"
STEADY_TIMEOUT_S = 120.0
LAST_BENCH: Bench | None = None  # the last main()'s, for tests: every process it started


# -- small helpers -----------------------------------------------------------------------

def parse_workers(text: str) -> list[int]:
    try:
        ns = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not ns or ns[0] < 1:
        raise argparse.ArgumentTypeError("worker counts must be >= 1")
    return ns


def _ranked(buckets: dict[str, float], q: float) -> tuple[list[tuple[float, float]], float]:
    """Cumulative buckets as sorted ``(upper bound, count)`` and the count that quantile ``q``
    reaches; no buckets (or an empty histogram) gives ``([], 0)``."""
    items = sorted(((math.inf if k == "+Inf" else float(k)), v) for k, v in buckets.items())
    if not items or items[-1][1] <= 0:
        return [], 0.0
    return items, q * items[-1][1]


def quantile_from_buckets(buckets: dict[str, float], q: float) -> float | None:
    """Prometheus ``histogram_quantile``: linear interpolation inside cumulative buckets."""
    items, rank = _ranked(buckets, q)
    if not items:
        return None
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in items:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # beyond the last finite bucket: its bound, as Prometheus
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def bucket_range(buckets: dict[str, float], q: float) -> str | None:
    """The bucket ``(lo, hi]`` that holds quantile ``q``."""
    items, rank = _ranked(buckets, q)
    lo = 0.0
    for bound, count in items:
        if count >= rank:
            return f"({lo:g}, {bound:g}]"
        lo = bound
    return None


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat), else None."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def loadavg() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


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


def code_fingerprint() -> dict[str, Any]:
    """sha256 over the islandsync package's Python sources, and the newest file's time: the
    package may be edited while a run goes on (a shared checkout), and a run must say so."""
    import hashlib

    root = REPO / "islandsync"
    h = hashlib.sha256()
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {"sha256": h.hexdigest()[:16],
            "newest_file": _dt.datetime.fromtimestamp(newest).astimezone().isoformat(
                timespec="seconds")}


def machine_info() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": version("torch"),
            "islandsync": version("islandsync"), "loadavg_at_start": loadavg()}


# -- cadences ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Cadence:
    name: str
    checkpoint_s: float
    heartbeat_s: float
    poll_s: float
    worker_timeout_s: float
    lease_s: float
    cycle_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"checkpoint_interval_s": self.checkpoint_s, "heartbeat_interval_s":
                self.heartbeat_s, "assignment_poll_s": self.poll_s,
                "worker_timeout_s": self.worker_timeout_s, "lease_s": self.lease_s,
                "coordinator_cycle_s": self.cycle_s}

    def recovery_estimate(self, calls_s: float = 0.0) -> dict[str, float]:
        """Kill -> islands claimed elsewhere, from the rules in link.Liveness and the leader
        loop: the leader notices a new heartbeat generation at its next cycle and calls the
        worker dead once that generation has stood still for worker_timeout (checked each
        cycle); the new owner reads the assignment at its next poll. The kill falls anywhere
        in a heartbeat interval. ``calls_s``: seconds of bucket calls on the way (the leader's
        reads and merge before it writes the assignment, then the claim), added to each."""
        t, hb, c, p = self.worker_timeout_s, self.heartbeat_s, self.cycle_s, self.poll_s
        return {"expected_s": round(t - hb / 2 + c + p / 2 + calls_s, 1),
                "best_s": round(max(0.0, t - hb) + calls_s, 1),
                "worst_s": round(t + 2 * c + p + calls_s, 1), "bucket_calls_s": calls_s}

    def failover_estimate(self, calls_s: float = 0.0) -> dict[str, float]:
        """Kill -> a candidate takes over (lease.py: the lease blob's generation unchanged for
        lease_s on the candidate's clock, judged at its cycles; renewals every lease_s/3),
        plus ``calls_s`` for the new leader's first cycle (its reads and merge before it
        writes the assignment)."""
        ren = self.lease_s / 3
        return {"expected_s": round(self.lease_s - ren / 2 + self.cycle_s + calls_s, 1),
                "best_s": round(self.lease_s - ren + calls_s, 1),
                "worst_s": round(self.lease_s + 2 * self.cycle_s + calls_s, 1),
                "bucket_calls_s": calls_s}


def leader_calls_s(latency: float, islands: int, workers: int) -> float:
    """Round trips of a new leader's path to its first assignment write, at ``latency`` each
    (leader/coordinator.py: the assignment comes before the HEADs and the merge): the lease
    read and takeover write, the listing of workers/, every heartbeat (read DEFAULT_READERS at
    a time), the assignment read and its write. ``islands``: the HEADs are read after it."""
    from islandsync.bucket.heads import DEFAULT_READERS

    heartbeat_rounds = -(-workers // DEFAULT_READERS)
    return round(latency * (2 + 1 + heartbeat_rounds + 2), 2)


def claim_calls_s(latency: float) -> float:
    """A claim: read the assignment, HEAD, CAS it, list and read the checkpoint."""
    return round(latency * 6, 2)


def default_cadence() -> Cadence:
    """The product's defaults: RunSpec's fields (the ``default`` cadence preset), the leader's
    lease and cycle among them."""
    f = RunSpec.model_fields
    return Cadence("default", f["checkpoint_interval_s"].default,
                   f["heartbeat_interval_s"].default, f["assignment_poll_s"].default,
                   f["worker_timeout_s"].default, f["lease_s"].default,
                   f["leader_cycle_s"].default)


FRUGAL = {"checkpoint_s": 300.0, "heartbeat_s": 60.0, "poll_s": 30.0, "worker_timeout_s": 150.0}
QUICK = Cadence("quick", 1.0, 0.5, 0.3, 2.0, 3.0, 0.5)
QUICK_FRUGAL = Cadence("quick-frugal", 4.0, 2.0, 1.0, 5.0, 3.0, 0.5)


# -- bucket operations: a model read off the code, checked against the measurement --------

def worker_ops_model(c: Cadence, islands_per_worker: float,
                     elite_epochs_per_h: float) -> dict[str, Any]:
    """Operations per follower worker-hour by source (link._poll, link._heartbeat,
    uploader._upload), as the code reads today.

    poll (every assignment_poll_s): get finished.json, stat assignment.json, get lease.json,
    stat elite/HEAD.json (4 B; a follower no longer lists workers/, only a solo worker does);
    a new elite epoch costs two more gets (B); heartbeat: one put (A); each island
    checkpoint: put blob, put HEAD (2 A), and once an island has more than 3 checkpoints a
    delete of the oldest (counted as A by CountingStore; GCS does not bill deletes).
    ``A`` and ``B`` are the billable totals; ``A_counted_steady`` adds the deletes."""
    polls, beats, rounds = 3600 / c.poll_s, 3600 / c.heartbeat_s, 3600 / c.checkpoint_s
    epochs = min(polls, elite_epochs_per_h)
    parts = {
        "poll": {"A": 0.0, "B": 4 * polls},
        "heartbeat": {"A": beats, "B": 0.0},
        "checkpoint": {"A": 2 * rounds * islands_per_worker, "B": 0.0},
        "elite": {"A": 0.0, "B": 2 * epochs},
    }
    total = {k: sum(p[k] for p in parts.values()) for k in ("A", "B")}
    deletes = rounds * islands_per_worker
    return {"A": round(total["A"]), "B": round(total["B"]),
            "A_counted_steady": round(total["A"] + deletes),
            "by_source": {s: {k: round(v) for k, v in p.items()} for s, p in parts.items()}
            | {"checkpoint_delete (not billed)": {"A": round(deletes), "B": 0}}}


def leader_ops_model(c: Cadence, islands: int, workers: int,
                     elite_epochs_per_h: float) -> dict[str, Any]:
    """Operations per hour of the leader (leader/coordinator.py), as the code reads today: a
    lease renewal every lease_s/3 (A; its own thread); per cycle a listing of workers/ and one
    of islands/ (2 A), the heartbeats that changed (B) and the HEADs that moved (B: each once
    per checkpoint), assignment.json and finished.json (2 B: `islandsync coordinate` exits once
    the run is finished); per island checkpoint a ranged read of its elite
    frame (2 B); per elite epoch put blob, put HEAD, list elite/, delete the oldest (4 A).
    Housekeeping sweeps from the cycle's own listings: its deletes only (not billed by GCS)."""
    cycles = 3600 / c.cycle_s
    renewals = 3600 / (c.lease_s / 3)
    beats = min(workers * 3600 / c.heartbeat_s, workers * cycles)
    island_ckpts = min(islands * 3600 / c.checkpoint_s, islands * cycles)
    epochs = min(cycles, elite_epochs_per_h)
    a = renewals + 2 * cycles + 4 * epochs
    b = 2 * cycles + beats + island_ckpts + 2 * island_ckpts
    return {"A": round(a), "B": round(b)}


def cost_per_month(a_per_h: float, b_per_h: float) -> float:
    return HOURS_PER_MONTH * (a_per_h * PRICES["class_a_per_1000"]
                              + b_per_h * PRICES["class_b_per_1000"]) / 1000


# -- processes ---------------------------------------------------------------------------

# -- the watcher ---------------------------------------------------------------------------

class Watcher:
    """Polls the run's leader records, elite epochs and HEADs from this process, and keeps
    every distinct version seen with the wall time it was first seen."""

    def __init__(self, store: BlobStore, islands: int, every: float) -> None:
        self.store, self.islands, self.every = store, islands, every
        self.assignments: list[dict[str, Any]] = []
        self.leases: list[dict[str, Any]] = []
        self.elites: dict[int, dict[str, Any]] = {}  # epoch -> what was read
        self.heads: dict[int, list[dict[str, Any]]] = {i: [] for i in range(islands)}
        self.unreadable_elites = 0
        self.errors = 0
        self._gens: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-watcher")

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        try:
            self.poll()  # a last look, so nothing written just before the stop is missed
        except IslandSyncError:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except IslandSyncError:
                self.errors += 1  # a half-visible blob, or the bucket going away at the end
            self._stop.wait(self.every)

    def poll(self) -> None:
        with self._lock:
            self._poll()

    def _poll(self) -> None:
        now = time.time()
        a = read_assignment(self.store)
        if a is not None and self._gens.get("assignment") != a[1]:
            self._gens["assignment"] = a[1]
            x = a[0]
            self.assignments.append({"seen_at": now, "generation": a[1], "term": x.term,
                                     "epoch": x.epoch, "leader": x.leader,
                                     "written_at": x.written_at, "islands": dict(x.islands),
                                     "workers": list(x.workers)})
        try:
            blob = self.store.get(LEASE_KEY)
        except NotFound:
            blob = None
        if blob is not None and self._gens.get("lease") != blob.generation:
            self._gens["lease"] = blob.generation
            try:
                rec = json.loads(blob.data)
            except ValueError:
                rec = {}
            self.leases.append({"seen_at": now, "generation": blob.generation,
                                "holder": rec.get("holder"), "term": rec.get("term")})
        for info in self.store.list("elite/"):
            epoch = parse_elite_key(info.key)
            if epoch is None or epoch in self.elites:
                continue
            try:
                _, _, ids, _ = read_elite(self.store, info.key)
            except (IslandSyncError, NotFound):
                self.unreadable_elites += 1
                continue
            idl = [int(i) for i in ids]
            self.elites[epoch] = {"seen_at": now, "size": len(idl),
                                  "duplicates": len(idl) - len(set(idl))}
        for i in range(self.islands):
            cur = read_head(self.store, i)
            if cur is None:
                continue
            key = f"head{i}"
            if self._gens.get(key) != cur[1]:
                self._gens[key] = cur[1]
                h = cur[0]
                self.heads[i].append({"seen_at": now, "blob_generation": cur[1],
                                      "generation": h.generation, "owner": h.owner,
                                      "released": h.released, "written_at": h.written_at})

    # views
    def lease_term(self) -> int:
        with self._lock:
            return max((x["term"] or 0 for x in self.leases), default=0)

    def latest_assignment(self) -> dict[str, Any] | None:
        with self._lock:
            return self.assignments[-1] if self.assignments else None

    def assignments_after(self, t: float) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.assignments if a["seen_at"] >= t]

    def elite_summary(self) -> dict[str, Any]:
        with self._lock:
            epochs = sorted(self.elites)
            return {"epochs_seen": len(epochs),
                    "epoch_range": [epochs[0], epochs[-1]] if epochs else None,
                    "duplicates": sum(e["duplicates"] for e in self.elites.values()),
                    "epochs_with_duplicates": [k for k in epochs
                                               if self.elites[k]["duplicates"]],
                    "unreadable": self.unreadable_elites}

    def epochs_between(self, t0: float, t1: float) -> int:
        with self._lock:
            return sum(1 for e in self.elites.values() if t0 <= e["seen_at"] < t1)


# -- the benchmark -----------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args, self.argv = args, argv
        self.say_lock = threading.Lock()
        self.t0 = time.monotonic()
        self.default = QUICK if args.quick else default_cadence()
        frugal_base = default_cadence()
        self.frugal = QUICK_FRUGAL if args.quick else Cadence(
            "frugal", lease_s=frugal_base.lease_s, cycle_s=frugal_base.cycle_s, **FRUGAL)
        self.workdir = Path(args.workdir) if args.workdir else Path(
            tempfile.mkdtemp(prefix="islandsync-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logdir = self.workdir / "logs"
        self.logdir.mkdir(exist_ok=True)
        env = child_env(HERE, REPO, drop=(LATENCY_ENV,),
                        ISLANDSYNC_BENCH_DEVICE_US=repr(args.device_us))
        if args.store_latency > 0:
            env[LATENCY_ENV] = f"{args.store_latency!r}s"
        self.env = env
        # Sessions of their own: a Ctrl-C in the terminal reaches this process only, which
        # then stops every one of them itself.
        self.procs = Processes(self.logdir, env, new_session=True)
        self.watchers: list[Watcher] = []
        self.notes: list[str] = []
        self.gcs_url: str | None = None
        self.duration = args.duration
        self.progress_every = 1.0 if args.quick else 5.0
        self.warmup_timeout = 40.0 if args.quick else STEADY_TIMEOUT_S

    def calls_s(self, workers: int) -> float:
        """Bucket-call seconds on a recovery's path (see leader_calls_s, claim_calls_s)."""
        lat = self.args.store_latency
        return round(leader_calls_s(lat, self.args.islands, workers) + claim_calls_s(lat), 2)

    def say(self, text: str) -> None:
        with self.say_lock:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    # -- store -----------------------------------------------------------------------

    def start_store(self) -> None:
        if self.args.store != "gcs":
            return
        log = self.logdir / "fake-gcs-server.log"
        popen, url = start_fake_gcs(BUCKET, log=log, project="bench")
        self.procs.adopt("fake-gcs-server", popen, log)
        os.environ["STORAGE_EMULATOR_HOST"] = url
        self.env["STORAGE_EMULATOR_HOST"] = url
        self.gcs_url = url
        self.say(f"fake-gcs-server on {url} (memory backend), bucket {BUCKET}")

    def new_url(self, label: str) -> str:
        if self.args.store == "gcs":
            return f"gs://{BUCKET}/{label}-{uuid.uuid4().hex[:8]}"
        return str(self.workdir / "runs" / label)

    # -- runs ------------------------------------------------------------------------

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
            "checkpoint_interval_s": cadence.checkpoint_s,
            "heartbeat_interval_s": cadence.heartbeat_s,
            "assignment_poll_s": cadence.poll_s, "worker_timeout_s": cadence.worker_timeout_s}
        return parse_spec(data, source=f"benchmark ({cadence.name} cadence)")

    def start_coordinator(self, cl: Cluster, name: str) -> Proc:
        port = free_port()
        proc = self.procs.spawn(name, islandsync_argv(
            "coordinate", cl.url, "--candidate-id", name,
            "--lease", f"{cl.cadence.lease_s}s", "--interval", f"{cl.cadence.cycle_s}s",
            "--metrics-port", str(port), "--platform", "local"))
        cl.coordinators[name] = port
        return proc

    def start_worker(self, cl: Cluster, name: str) -> Proc:
        argv = islandsync_argv("worker", cl.url, "--no-coordinator", "--device", "cpu",
                               "--quiet", "-v", "--platform", "local", "--worker-id", name)
        if self.args.workload == "device-bound":
            argv += ["--fitness", DEVICE_BOUND_FITNESS]
        proc = self.procs.spawn(name, argv)
        cl.workers.append(name)
        return proc


@dataclass
class Cluster:
    bench: Bench
    label: str
    cadence: Cadence
    n: int
    url: str = ""
    store: BlobStore | None = None
    watcher: Watcher | None = None
    leader: str = ""
    coordinators: dict[str, int] = field(default_factory=dict)  # name -> metrics port
    workers: list[str] = field(default_factory=list)
    dead: set[str] = field(default_factory=set)  # workers killed on purpose
    gone: set[str] = field(default_factory=set)  # coordinators killed on purpose

    # -- life --------------------------------------------------------------------------

    def start(self) -> None:
        b = self.bench
        self.url = b.new_url(self.label)
        self.store = open_store(self.url)
        spec = b.spec(self.cadence)
        init_run(self.store, spec)
        self.watcher = Watcher(self.store, spec.islands, 0.1 if b.args.quick else 0.25).start()
        b.watchers.append(self.watcher)
        self.leader = f"{self.label}-lead"
        b.start_coordinator(self, self.leader)  # the only candidate: it will lead
        for k in range(self.n):
            b.start_worker(self, f"{self.label}-w{k}")
        b.say(f"{self.label}: leader and {self.n} worker(s) started on {self.url} "
              f"({self.cadence.name} cadence)")

    def stop(self) -> None:
        names = [n for n in list(self.coordinators) + self.workers]
        self.bench.procs.stop(names, timeout=60.0)
        if self.watcher is not None:
            self.watcher.stop()

    def check_alive(self) -> None:
        for name in list(self.coordinators) + self.workers:
            if name in self.dead or name in self.gone:
                continue
            p = self.bench.procs.procs.get(name)
            if p is not None and p.popen.poll() is not None:
                tail = p.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {p.popen.returncode}; log tail:\n{tail}")

    def live_workers(self) -> list[str]:
        return [w for w in self.workers if w not in self.dead]

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        beats = read_heartbeats(self.store)
        return {w: beats[w] for w in self.live_workers() if w in beats}

    def hosting(self, beats: dict[str, dict[str, Any]]) -> dict[str, list[int]]:
        return {w: list(beats[w].get("islands") or []) for w in beats}

    def steady(self, beats: dict[str, dict[str, Any]]) -> bool:
        if self.watcher.lease_term() == 0:
            return False
        live = self.live_workers()
        if set(beats) != set(live):
            return False
        hosted = [i for w in live for i in beats[w].get("islands") or []]
        k = self.bench.args.islands
        if sorted(hosted) != list(range(k)):
            return False
        if len(live) <= k and any(not beats[w].get("islands") for w in live):
            return False
        return all((beats[w].get("rate") or 0) > 0 for w in live)

    def line(self, what: str, beats: dict[str, dict[str, Any]] | None = None) -> str:
        beats = self.heartbeats() if beats is None else beats
        rate = sum(b.get("rate") or 0 for b in beats.values())
        per = {w.rsplit("-", 1)[-1]: len(b.get("islands") or []) for w, b in beats.items()}
        a = self.watcher.latest_assignment()
        ep = self.watcher.elite_summary()["epoch_range"]
        return (f"{self.label} {what}: {rate:,.0f} evals/s, islands per worker {per}, leader "
                f"term {a['term'] if a else '-'}, elite epoch {ep[1] if ep else '-'}")

    def wait_steady(self, timeout: float) -> bool:
        b = self.bench
        started = time.monotonic()
        next_line = started + b.progress_every
        while time.monotonic() - started < timeout:
            self.check_alive()
            beats = self.heartbeats()
            if self.steady(beats):
                return True
            if time.monotonic() >= next_line:
                next_line += b.progress_every
                b.say(self.line("warming up", beats))
            time.sleep(0.2)
        return False


# -- phase: throughput -------------------------------------------------------------------

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


def window_stats(cl: Cluster, h0: dict[str, dict], h1: dict[str, dict],
                 cpu0: dict[str, float | None], cpu1: dict[str, float | None],
                 wall: float) -> dict[str, Any]:
    per_worker = {}
    agg_rate = blocked = worker_s = 0.0
    ops = {"A": 0.0, "B": 0.0}
    ck = {"uploads": 0, "failures": 0, "seconds_sum": 0.0, "bytes_raw": 0, "bytes_compressed": 0}
    buckets: dict[str, float] = {}
    for w in cl.live_workers():
        a, z = h0.get(w), h1.get(w)
        if a is None or z is None:
            continue
        dt = (z.get("written_at") or 0) - (a.get("written_at") or 0)
        if dt <= 0:
            continue
        d_evals = (z.get("evaluations") or 0) - (a.get("evaluations") or 0)
        d_blocked = (z.get("checkpoint_blocked_s") or 0) - (a.get("checkpoint_blocked_s") or 0)
        za, aa = z.get("store", {}).get("ops", {}), a.get("store", {}).get("ops", {})
        d_ops = {k: za.get(k, 0) - aa.get(k, 0) for k in ("A", "B")}
        zc, ac = z.get("checkpoint", {}), a.get("checkpoint", {})
        for k, src in (("uploads", "uploads"), ("failures", "failures"),
                       ("seconds_sum", "seconds_sum"), ("bytes_raw", "bytes_raw_total"),
                       ("bytes_compressed", "bytes_compressed_total")):
            ck[k] += (zc.get(src) or 0) - (ac.get(src) or 0)
        for le, n in (zc.get("seconds_buckets") or {}).items():
            buckets[le] = buckets.get(le, 0) + n - (ac.get("seconds_buckets") or {}).get(le, 0)
        cpu = (cpu1.get(w) - cpu0.get(w)) / wall if cpu0.get(w) is not None \
            and cpu1.get(w) is not None else None
        per_worker[w] = {"islands": len(z.get("islands") or []), "window_s": round(dt, 2),
                         "evals_per_s": round(d_evals / dt, 1),
                         "blocked_share": d_blocked / dt, "ops_A_per_h": d_ops["A"] * 3600 / dt,
                         "ops_B_per_h": d_ops["B"] * 3600 / dt,
                         "cpu_share": None if cpu is None else round(cpu, 3),
                         "generations_per_s": round(((z.get("generations") or 0)
                                                     - (a.get("generations") or 0)) / dt, 2)}
        agg_rate += d_evals / dt
        blocked += d_blocked
        worker_s += dt
        for k in ops:
            ops[k] += d_ops[k]
    return {"per_worker": per_worker, "evals_per_s": agg_rate,
            "checkpoint_blocked_share": blocked / worker_s if worker_s else None,
            "worker_hours": worker_s / 3600, "ops": ops, "checkpoint": ck,
            "upload_buckets": buckets}


def throughput_phase(b: Bench, n: int, keep_running: bool) -> tuple[dict[str, Any], Cluster]:
    cl = Cluster(b, f"n{n}", b.default, n)
    cl.start()
    try:
        steady = cl.wait_steady(b.warmup_timeout)
        if not steady:
            b.say(f"{cl.label}: not every island hosted after {b.warmup_timeout:g}s; "
                  f"measuring anyway")
            b.notes.append(f"N={n}: warm-up did not reach one host per island within "
                           f"{b.warmup_timeout:g}s; the window was measured anyway")
        settle = cl.cadence.heartbeat_s + 0.5
        b.say(cl.line(f"steady, settling {settle:g}s"))
        time.sleep(settle)
        coord = cl.coordinators[cl.leader]
        pids = {w: b.procs.procs[w].popen.pid for w in cl.workers}
        pids[cl.leader] = b.procs.procs[cl.leader].popen.pid
        pids["benchmark"] = os.getpid()  # its watcher and heartbeat reads
        t_start, m0, h0 = time.time(), scrape(coord), cl.heartbeats()
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        load0, machine0 = loadavg(), cpu_times()
        assign0 = len(cl.watcher.assignments)
        end = time.monotonic() + b.duration
        next_line = time.monotonic() + b.progress_every
        while (now := time.monotonic()) < end:
            cl.check_alive()
            if now >= next_line:
                next_line += b.progress_every
                b.say(cl.line(f"window {b.duration - (end - now):4.0f}/{b.duration:g}s"))
            time.sleep(min(0.5, max(0.05, end - now)))
        # Each worker's window runs from its last heartbeat before the start to its last
        # heartbeat now, on its own written_at clock.
        t_end, m1, h1 = time.time(), scrape(coord), cl.heartbeats()
        cpu1 = {k: cpu_seconds(p) for k, p in pids.items()}
        machine1 = cpu_times()
        wall = t_end - t_start
        # How busy the machine's CPUs were, and how much of that was this cluster.
        ncpu = os.cpu_count() or 1
        busy = ours = None
        if machine0 and machine1 and machine1[1] > machine0[1]:
            busy = (machine1[0] - machine0[0]) / (machine1[1] - machine0[1]) * ncpu
        used = [cpu1[k] - cpu0[k] for k in pids if cpu0.get(k) is not None
                and cpu1.get(k) is not None]
        ours = sum(used) / wall if used else None
        stats = window_stats(cl, h0, h1, cpu0, cpu1, wall)

        def delta(name: str) -> float:
            return m1.get(name, 0.0) - m0.get(name, 0.0)

        merge_buckets = {}
        for key in m1:
            m = re.match(r'islandsync_merge_seconds_bucket\{le="([^"]+)"\}', key)
            if m:
                merge_buckets[m[1]] = delta(key)
        merge_count = delta("islandsync_merge_seconds_count")
        merge_sum = delta("islandsync_merge_seconds_sum")
        lead_a = delta('islandsync_bucket_operations_total{class="A",worker="coordinator"}')
        lead_b = delta('islandsync_bucket_operations_total{class="B",worker="coordinator"}')
        lead_cpu = None
        if cpu0.get(cl.leader) is not None and cpu1.get(cl.leader) is not None:
            lead_cpu = round((cpu1[cl.leader] - cpu0[cl.leader]) / wall, 4)
        epochs = cl.watcher.epochs_between(t_start, t_end)
        hosting = cl.hosting(h1)
        result = {
            "workers": n, "steady": steady, "window_s": round(wall, 2),
            "islands_per_worker": {w: len(v) for w, v in sorted(hosting.items())},
            "evals_per_s": round(stats["evals_per_s"], 1),
            "per_worker": stats["per_worker"],
            "checkpoint_blocked_share": stats["checkpoint_blocked_share"],
            "checkpoint": stats["checkpoint"], "upload_buckets": stats["upload_buckets"],
            "worker_ops_per_hour": {k: (v / stats["worker_hours"] if stats["worker_hours"]
                                        else None) for k, v in stats["ops"].items()},
            "leader": {"merge_seconds_sum": merge_sum, "merges": merge_count,
                       "merge_share": merge_sum / wall if wall else None,
                       "merge_buckets": merge_buckets,
                       "merge_candidates": m1.get("islandsync_merge_candidates"),
                       "duplicates_removed": delta("islandsync_duplicates_removed_total"),
                       "ops_per_hour": {"A": lead_a * 3600 / wall, "B": lead_b * 3600 / wall},
                       "cpu_share": lead_cpu, "metrics_scraped": bool(m0) and bool(m1)},
            "elite_epochs_per_hour": epochs * 3600 / wall,
            "assignments_written_in_window": len(cl.watcher.assignments) - assign0,
            "sample_checkpoint": sample_checkpoint(cl.store, b.args.islands),
            "loadavg": {"start": load0, "end": loadavg()},
            "window_after_worker_start_s": [
                round(t_start - min(b.procs.procs[w].started_wall for w in cl.workers), 1),
                round(t_end - min(b.procs.procs[w].started_wall for w in cl.workers), 1)],
            "machine_cpu": {"cores": ncpu, "busy_cores": None if busy is None else round(busy, 2),
                            "this_cluster_cores": None if ours is None else round(ours, 2),
                            "benchmark_cores": None if cpu0.get("benchmark") is None
                            else round((cpu1["benchmark"] - cpu0["benchmark"]) / wall, 3),
                            "others_cores": None if busy is None or ours is None
                            else round(max(0.0, busy - ours), 2)},
        }
        b.say(f"{cl.label}: {result['evals_per_s']:,.0f} evals/s aggregate over "
              f"{wall:.0f}s; islands {result['islands_per_worker']}; checkpoint blocked "
              f"{100 * (result['checkpoint_blocked_share'] or 0):.3f}%; merge "
              f"{100 * (result['leader']['merge_share'] or 0):.3f}% of the leader; load "
              f"{result['loadavg']['end']}")
    except BaseException:
        cl.stop()
        raise
    if not keep_running:
        cl.stop()
    return result, cl


# -- phase: faults -----------------------------------------------------------------------

def failover(b: Bench, cl: Cluster, standby: str, tag: str) -> dict[str, Any]:
    """Kill -9 the leader with ``standby`` watching; until the new term's first assignment."""
    old = cl.leader
    old_term = cl.watcher.lease_term()
    dead = sorted(cl.dead)
    t_kill = b.procs.kill(old).killed_wall
    cl.gone.add(old)
    b.say(f"{tag}: kill -9 leader {old} (term {old_term}); candidate {standby} watching")
    limit = 2 * cl.cadence.lease_s + 4 * cl.cadence.cycle_s + 30
    first = None
    next_line = time.monotonic() + b.progress_every
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        news = [a for a in cl.watcher.assignments_after(t_kill) if a["term"] > old_term]
        if news:
            first = news[0]
            break
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: waiting for a new leader ({time.time() - t_kill:.0f}s since kill)")
        time.sleep(0.05)
    cl.leader = standby
    out: dict[str, Any] = {"killed": old, "old_term": old_term, "new_leader": standby,
                           "lease_s": cl.cadence.lease_s, "cycle_s": cl.cadence.cycle_s,
                           "estimate": cl.cadence.failover_estimate(leader_calls_s(
                               b.args.store_latency, b.args.islands, len(cl.live_workers())))}
    took = log_times(b.procs.procs[standby].log, re.compile(r"took over from .*term (\d+)"))
    took = [t for t, m in took if t >= t_kill]
    out["takeover_s"] = round(took[0] - t_kill, 2) if took else None
    if first is None:
        out["failover_s"] = None
        b.say(f"{tag}: no assignment of a new term within {limit:g}s")
        return out
    out["failover_s"] = round(first["written_at"] - t_kill, 2)
    if out["takeover_s"] is not None:
        # The new leader reads heartbeats, HEADs and elites and merges before it writes the
        # assignment: bucket calls at the store's latency.
        out["first_cycle_s"] = round(out["failover_s"] - out["takeover_s"], 2)
    out["seen_after_s"] = round(first["seen_at"] - t_kill, 2)
    out["new_term"] = first["term"]
    to_dead = {i: w for i, w in first["islands"].items() if w in cl.dead}
    out["first_assignment_workers"] = first["workers"]
    out["dead_workers_listed_alive"] = [w for w in first["workers"] if w in cl.dead]
    out["islands_assigned_to_dead_workers"] = {str(i): w for i, w in sorted(to_dead.items())}
    out["dead_workers_before"] = dead
    b.say(f"{tag}: term {first['term']} assignment by {standby} {out['failover_s']:.1f}s "
          f"after the kill (lease taken at {out['takeover_s']}s)"
          + (f"; it gives islands {sorted(to_dead)} to dead worker(s) "
             f"{sorted(set(to_dead.values()))}" if to_dead else ""))
    if to_dead or out["dead_workers_listed_alive"]:
        # How long until every island is hosted by a live worker again (heartbeats).
        limit2 = cl.cadence.worker_timeout_s + 4 * cl.cadence.cycle_s + cl.cadence.poll_s + 30
        t_end = time.monotonic() + limit2
        back = None
        while time.monotonic() < t_end:
            beats = cl.heartbeats()
            if cl.steady(beats) and all(b_.get("written_at", 0) > first["written_at"]
                                        for b_ in beats.values()):
                back = time.time()
                break
            time.sleep(0.25)
        out["all_islands_hosted_again_s"] = None if back is None else round(back - t_kill, 2)
        out["idle_islands_s"] = idle_from_logs(b, cl, sorted(to_dead), t_kill)
        b.say(f"{tag}: every island hosted by a live worker again "
              f"{out['all_islands_hosted_again_s']}s after the kill")
    return out


def idle_from_logs(b: Bench, cl: Cluster, islands: list[int], since: float) -> dict[str, Any]:
    """Per island: seconds from its release by a live owner (after ``since``) to its next
    claim by a live worker, from the workers' logs."""
    released: dict[int, float] = {}
    claimed: dict[int, float] = {}
    rel = re.compile(r"islands \[([0-9, ]+)\] released")
    got = re.compile(r"island (\d+) claimed at generation")
    for w in cl.live_workers():
        log = b.procs.procs[w].log
        for when, m in log_times(log, rel):
            for i in (int(x) for x in m[1].split(",")):
                if when >= since and i in islands and i not in released:
                    released[i] = when
    for w in cl.live_workers():
        for when, m in log_times(b.procs.procs[w].log, got):
            i = int(m[1])
            if i in released and when >= released[i] and (i not in claimed
                                                             or when < claimed[i]):
                claimed[i] = when
    return {str(i): round(claimed[i] - released[i], 2) for i in islands
            if i in released and i in claimed}


def recovery(b: Bench, cl: Cluster, tag: str, wait_advance: bool = True) -> dict[str, Any]:
    """Kill -9 the worker hosting the most islands; until each is stepping elsewhere (and,
    with ``wait_advance``, until each island's HEAD is past its pre-kill generation)."""
    beats = cl.heartbeats()
    live = cl.live_workers()
    victim = max(live, key=lambda w: (len(beats.get(w, {}).get("islands") or []), w))
    lost: dict[int, int] = {}
    for i in range(b.args.islands):
        cur = read_head(cl.store, i)
        if cur is not None and cur[0].owner == victim:
            lost[i] = cur[0].generation
    last_beat = beats.get(victim, {}).get("written_at")
    t_kill = b.procs.kill(victim).killed_wall
    cl.dead.add(victim)
    b.say(f"{tag}: kill -9 worker {victim} (islands {sorted(lost)}; its last heartbeat "
          f"{t_kill - last_beat if last_beat else float('nan'):.1f}s before)")
    c = cl.cadence
    limit = c.worker_timeout_s + 4 * c.cycle_s + 2 * c.poll_s + 30
    if wait_advance:
        limit += c.checkpoint_s
    deadline = time.monotonic() + limit
    claimed: dict[int, tuple[str, float]] = {}  # island -> (new owner, HEAD written_at)
    hosted: dict[int, float] = {}  # island -> written_at of a heartbeat listing it
    advanced: dict[int, float] = {}  # island -> written_at of a HEAD past the old generation
    next_line = time.monotonic() + b.progress_every
    claim_deadline = None
    while time.monotonic() < deadline:
        for i, gen in lost.items():
            cur = read_head(cl.store, i)
            if cur is None:
                continue
            h = cur[0]
            if i not in claimed and h.owner not in (victim, None):
                claimed[i] = (h.owner, h.written_at)
            if i not in advanced and h.owner not in (victim, None) and h.generation > gen:
                advanced[i] = h.written_at
        beats = cl.heartbeats()
        for i in claimed:
            hb = beats.get(claimed[i][0])
            if i not in hosted and hb and i in (hb.get("islands") or []) \
                    and hb.get("written_at", 0) > t_kill:
                hosted[i] = hb["written_at"]
        if len(hosted) == len(lost) and claim_deadline is None:
            # Stepping again; wait a little longer to see HEAD generations advance too.
            claim_deadline = time.monotonic() + (
                c.checkpoint_s + 2 * c.heartbeat_s + 5 if wait_advance else 0)
        if len(advanced) == len(lost) or (claim_deadline and time.monotonic() > claim_deadline):
            break
        if time.monotonic() >= next_line:
            next_line += b.progress_every
            b.say(f"{tag}: {time.time() - t_kill:4.0f}s since kill: claimed "
                  f"{sorted(claimed)}, stepping {sorted(hosted)}, HEAD advanced "
                  f"{sorted(advanced)} of {sorted(lost)}")
        time.sleep(0.25)
    # Exact claim times from the new owners' logs ("island N claimed at generation G":
    # logged when the worker loop puts the island into its engine, just before stepping it).
    pattern = re.compile(r"island (\d+) claimed at generation (\d+)")
    taken: dict[int, float] = {}
    for w in cl.live_workers():
        for when, m in log_times(b.procs.procs[w].log, pattern):
            i = int(m[1])
            if when >= t_kill and i in lost and i not in taken:
                taken[i] = when
    # When the leader first wrote an assignment without the victim.
    detect = [a for a in cl.watcher.assignments_after(t_kill - 1)
              if a["written_at"] >= t_kill and victim not in a["workers"]]
    out: dict[str, Any] = {
        "victim": victim, "islands": sorted(lost),
        "estimate": c.recovery_estimate(b.calls_s(len(cl.live_workers()))),
        "cadence": c.as_dict(),
        "last_heartbeat_before_kill_s": round(t_kill - last_beat, 2) if last_beat else None,
        "declared_dead_s": round(detect[0]["written_at"] - t_kill, 2) if detect else None,
    }
    if len(taken) == len(lost) and lost:
        out["recovery_s"] = round(max(taken.values()) - t_kill, 2)
        out["source"] = "worker logs: island taken into the new owner's engine"
    elif len(claimed) == len(lost) and lost:
        out["recovery_s"] = round(max(s for _, s in claimed.values()) - t_kill, 2)
        out["source"] = "HEAD written_at of the claiming write"
    else:
        out["recovery_s"] = None
        out["source"] = f"not all islands recovered within {limit:g}s"
    out["per_island_s"] = {str(i): round(taken[i] - t_kill, 2) for i in sorted(taken)}
    out["claimed_by"] = {str(i): claimed[i][0] for i in sorted(claimed)}
    out["confirmed_by_heartbeat_s"] = (round(max(hosted.values()) - t_kill, 2)
                                       if len(hosted) == len(lost) and lost else None)
    out["head_advanced_s"] = (round(max(advanced.values()) - t_kill, 2)
                              if len(advanced) == len(lost) and lost else None)
    def s_(v: float | None) -> str:
        return "-" if v is None else f"{v}s"

    b.say(f"{tag}: recovery {s_(out['recovery_s'])} (declared dead at "
          f"{s_(out['declared_dead_s'])}, stepping confirmed by heartbeat at "
          f"{s_(out['confirmed_by_heartbeat_s'])}, HEAD generations advanced by "
          f"{s_(out['head_advanced_s'])})")
    return out


def fault_phase(b: Bench, cl: Cluster, with_recovery: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"cluster": cl.label, "workers": cl.n}
    standby = f"{cl.label}-standby"
    b.start_coordinator(cl, standby)
    # The candidate watches the lease from its first cycle; give it one.
    time.sleep(cl.cadence.cycle_s + 2.0)
    cl.check_alive()
    out["failover"] = failover(b, cl, standby, "failover")
    if not with_recovery:
        out["recovery"] = {}
        return out
    if not b.args.quick:
        b.start_coordinator(cl, f"{cl.label}-standby2")
    settle = cl.cadence.heartbeat_s + cl.cadence.poll_s + 1
    cl.wait_steady(30 + settle)
    time.sleep(settle)
    out["recovery"] = recovery(b, cl, "recovery")
    if not b.args.quick:
        time.sleep(cl.cadence.cycle_s + 1)
        out["failover_after_worker_death"] = failover(b, cl, f"{cl.label}-standby2",
                                                      "failover after a worker death")
    return out


def frugal_phase(b: Bench, n: int) -> dict[str, Any]:
    c = b.frugal
    cl = Cluster(b, f"frugal-n{n}", c, n)
    cl.start()
    try:
        cl.wait_steady(b.warmup_timeout + c.heartbeat_s)
        time.sleep(c.heartbeat_s + 0.5)
        window = max(b.duration, c.checkpoint_s + c.heartbeat_s + 10)
        h0, t0 = cl.heartbeats(), time.time()
        end = time.monotonic() + window
        next_line = time.monotonic() + b.progress_every
        while (now := time.monotonic()) < end:
            cl.check_alive()
            if now >= next_line:
                next_line += max(b.progress_every, 10)
                b.say(cl.line(f"window {window - (end - now):4.0f}/{window:g}s"))
            time.sleep(0.5)
        h1 = cl.heartbeats()
        stats = window_stats(cl, h0, h1, {}, {}, time.time() - t0)
        ops = {k: (v / stats["worker_hours"] if stats["worker_hours"] else None)
               for k, v in stats["ops"].items()}
        rec = recovery(b, cl, "frugal recovery", wait_advance=False)
    finally:
        cl.stop()
    return {"workers": n, "window_s": round(window, 1), "worker_ops_per_hour": ops,
            "islands_per_worker": {w: len(v) for w, v in cl.hosting(h1).items()},
            "recovery": rec}


# -- summary -----------------------------------------------------------------------------

def summarise(b: Bench, phases: dict[int, dict], faults: dict | None,
              frugal: dict | None) -> dict[str, Any]:
    a = b.args
    ns = sorted(phases)
    base = phases[ns[0]]["evals_per_s"] if ns and ns[0] == 1 else None
    multiplier = {str(n): (round(phases[n]["evals_per_s"] / base, 3) if base else None)
                  for n in ns}
    if base:
        multiplier["1"] = 1.0

    # checkpoint overhead
    by_n = {str(n): phases[n]["checkpoint_blocked_share"] for n in ns}
    ck = {"uploads": 0, "seconds_sum": 0.0, "bytes_raw": 0, "bytes_compressed": 0,
          "failures": 0}
    buckets: dict[str, float] = {}
    for n in ns:
        for k in ck:
            ck[k] += phases[n]["checkpoint"][k]
        for le, v in phases[n]["upload_buckets"].items():
            buckets[le] = buckets.get(le, 0) + v
    shares = [v for v in by_n.values() if v is not None]
    checkpoint = {
        "share": max(shares) if shares else None,
        "share_by_workers": by_n,
        "definition": "sum over workers of heartbeat checkpoint_blocked_s deltas / sum of "
                      "their window wall times (each worker on its own written_at clock)",
        "uploads": ck["uploads"], "failures": ck["failures"],
        "upload_seconds": {
            "mean": ck["seconds_sum"] / ck["uploads"] if ck["uploads"] else None,
            "p50": quantile_from_buckets(buckets, 0.5),
            "p95": quantile_from_buckets(buckets, 0.95),
            "p50_bucket": bucket_range(buckets, 0.5), "p95_bucket": bucket_range(buckets, 0.95),
            "source": "workers' heartbeat histograms (bounds 0.05, 0.1, 0.25, 0.5, 1, ... s) "
                      "over the windows; p50/p95 interpolated as Prometheus "
                      "histogram_quantile does, the mean is exact"},
        "bytes_per_checkpoint": {
            "raw": ck["bytes_raw"] / ck["uploads"] if ck["uploads"] else None,
            "compressed": ck["bytes_compressed"] / ck["uploads"] if ck["uploads"] else None,
            "ratio": ck["bytes_raw"] / ck["bytes_compressed"] if ck["bytes_compressed"]
            else None,
            "what": "per island checkpoint; raw = the snapshot's arrays as the worker counts "
                    "them (bytes_raw_total), compressed = the blob written, which also "
                    "carries the elite frame (top min(elite_size, pop) genomes again)",
            "sample": phases[ns[-1]].get("sample_checkpoint") if ns else None},
    }

    # merge overhead
    m_shares = {str(n): phases[n]["leader"]["merge_share"] for n in ns}
    m_buckets: dict[str, float] = {}
    m_sum = m_count = 0.0
    for n in ns:
        m_sum += phases[n]["leader"]["merge_seconds_sum"]
        m_count += phases[n]["leader"]["merges"]
        for le, v in phases[n]["leader"]["merge_buckets"].items():
            m_buckets[le] = m_buckets.get(le, 0) + v
    ms = [v for v in m_shares.values() if v is not None]
    merge = {
        "share": max(ms) if ms else None, "share_by_workers": m_shares,
        "definition": "islandsync_merge_seconds_sum delta from the leader's /metrics / window "
                      "wall time",
        "merges": m_count,
        "merge_seconds": {"mean": m_sum / m_count if m_count else None,
                          "p50": quantile_from_buckets(m_buckets, 0.5),
                          "p95": quantile_from_buckets(m_buckets, 0.95)},
        "candidates": max((phases[n]["leader"]["merge_candidates"] or 0 for n in ns),
                          default=None),
        "duplicates_removed_by_merges": sum(phases[n]["leader"]["duplicates_removed"]
                                            for n in ns),
    }

    # bucket operations and cost
    big = ns[-1]
    ipw = a.islands / big
    dflt = phases[big]
    w_ops = dflt["worker_ops_per_hour"]
    lead_ops = dflt["leader"]["ops_per_hour"]
    epochs_h = dflt["elite_epochs_per_hour"]
    model_d = worker_ops_model(b.default, ipw, epochs_h)
    lead_model_d = leader_ops_model(b.default, a.islands, big, epochs_h)
    default_rec = (faults or {}).get("recovery") or {}
    cad_default = {
        "cadence": b.default.as_dict(), "workers": big, "islands_per_worker": ipw,
        "worker": {"A": round(w_ops["A"]), "B": round(w_ops["B"]), "source": "measured",
                   "model": model_d,
                   "cost_per_worker_month_usd": round(cost_per_month(w_ops["A"], w_ops["B"]), 2)},
        "by_workers": {str(n): {k: round(v) for k, v in phases[n]["worker_ops_per_hour"].items()
                                if v is not None} for n in ns},
        "leader": {"A": round(lead_ops["A"]), "B": round(lead_ops["B"]), "source": "measured",
                   "model": lead_model_d,
                   "cost_per_month_usd": round(cost_per_month(lead_ops["A"], lead_ops["B"]), 2)},
        "recovery_s": default_rec.get("recovery_s"),
        "recovery_source": "measured" if default_rec.get("recovery_s") is not None
        else "estimated",
        "recovery_estimate": b.default.recovery_estimate(b.calls_s(big)),
    }
    fr = b.frugal
    fr_epochs = min(3600 / fr.cycle_s, big * 3600 / fr.checkpoint_s)
    model_f = worker_ops_model(fr, ipw, fr_epochs)
    lead_model_f = leader_ops_model(fr, a.islands, big, fr_epochs)
    if frugal is not None and frugal["worker_ops_per_hour"].get("A") is not None:
        f_ops, f_src = frugal["worker_ops_per_hour"], "measured"
    else:
        f_ops, f_src = model_f, "estimated (model)"
    # The leader's own cadence (cycle, lease) does not change; only what it reads does.
    f_rec = (frugal or {}).get("recovery", {}).get("recovery_s")
    cad_frugal = {
        "cadence": fr.as_dict(), "workers": big, "islands_per_worker": ipw,
        "worker": {"A": round(f_ops["A"]), "B": round(f_ops["B"]), "source": f_src,
                   "model": model_f,
                   "cost_per_worker_month_usd": round(cost_per_month(f_ops["A"], f_ops["B"]), 2)},
        "leader": {"A": lead_model_f["A"], "B": lead_model_f["B"], "source": "estimated (model)",
                   "cost_per_month_usd": round(cost_per_month(lead_model_f["A"],
                                                              lead_model_f["B"]), 2)},
        "recovery_s": f_rec if f_rec is not None else fr.recovery_estimate(
            b.calls_s(big))["expected_s"],
        "recovery_source": "measured" if f_rec is not None else "estimated",
        "recovery_estimate": fr.recovery_estimate(b.calls_s(big)),
    }
    prices = PRICES | {"as_of": _dt.date.today().isoformat() + " (the run's date)"}
    ops = {"default": cad_default, "frugal": cad_frugal, "prices": prices,
           "hours_per_month": HOURS_PER_MONTH,
           "note": "CountingStore counts delete as class A; GCS lists object DELETE as a free "
                   "operation, so class A here is an upper bound by about one delete per "
                   "island checkpoint."}

    rec = (faults or {}).get("recovery") or {}
    fo = (faults or {}).get("failover") or {}
    elite = {"epochs_seen": 0, "duplicates": 0, "epochs_with_duplicates": [], "unreadable": 0}
    for w in b.watchers:
        s = w.elite_summary()
        elite["epochs_seen"] += s["epochs_seen"]
        elite["duplicates"] += s["duplicates"]
        elite["epochs_with_duplicates"] += s["epochs_with_duplicates"]
        elite["unreadable"] += s["unreadable"]

    lease = b.default.lease_s
    targets = []

    def target(measure: str, goal: str, value: Any, ok: bool | None, shown: str) -> None:
        targets.append({"measure": measure, "target": goal, "value": value, "shown": shown,
                        "verdict": "n/a" if ok is None else ("PASS" if ok else "MISS")})

    for n in ns:
        if n == 1:
            continue
        v = multiplier.get(str(n))
        target(f"throughput multiplier, N={n}", f">= {0.95 * n:.2f} (0.95 x N)", v,
               None if v is None else v >= 0.95 * n, "-" if v is None else f"{v:.2f}")
    cs = checkpoint["share"]
    target("checkpoint overhead (worst N)", "< 1%", cs, None if cs is None else cs < 0.01,
           "-" if cs is None else f"{100 * cs:.3f}%")
    r = rec.get("recovery_s")
    est = b.default.recovery_estimate(b.calls_s(big))
    target("recovery (kill -9 a worker)", "< 20 s", r, None if r is None else r < 20,
           "not recovered" if faults and r is None else (
               "-" if r is None else f"{r:.1f} s (one kill; the cadence allows "
                                     f"{est['best_s']:g}-{est['worst_s']:g} s)"))
    f = fo.get("failover_s")
    fest = b.default.failover_estimate(leader_calls_s(a.store_latency, a.islands, big))
    target("failover (kill -9 the leader)", f"< {2 * lease:g} s (2 x lease {lease:g} s)", f,
           None if f is None else f < 2 * lease,
           "no new leader" if faults and f is None else (
               "-" if f is None else f"{f:.1f} s (one kill; takeover "
                                     f"{fest['best_s']:g}-{fest['worst_s']:g} s)"))
    target("duplicates in any elite epoch", "0", elite["duplicates"],
           elite["duplicates"] == 0 if elite["epochs_seen"] else None,
           f"{elite['duplicates']} in {elite['epochs_seen']} epochs")
    conditions = (a.workload == "device-bound" and not a.quick
                  and abs(a.store_latency - 0.05) < 1e-9)

    return {
        "throughput_multiplier": multiplier,
        "checkpoint_overhead": checkpoint,
        "merge_overhead": merge,
        "recovery_s": r,
        "failover_s": f,
        "duplicates": elite["duplicates"],
        "ops_per_worker_hour": ops,
        "targets": {"conditions_match": conditions,
                    "conditions": "device-bound workload, default cadence, 50 ms store "
                                  "latency, not --quick", "rows": targets},
        "details": {"throughput": {str(n): phases[n] for n in ns}, "faults": faults,
                    "frugal": frugal, "elite": elite, "notes": b.notes},
    }


def fmt_rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def markdown(result: dict[str, Any]) -> str:
    meta = result["benchmark"]
    s = meta["settings"]
    m = meta["machine"]
    lines = [
        "# Distributed benchmark",
        "",
        f"`{meta['command']}`",
        "",
        (f"{meta['started_at']} - {meta['wall_s']:.0f} s on {m['cpu_count']} CPU(s), "
        f"{m['platform']}, Python {m['python']}, torch {m['torch']}; load average "
        f"{m['loadavg_at_start']} at the start (a machine shared with other work)."),
        "",
        f"Workload **{s['workload']}**"
        + (f" (a stand-in for a saturated notebook GPU: the fitness sleeps "
           f"{s['device_us_per_row']:g} us per genome of each batch and returns sphere; the "
           f"algorithm's own tensor work still runs on the CPU)" if s["workload"] ==
           "device-bound" else " (built-in rastrigin, real torch work on the CPU: on 2 "
           "shared cores more than 2 workers cannot scale)")
        + f"; {s['islands']} islands of {s['pop']}, dim {s['dim']}, DE; store "
        f"{s['store']} with {1000 * s['store_latency_s']:g} ms added per bucket call; "
        f"window {s['duration_s']:g} s per N; one leader (`islandsync coordinate`) and N "
        f"workers (`islandsync worker --no-coordinator --device cpu`) as processes.",
        "",
        "## Targets",
        "",
        "| measure | target | measured | verdict |",
        "| --- | --- | --- | --- |",
    ]
    for t in result["targets"]["rows"]:
        lines.append(f"| {t['measure']} | {t['target']} | {t['shown']} | {t['verdict']} |")
    if not result["targets"]["conditions_match"]:
        lines += ["", (f"(The targets are set for {result['targets']['conditions']}; this run "
                      "differs, so its verdicts are indicative only.)")]
    lines += ["", "## Throughput by N", "",
              ("| N | islands per worker | evals/s (aggregate) | evals/s per worker | "
               "multiplier | checkpoint blocked | leader merging | worker CPU (mean) | "
               "generations/s per worker | ops/worker-h A / B | CPU cores busy: other users "
               "+ this run's processes (of the machine's) |"),
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n, ph in result["details"]["throughput"].items():
        per = ph["per_worker"]
        cpus = [p["cpu_share"] for p in per.values() if p["cpu_share"] is not None]
        gens = [p["generations_per_s"] for p in per.values()]
        ops = ph["worker_ops_per_hour"]
        mc = ph.get("machine_cpu") or {}
        busy = ("-" if mc.get("others_cores") is None else
                f"{mc['others_cores']:.2f} + {mc['this_cluster_cores']:.2f} (of {mc['cores']})")
        lines.append(
            f"| {n} | {'/'.join(str(v) for v in ph['islands_per_worker'].values())} | "
            f"{fmt_rate(ph['evals_per_s'])} | "
            f"{', '.join(fmt_rate(p['evals_per_s']) for p in per.values())} | "
            f"{result['throughput_multiplier'].get(n) or '-'} | "
            f"{100 * (ph['checkpoint_blocked_share'] or 0):.3f}% | "
            f"{100 * (ph['leader']['merge_share'] or 0):.3f}% | "
            f"{(100 * sum(cpus) / len(cpus)) if cpus else 0:.0f}% | "
            f"{(sum(gens) / len(gens)) if gens else 0:.1f} | "
            f"{fmt_rate(ops.get('A'))} / {fmt_rate(ops.get('B'))} | {busy} |")
    if s["workload"] == "device-bound":
        lines += ["", (f"A worker's ceiling is {1e6 / s['device_us_per_row']:,.0f} evals/s "
                      f"(one genome per {s['device_us_per_row']:g} us of 'device' time); the rest "
                      f"of each generation (the algorithm's tensor work and the loop, on the CPU "
                      f"here) comes on top, once per generation, so a worker hosting fewer "
                      f"islands pays it more often per genome, and it slows down when other "
                      f"processes hold the machine's cores.")]
    ck = result["checkpoint_overhead"]
    up, by = ck["upload_seconds"], ck["bytes_per_checkpoint"]
    ratio = "-" if by["ratio"] is None else f"{by['ratio']:.2f}"
    mo = result["merge_overhead"]

    def sec(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f} s"

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{1000 * v:.2f} ms"

    sample = by.get("sample") or {}
    sample_text = ""
    if sample:
        sample_text = (f" One blob read back: {sample['blob_bytes']:,} bytes for "
                       f"{sample['frames_raw_bytes']:,} raw bytes of frames, of which the "
                       f"elite frame is {sample['elite_frame_raw_bytes']:,} "
                       f"({sample['frames_raw_bytes'] / sample['blob_bytes']:.2f}x on what "
                       f"is really written).")
    lines += [
        "",
        "## Checkpoints and merges",
        "",
        (f"- Checkpoint uploads in the windows: {ck['uploads']} ({ck['failures']} failed); "
        f"upload time mean {sec(up['mean'])}, p50 {sec(up['p50'])} (bucket {up['p50_bucket']}),"
        f" p95 {sec(up['p95'])} (bucket {up['p95_bucket']}); each upload is two bucket writes "
        f"(blob, then HEAD by CAS) in the background thread."),
        (f"- Bytes per island checkpoint: {fmt_rate(by['raw'])} raw, "
        f"{fmt_rate(by['compressed'])} compressed "
        f"({ratio}x; raw as the workers count it, without the elite frame).{sample_text}"),
        (f"- Merges in the windows: {mo['merges']:.0f}, mean {ms(mo['merge_seconds']['mean'])}"
        f" (exact), p95 {ms(mo['merge_seconds']['p95'])} (interpolated in the histogram's "
        f"first bucket, (0, 5 ms]), {mo['candidates'] or 0:.0f} candidate genomes in "
        f"the last merge; worst share of the leader's wall time "
        f"{100 * (mo['share'] or 0):.3f}%. Duplicate genomes dropped by merges (copies from "
        f"migration, as expected): {mo['duplicates_removed_by_merges']:.0f}."),
    ]
    faults = result["details"]["faults"]
    if faults:
        fo, rc = faults["failover"], faults["recovery"]
        lines += ["", "## Faults", "",
                  (f"- Failover: leader killed with one candidate watching; the candidate took "
                  f"the lease {fo.get('takeover_s')} s later and wrote the term "
                  f"{fo.get('new_term')} assignment at **{fo.get('failover_s')} s** (its first "
                  f"cycle's reads and merge before the assignment: {fo.get('first_cycle_s')} "
                  f"s). From the lease rules (lease {fo['lease_s']:g} s, renewed every "
                  f"{fo['lease_s'] / 3:g} s, cycle {fo['cycle_s']:g} s) and about "
                  f"{fo['estimate']['bucket_calls_s']:g} s of first-cycle bucket calls, expect "
                  f"{fo['estimate']['best_s']:g}-{fo['estimate']['worst_s']:g} s after the "
                  f"kill.")]
        if rc:
            lines += [
                  (f"- Recovery: {rc['victim']} killed (islands {rc['islands']}; its last "
                  f"heartbeat {rc['last_heartbeat_before_kill_s']} s before). The leader wrote "
                  f"an assignment without it at {rc['declared_dead_s']} s; the islands were "
                  f"taken into other workers' engines at {rc['per_island_s']} s, so "
                  f"**recovery {rc['recovery_s']} s** ({rc['source']}); stepping confirmed by "
                  f"heartbeats at {rc['confirmed_by_heartbeat_s']} s, HEAD generations past "
                  f"the pre-kill checkpoint by {rc['head_advanced_s']} s. From the cadence "
                  f"(worker_timeout {rc['cadence']['worker_timeout_s']:g} s, heartbeat "
                  f"{rc['cadence']['heartbeat_interval_s']:g} s, cycle "
                  f"{rc['cadence']['coordinator_cycle_s']:g} s, poll "
                  f"{rc['cadence']['assignment_poll_s']:g} s) and about "
                  f"{rc['estimate']['bucket_calls_s']:g} s of bucket calls on the way (the "
                  f"leader's cycle up to its assignment write, the claim), expect "
                  f"{rc['estimate']['best_s']:g}-{rc['estimate']['worst_s']:g} s, typically "
                  f"{rc['estimate']['expected_s']:g} s.")]
        fa = faults.get("failover_after_worker_death")
        if fa:
            gave = fa.get("islands_assigned_to_dead_workers") or {}
            lines.append(
                f"- Failover after a worker death: the new leader's first assignment "
                f"({fa.get('failover_s')} s after the kill) listed dead worker(s) "
                f"{fa.get('dead_workers_listed_alive')} as alive (a new leader's liveness "
                f"starts empty)"
                + ("" if gave else ", but gave them no islands (placement gives islands only "
                   "to workers whose heartbeat it has seen change): the heartbeats after that "
                   "assignment (checked until "
                   f"{fa.get('all_islands_hosted_again_s')} s after the kill) still show "
                   "every island hosted by a live worker")
                + (f" and gave them islands {sorted(gave)}: their live owners released them "
                   f"and they stood idle {fa.get('idle_islands_s')} s (release to re-claim, "
                   f"from the workers' logs) until the new leader's own worker timeout ran "
                   f"out; every island was hosted by a live worker again (heartbeats) "
                   f"{fa.get('all_islands_hosted_again_s')} s after the kill" if gave else "")
                + ".")
    ops = result["ops_per_worker_hour"]
    lines += ["", "## Bucket operations and cost", "",
              (f"Prices: class A ${ops['prices']['class_a_per_1000']} and class B "
              f"${ops['prices']['class_b_per_1000']} per 1,000 operations "
              f"({ops['prices']['source']}; {ops['prices']['as_of']}); "
              f"{ops['hours_per_month']:g} hours per month; no free tier. {ops['note']}"),
              "",
              ("| cadence | heartbeat / checkpoint / poll / worker timeout | worker ops/h A / B "
              "| $ per worker-month | leader ops/h A / B | leader $ per month | recovery |"),
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("default", "frugal"):
        c = ops[name]
        cd = c["cadence"]
        w, ld = c["worker"], c["leader"]
        rec = c["recovery_s"]
        rec_text = "-" if rec is None else f"{rec:.0f} s ({c['recovery_source']})"
        if c["recovery_source"] == "estimated":
            e = c["recovery_estimate"]
            rec_text = f"~{e['expected_s']:.0f} s ({e['best_s']:.0f}-{e['worst_s']:.0f}; estimated)"
        lines.append(
            f"| {name} | {cd['heartbeat_interval_s']:g} s / {cd['checkpoint_interval_s']:g} s / "
            f"{cd['assignment_poll_s']:g} s / {cd['worker_timeout_s']:g} s | "
            f"{fmt_rate(w['A'])} / {fmt_rate(w['B'])} ({w['source']}) | "
            f"${w['cost_per_worker_month_usd']:.2f} | {fmt_rate(ld['A'])} / {fmt_rate(ld['B'])} "
            f"({ld['source']}) | ${ld['cost_per_month_usd']:.2f} | {rec_text} |")
    md = ops["default"]["worker"]["model"]
    ckpt_s = s["cadences"]["default"]["checkpoint_interval_s"]
    early = all(ph.get("window_after_worker_start_s", [0, math.inf])[1] < 3 * ckpt_s
                for ph in result["details"]["throughput"].values())
    lines += ["", f"Where a follower worker's operations go at the default cadence (a model read "
                  f"off the code, {ops['default']['islands_per_worker']:g} islands per worker; "
                  f"measured A {ops['default']['worker']['A']:,} / B "
                  f"{ops['default']['worker']['B']:,} per hour, model A {md['A']:,} / B "
                  f"{md['B']:,}): "
              + "; ".join(f"{src} A {v['A']:,} B {v['B']:,}" for src, v in
                          md["by_source"].items())
              + (". The windows end before each island's fourth checkpoint, so they hold no "
                 "deletes (the uploader keeps 3 checkpoints per island)" if early else
                 ". The windows include deletes of old checkpoints (the uploader keeps 3 per "
                 "island), which CountingStore counts as class A")
              + f"; in a long run CountingStore counts about {md['A_counted_steady']:,} class A "
                "per hour, the deletes among them, which GCS does not bill."]
    if result["details"]["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result["details"]["notes"]]
    lines += ["", f"Machine: {json.dumps(m)}", ""]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------

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


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.render:
        report = markdown(json.loads(Path(args.render).read_text()))
        if args.markdown:
            Path(args.markdown).write_text(report)
        else:
            print(report)
        return 0
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
    os.environ.pop(LATENCY_ENV, None)  # never for this process: see the module doc
    bench = Bench(args, argv)
    global LAST_BENCH
    LAST_BENCH = bench
    exe = sys.executable
    if os.path.abspath(exe).startswith(os.getcwd() + os.sep):
        exe = os.path.relpath(exe)
    command = " ".join(shlex.quote(x) for x in [exe, "benchmarks/distributed.py", *argv])
    started_at = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    t0 = time.monotonic()

    def on_signal(num: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(num).name)

    old = signal.signal(signal.SIGTERM, on_signal)
    phases: dict[int, dict] = {}
    faults = frugal = None
    machine = machine_info()
    code_start = code_fingerprint()
    try:
        bench.start_store()
        bench.say(f"distributed benchmark: workers {args.workers}, {args.duration:g}s windows, "
                  f"{args.workload}, store {args.store} +{1000 * args.store_latency:g} ms, "
                  f"{args.islands} islands; work folder {bench.workdir}")
        big = max(args.workers)
        for n in args.workers:
            keep = n == big and n >= 2
            phases[n], cl = throughput_phase(bench, n, keep_running=keep)
            if keep:
                try:
                    faults = fault_phase(bench, cl, with_recovery=args.cadence != "frugal")
                finally:
                    cl.stop()
        if faults is None:
            cl = Cluster(bench, "faults-n2", bench.default, 2)
            cl.start()
            try:
                cl.wait_steady(bench.warmup_timeout)
                faults = fault_phase(bench, cl, with_recovery=args.cadence != "frugal")
            finally:
                cl.stop()
        if args.cadence in ("frugal", "both"):
            frugal = frugal_phase(bench, max(2, big))
    except KeyboardInterrupt:
        bench.say("interrupted: stopping every process")
        raise
    finally:
        bench.procs.kill_all()
        for w in bench.watchers:
            w._stop.set()
        signal.signal(signal.SIGTERM, old)
        if bench.gcs_url:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
    code_end = code_fingerprint()
    if code_end["sha256"] != code_start["sha256"]:
        bench.notes.append(
            f"the islandsync sources changed during this run ({code_start['sha256']} -> "
            f"{code_end['sha256']}, newest file {code_end['newest_file']}): processes started "
            f"at different times may have run different code")
        bench.say("WARNING: " + bench.notes[-1])
    result = {"benchmark": {
        "code": {"start": code_start, "end": code_end},
        "name": "distributed", "command": command, "started_at": started_at,
        "wall_s": round(time.monotonic() - t0, 1), "machine": machine | {
            "loadavg_at_end": loadavg()},
        "settings": {"workers": args.workers, "duration_s": args.duration,
                     "workload": args.workload, "store": args.store,
                     "store_latency_s": args.store_latency, "islands": args.islands,
                     "pop": args.pop, "dim": args.dim, "algorithm": "de",
                     "device_us_per_row": args.device_us if args.workload == "device-bound"
                     else None, "cadence": args.cadence, "quick": args.quick,
                     "cadences": {"default": bench.default.as_dict(),
                                  "frugal": bench.frugal.as_dict()},
                     "workdir": str(bench.workdir) if args.keep else None}}}
    result.update(summarise(bench, phases, faults, frugal))
    text = json.dumps(result, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text + "\n")
    report = markdown(result)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(report)
    print()
    print(report)
    if not args.keep and not args.workdir:
        shutil.rmtree(bench.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
