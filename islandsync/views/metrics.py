"""Prometheus metrics: the coordinator re-exports what workers report in their heartbeats.

Workers in notebooks sit behind NAT and cannot be scraped, so each heartbeat carries the
worker's numbers (rate, evaluation and checkpoint totals, upload-time histogram, bucket
operation counts) and the coordinator serves them all on one ``/metrics`` endpoint:

* :class:`CoordinatorMetrics` — a custom collector rebuilt from the latest snapshot of
  heartbeats, islands and elite, plus ordinary metrics for the coordinator's own events (leader
  term, merges, reassignments);
* :class:`WorkerMetrics` — the same per-worker families for one local worker that serves its
  own ``/metrics``;
* :func:`serve` — an HTTP server on 127.0.0.1 by default (``--metrics-port``, default 9464).

Heartbeats come from a shared bucket, so they are untrusted: label values come only from
worker ids, platform names, island numbers, reasons and operation names, each reduced to
``[A-Za-z0-9_.:-]`` and at most 64 characters; values that are not finite numbers (strings,
booleans, NaN, missing fields of an older heartbeat) are left out, never exported as NaN, and
nothing here ever raises on heartbeat content. ``device`` and every other free-text field are
never exported.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from islandsync.bucket.records import UPLOAD_BUCKETS
from islandsync.errors import ConfigError

DEFAULT_PORT = 9464
DEFAULT_HOST = "127.0.0.1"
MERGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PLATFORMS = ("kaggle", "colab", "paperspace", "local")
REASONS = ("dead", "drain", "balance", "new", "unplaced")
OPERATIONS = ("get", "put", "stat", "list", "delete")
COORDINATOR = "coordinator"  # the worker label of the coordinator's own store counts
MAX_LABEL_LEN = 64
MAX_WORKERS = 1000
MAX_ISLANDS = 10000
MAX_BUCKETS = 64

_W, _WP = ("worker",), ("worker", "platform")
#: Every exported family: (name as in /metrics, type, labels, help). The README table is
#: generated from this (:func:`metrics_table`).
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("islandsync_leader_term", "gauge", (),
     "Lease term this coordinator holds or last saw (the fencing token; +1 on each takeover)."),
    ("islandsync_is_leader", "gauge", (), "1 while this coordinator holds the run's lease, else 0."),
    ("islandsync_lease_renewal_failures_total", "counter", (),
     "Lease renewals by this coordinator that failed."),
    ("islandsync_workers_alive", "gauge", ("platform",),
     "Workers with a live heartbeat that have not exited, by platform."),
    ("islandsync_worker_up", "gauge", _WP,
     "1 while the worker's heartbeat is live and it has not exited, else 0."),
    ("islandsync_worker_exited", "gauge", _WP,
     "1 when the worker's last heartbeat says it exited cleanly, else 0."),
    ("islandsync_worker_evaluations_per_second", "gauge", _WP,
     "Fitness evaluations per second the worker last reported (0 once it is down)."),
    ("islandsync_worker_evaluations_total", "counter", _WP,
     "Fitness evaluations the worker has done since it started."),
    ("islandsync_worker_generations_total", "counter", _WP,
     "Generations (steps of all its islands together) the worker has run since it started."),
    ("islandsync_worker_islands", "gauge", _WP, "Islands the worker hosts (0 once it is down)."),
    ("islandsync_worker_max_islands", "gauge", _WP, "Most islands the worker accepts."),
    ("islandsync_worker_deadline_seconds", "gauge", _WP,
     "Seconds the worker had left before its platform stops it, at its last heartbeat."),
    ("islandsync_island_generation", "gauge", ("island", "worker"),
     "Generation of the island's latest checkpoint; worker is its owner (empty when unowned)."),
    ("islandsync_island_best_fitness", "gauge", ("island",),
     "Best fitness in the island's latest checkpoint."),
    ("islandsync_global_best_fitness", "gauge", (), "Best fitness in the merged global elite."),
    ("islandsync_checkpoint_upload_seconds", "histogram", _W,
     "Time to upload one checkpoint, as the worker reports it."),
    ("islandsync_checkpoint_bytes_total", "counter", ("worker", "kind"),
     "Checkpoint bytes uploaded, before (kind=raw) and after (kind=compressed) compression."),
    ("islandsync_checkpoint_failures_total", "counter", _W, "Checkpoint uploads that failed."),
    ("islandsync_island_restarts_from_seed_total", "counter", _W,
     "Islands the worker restarted from the seed because no checkpoint of them was readable."),
    ("islandsync_checkpoint_blocked_seconds_total", "counter", _W,
     "Seconds the worker's evolution loop was blocked on checkpointing."),
    ("islandsync_merge_seconds", "histogram", (),
     "Time to merge the islands' elites into one global elite."),
    ("islandsync_merge_candidates", "gauge", (), "Candidate genomes in the last merge."),
    ("islandsync_duplicates_removed_total", "counter", (),
     "Duplicate genomes (equal genome ids) removed by merges."),
    ("islandsync_reassignments_total", "counter", ("reason",),
     "Islands given to another worker, by reason: dead, drain, balance, new, unplaced."),
    ("islandsync_store_errors_total", "counter", ("worker", "operation"),
     "Failed bucket operations, not counting not-found and lost CAS races."),
    ("islandsync_bucket_operations_total", "counter", ("worker", "class"),
     "Bucket operations by pricing class, the same on GCS, S3 and R2 (A: put, list; B: get, "
     "stat; free: delete)."),
)
METRIC_NAMES: tuple[str, ...] = tuple(m[0] for m in METRICS)
_SPEC = {m[0]: m for m in METRICS}
#: Families a :class:`WorkerMetrics` exports: those labelled by worker first.
WORKER_METRIC_NAMES: tuple[str, ...] = tuple(m[0] for m in METRICS if m[2][:1] == ("worker",))
_ORDINARY = ("islandsync_leader_term", "islandsync_is_leader", "islandsync_merge_seconds",
             "islandsync_merge_candidates", "islandsync_duplicates_removed_total",
             "islandsync_reassignments_total")
_BAD_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.:-]")


def label_value(value: Any, default: str = "unknown") -> str:
    """A safe label value: ``[A-Za-z0-9_.:-]`` only, at most 64 characters; ``default`` for
    anything that is not a non-empty string."""
    if not isinstance(value, str) or not value:
        return default
    return _BAD_LABEL_CHARS.sub("_", value[:MAX_LABEL_LEN])


def _num(value: Any) -> float | None:
    """A finite number, or None (strings, booleans, NaN, inf and missing all give None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        out = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return out if math.isfinite(out) else None


def _count(value: Any) -> float | None:
    """A finite number >= 0 (what a counter may hold), or None."""
    out = _num(value)
    return out if out is not None and out >= 0 else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def upload_histogram(seconds: Iterable[float]) -> dict:
    """The heartbeat's upload-time fields from raw upload durations (seconds):
    ``{"uploads": n, "seconds_sum": s, "seconds_buckets": {"0.05": c, ..., "+Inf": n}}``,
    bucket counts cumulative (Prometheus style) over :data:`UPLOAD_BUCKETS`. Non-finite or
    negative durations are skipped."""
    values = [v for v in (_count(s) for s in seconds) if v is not None]
    buckets = {f"{b:g}": sum(1 for v in values if v <= b) for b in UPLOAD_BUCKETS}
    buckets["+Inf"] = len(values)
    return {"uploads": len(values), "seconds_sum": math.fsum(values), "seconds_buckets": buckets}


def _histogram(buckets: Any, total: Any) -> tuple[list[tuple[str, float]], float] | None:
    """Validated cumulative buckets (sorted, ``+Inf`` last) and sum, or None when malformed."""
    total = _count(total)
    if not isinstance(buckets, Mapping) or total is None or not 0 < len(buckets) <= MAX_BUCKETS:
        return None
    parsed: dict[float, float] = {}
    for key, value in buckets.items():
        try:
            bound = float(key)
        except (TypeError, ValueError, OverflowError):
            return None
        count = _count(value)
        if count is None or math.isnan(bound) or bound in parsed:
            return None
        parsed[bound] = count
    if math.inf not in parsed:
        return None
    out: list[tuple[str, float]] = []
    last = 0.0
    for bound in sorted(parsed):
        if parsed[bound] < last:  # not cumulative
            return None
        last = parsed[bound]
        out.append((floatToGoString(bound), last))
    return out, total


def _store_counts(store: Any, legacy_errors: Any = None) -> tuple[dict, dict]:
    """(ops by class, errors by operation) from a ``CountingStore.counts()``-shaped dict."""
    store = _mapping(store)
    ops = _mapping(store.get("ops"))
    errors = _mapping(store.get("errors"))
    ops_out = {c: v for c in ("A", "B", "free") if (v := _count(ops.get(c))) is not None}
    err_out = {o: v for o in OPERATIONS if (v := _count(errors.get(o))) is not None}
    if not store and (legacy := _count(legacy_errors)) is not None:
        err_out["unknown"] = legacy  # older heartbeats: one total under "store_errors"
    return ops_out, err_out


def _worker_record(worker_id: Any, heartbeat: Any, alive: bool) -> dict:
    """Everything exported for one worker, sanitised once when the snapshot is taken."""
    hb = _mapping(heartbeat)
    exited = hb.get("state") == "exited"
    up = alive and not exited
    ckpt = _mapping(hb.get("checkpoint"))
    islands = hb.get("islands")
    deadline = _num(hb.get("deadline_in_s"))
    ops, errors = _store_counts(hb.get("store"), hb.get("store_errors"))
    return {
        "worker": label_value(worker_id), "platform": label_value(hb.get("platform")),
        "up": 1.0 if up else 0.0, "exited": 1.0 if exited else 0.0,
        "rate": (_count(hb.get("rate")) if up else 0.0),
        "islands": (float(len(islands)) if isinstance(islands, list) else None) if up else 0.0,
        "max_islands": _count(hb.get("max_islands")),
        "deadline": deadline if up else None,
        "evaluations": _count(hb.get("evaluations")),
        "generations": _count(hb.get("generations")),
        "blocked": _count(hb.get("checkpoint_blocked_s")),
        "failures": _count(ckpt.get("failures")),
        "restarts": _count(ckpt.get("restarts_from_seed")),
        "raw": _count(ckpt.get("bytes_raw_total")),
        "compressed": _count(ckpt.get("bytes_compressed_total")),
        "histogram": _histogram(ckpt.get("seconds_buckets"), ckpt.get("seconds_sum")),
        "ops": ops, "errors": errors,
    }


class _Families:
    """Builds one family per name from METRICS, skipping duplicate label sets (two worker ids
    that sanitise to one label, or a worker named "coordinator") so a scrape stays valid."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        self._seen: set[tuple[str, tuple[str, ...]]] = set()
        self._families: dict[str, Metric] = {}
        for name in self.names:
            _, kind, labels, doc = _SPEC[name]
            cls = {"gauge": GaugeMetricFamily, "counter": CounterMetricFamily,
                   "histogram": HistogramMetricFamily}[kind]
            self._families[name] = cls(name, doc, labels=list(labels))

    def _new(self, name: str, labels: tuple[str, ...]) -> bool:
        key = (name, labels)
        if name not in self._families or key in self._seen:
            return False
        self._seen.add(key)
        return True

    def add(self, name: str, labels: tuple[str, ...], value: float | None) -> None:
        if value is not None and self._new(name, labels):
            self._families[name].add_metric(list(labels), value)  # type: ignore[attr-defined]

    def histogram(self, name: str, labels: tuple[str, ...], hist: Any) -> None:
        if hist is not None and self._new(name, labels):
            buckets, total = hist
            self._families[name].add_metric(list(labels), buckets, total)  # type: ignore[attr-defined]

    def store(self, worker: str, ops: Mapping[str, float], errors: Mapping[str, float]) -> None:
        for cls, value in ops.items():
            self.add("islandsync_bucket_operations_total", (worker, cls), value)
        for op, value in errors.items():
            self.add("islandsync_store_errors_total", (worker, op), value)

    def worker(self, r: Mapping[str, Any]) -> None:
        wp = (r["worker"], r["platform"])
        w = (r["worker"],)
        for name, key in (("islandsync_worker_up", "up"), ("islandsync_worker_exited", "exited"),
                          ("islandsync_worker_evaluations_per_second", "rate"),
                          ("islandsync_worker_evaluations_total", "evaluations"),
                          ("islandsync_worker_generations_total", "generations"),
                          ("islandsync_worker_islands", "islands"),
                          ("islandsync_worker_max_islands", "max_islands"),
                          ("islandsync_worker_deadline_seconds", "deadline")):
            self.add(name, wp, r[key])
        self.histogram("islandsync_checkpoint_upload_seconds", w, r["histogram"])
        self.add("islandsync_checkpoint_bytes_total", (r["worker"], "raw"), r["raw"])
        self.add("islandsync_checkpoint_bytes_total", (r["worker"], "compressed"), r["compressed"])
        self.add("islandsync_checkpoint_failures_total", w, r["failures"])
        self.add("islandsync_island_restarts_from_seed_total", w, r["restarts"])
        self.add("islandsync_checkpoint_blocked_seconds_total", w, r["blocked"])
        self.store(r["worker"], r["ops"], r["errors"])

    def __iter__(self) -> Iterator[Metric]:
        return (self._families[name] for name in self.names)


class _SnapshotCollector(Collector):
    """A custom collector: at each scrape, the families ``build()`` makes from a snapshot."""

    def __init__(self, build: Any) -> None:
        self._build = build

    def collect(self) -> Iterable[Metric]:
        return list(self._build())


class CoordinatorMetrics:
    """Everything the leader exports. Each ``observe_*`` replaces its part of the snapshot;
    a scrape builds families from the latest snapshot. Thread-safe; never raises on
    heartbeat content."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._workers: list[dict] = []
        self._islands: list[tuple[str, str, float | None, float | None]] = []
        self._global_best: float | None = None
        self._lease_failures = 0.0
        self._store: tuple[dict, dict] = ({"A": 0.0, "B": 0.0}, {o: 0.0 for o in OPERATIONS})

        def doc(name: str) -> str:
            return _SPEC[name][3]

        r = self.registry
        self._term = Gauge("islandsync_leader_term", doc("islandsync_leader_term"), registry=r)
        self._is_leader = Gauge("islandsync_is_leader", doc("islandsync_is_leader"), registry=r)
        self._merge_seconds = Histogram("islandsync_merge_seconds", doc("islandsync_merge_seconds"),
                                        buckets=MERGE_BUCKETS, registry=r)
        self._merge_candidates = Gauge("islandsync_merge_candidates",
                                       doc("islandsync_merge_candidates"), registry=r)
        self._duplicates = Counter("islandsync_duplicates_removed_total",
                                   doc("islandsync_duplicates_removed_total"), registry=r)
        self._reassignments = Counter("islandsync_reassignments_total",
                                      doc("islandsync_reassignments_total"), ["reason"], registry=r)
        for reason in REASONS:  # zero series exist from the start, so increase() works
            self._reassignments.labels(reason)
        names = [n for n in METRIC_NAMES if n not in _ORDINARY]
        r.register(_SnapshotCollector(lambda: self._collect(names)))

    def set_leader(self, term: int, is_leader: bool) -> None:
        if (value := _count(term)) is not None:
            self._term.set(value)
        self._is_leader.set(1 if is_leader else 0)

    def lease_renewal_failures(self, total: int) -> None:
        """The number of failed lease renewals so far (absolute, not an increment)."""
        if (value := _count(total)) is not None:
            with self._lock:
                self._lease_failures = value

    def observe_workers(self, heartbeats: dict[str, dict], alive: set[str]) -> None:
        """Replace the worker snapshot: ``worker_id -> heartbeat``; ``alive`` the ids whose
        heartbeat is live. An id in ``alive`` without a heartbeat is exported as up."""
        beats = dict(heartbeats) if isinstance(heartbeats, Mapping) else {}
        alive = set(alive) if isinstance(alive, (set, frozenset, list, tuple)) else set()
        for worker_id in alive:
            beats.setdefault(worker_id, {})
        ids = sorted(k for k in beats if isinstance(k, str))[:MAX_WORKERS]
        records = [_worker_record(k, beats[k], k in alive) for k in ids]
        with self._lock:
            self._workers = records

    def observe_islands(self, islands: dict[int, dict]) -> None:
        """Replace the island snapshot: ``island -> {"generation", "best", "owner"}``."""
        rows = []
        for island, info in (islands.items() if isinstance(islands, Mapping) else ()):
            if isinstance(island, bool) or not isinstance(island, int) or island < 0:
                continue
            info = _mapping(info)
            rows.append((island, str(island), label_value(info.get("owner"), ""),
                         _count(info.get("generation")), _num(info.get("best"))))
        rows.sort()
        with self._lock:
            self._islands = [row[1:] for row in rows[:MAX_ISLANDS]]

    def observe_global_best(self, best: float | None) -> None:
        with self._lock:
            self._global_best = _num(best)

    def observe_merge(self, seconds: float, candidates: int, duplicates: int) -> None:
        if (value := _count(seconds)) is not None:
            self._merge_seconds.observe(value)
        if (value := _count(candidates)) is not None:
            self._merge_candidates.set(value)
        if (value := _count(duplicates)) is not None and value > 0:
            self._duplicates.inc(value)

    def reassignment(self, reason: str, count: int = 1) -> None:
        """``count`` islands moved for ``reason`` (dead, drain, balance, new, unplaced)."""
        if (value := _count(count)) is not None and value > 0:
            self._reassignments.labels(label_value(reason)).inc(value)

    def observe_store(self, counts: dict) -> None:
        """The coordinator's own ``CountingStore.counts()`` (exported as worker="coordinator")."""
        ops, errors = _store_counts(counts)  # all keys, so no worker's samples mix in
        with self._lock:
            self._store = {"A": 0.0, "B": 0.0, **ops}, {**dict.fromkeys(OPERATIONS, 0.0), **errors}

    def _collect(self, names: Iterable[str]) -> Iterator[Metric]:
        with self._lock:
            workers, islands = self._workers, self._islands
            best, failures, store = self._global_best, self._lease_failures, self._store
        f = _Families(names)
        f.add("islandsync_lease_renewal_failures_total", (), failures)
        alive = dict.fromkeys(PLATFORMS, 0.0)
        for r in workers:
            alive[r["platform"]] = alive.get(r["platform"], 0.0) + r["up"]
        for platform, value in alive.items():
            f.add("islandsync_workers_alive", (platform,), value)
        f.store(COORDINATOR, *store)  # first, so a worker named "coordinator" cannot clash
        for r in workers:
            f.worker(r)
        for island, owner, generation, island_best in islands:
            f.add("islandsync_island_generation", (island, owner), generation)
            f.add("islandsync_island_best_fitness", (island,), island_best)
        f.add("islandsync_global_best_fitness", (), best)
        return iter(f)


class WorkerMetrics:
    """The per-worker families (:data:`WORKER_METRIC_NAMES`) for one local worker that serves
    its own ``/metrics``; ``observe`` takes the heartbeat the worker just wrote."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self._lock = threading.Lock()
        self._record: dict | None = None
        self.registry.register(_SnapshotCollector(self._collect))

    def observe(self, heartbeat: dict) -> None:
        hb = _mapping(heartbeat)
        record = _worker_record(hb.get("worker") or "local", hb, alive=True)
        with self._lock:
            self._record = record

    def _collect(self) -> Iterator[Metric]:
        with self._lock:
            record = self._record
        f = _Families(WORKER_METRIC_NAMES)
        if record is not None:
            f.worker(record)
        return iter(f)


def serve(registry: CollectorRegistry, port: int, host: str = DEFAULT_HOST) -> tuple[Any, Any]:
    """Serve ``registry`` on ``http://host:port/metrics`` from a daemon thread.

    Returns ``(server, thread)``; ``server.server_port`` is the bound port (useful with
    ``port=0``). Stop with ``server.shutdown(); server.server_close()``. Raises ConfigError
    when the address cannot be bound (port in use, bad host).
    """
    try:
        result = start_http_server(port, addr=host, registry=registry)
    except OSError as err:
        raise ConfigError(f"metrics: cannot listen on {host}:{port}: {err}") from err
    if result is None:  # pragma: no cover - prometheus_client < 0.17 returned nothing
        raise ConfigError("metrics: prometheus_client >= 0.17 is needed for serve()")
    return result


def metrics_table() -> str:
    """The README's Markdown table of every exported metric, generated from METRICS."""
    lines = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    for name, kind, labels, doc in METRICS:
        shown = ", ".join(f"`{label}`" for label in labels) or "—"
        lines.append(f"| `{name}` | {kind} | {shown} | {doc} |")
    return "\n".join(lines)


__all__ = [
    "COORDINATOR", "DEFAULT_HOST", "DEFAULT_PORT", "METRICS", "METRIC_NAMES", "UPLOAD_BUCKETS",
    "WORKER_METRIC_NAMES", "CoordinatorMetrics", "WorkerMetrics", "label_value",
    "metrics_table", "serve", "upload_histogram",
]
