"""Metrics: scrape a live /metrics, check values, sanitising, the Grafana/alert files, promtool
and a real Prometheus server scraping us.

Needs Debian's ``prometheus`` package (``/usr/bin/prometheus``, ``/usr/bin/promtool``); the
tests fail, never skip, without it (``.ci/run`` installs it).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from islandsync.views.metrics import (
    METRIC_NAMES,
    METRICS,
    UPLOAD_BUCKETS,
    WORKER_METRIC_NAMES,
    CoordinatorMetrics,
    WorkerMetrics,
    metrics_table,
    serve,
    upload_histogram,
)
from islandsync.testing.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
SECRET = "SECRET-MARKER-123"
HISTOGRAMS = {name for name, kind, _, _ in METRICS if kind == "histogram"}
LABEL_OK = re.compile(r"^[A-Za-z0-9_.:-]{0,64}$")


# -- helpers ---------------------------------------------------------------------------------

def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's prometheus package "
                    f"(`apt-get install prometheus`, as .ci/run does); these tests do not skip")
    return path


def _scrape(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        return resp.read().decode()


def _families(text: str) -> dict[str, Any]:
    """Families by their /metrics name (counters with _total), ``_created`` series left out."""
    out = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        if not name.endswith("_created"):
            out[name] = family
    return out


def _value(families: dict[str, Any], name: str, sample: str | None = None, **labels: str) -> float:
    """The one sample of family ``name`` (sample name ``sample``, default the family's) whose
    labels include ``labels``."""
    sample = sample or name
    found = [s.value for s in families[name].samples
             if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{sample}{labels}: {found}"
    return found[0]


def _heartbeat(worker: str, platform: str, **over: Any) -> dict:
    hb = {
        "worker": worker, "platform": platform, "device": SECRET, "state": "running",
        "islands": [0, 1], "rate": 1500.0, "generations": 40, "evaluations": 120000,
        "checkpoint_blocked_s": 0.75, "max_islands": 4, "deadline_in_s": None,
        "checkpoint": {"uploads": 4, "failures": 1, **upload_histogram([0.04, 0.2, 0.3, 3.0]),
                       "bytes_raw_total": 4000, "bytes_compressed_total": 1000,
                       "restarts_from_seed": 2},
        "store": {"ops": {"A": 30, "B": 50}, "errors": {"put": 2, "get": 0}},
        "sent_at": 1.7e9,
    }
    hb.update(over)
    return hb


def _feed(metrics: CoordinatorMetrics) -> None:
    """Two live workers (kaggle, colab), one lost local worker, three islands."""
    metrics.set_leader(7, True)
    metrics.lease_renewal_failures(3)
    metrics.observe_workers(
        {"kaggle-a1": _heartbeat("kaggle-a1", "kaggle", deadline_in_s=1800.0),
         "colab-b2": _heartbeat("colab-b2", "colab", islands=[2], rate=500.0, evaluations=9000),
         "local-c3": _heartbeat("local-c3", "local", rate=800.0)},
        alive={"kaggle-a1", "colab-b2"},
    )
    metrics.observe_islands({0: {"generation": 20, "best": 3.5, "owner": "kaggle-a1"},
                             1: {"generation": 18, "best": 4.0, "owner": "kaggle-a1"},
                             2: {"generation": 5, "best": None, "owner": None}})
    metrics.observe_global_best(3.5)
    metrics.observe_merge(0.02, 96, 4)
    metrics.observe_merge(0.3, 80, 1)
    metrics.reassignment("dead", 2)
    metrics.reassignment("balance")
    metrics.observe_store({"ops": {"A": 11, "B": 22}, "errors": {"list": 1}})


@pytest.fixture
def fed_server() -> Iterator[tuple[CoordinatorMetrics, str, int]]:
    metrics = CoordinatorMetrics()
    _feed(metrics)
    server, thread = serve(metrics.registry, 0)
    try:
        yield metrics, "127.0.0.1", server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def metrics_endpoint(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """(host, port) of a real ``islandsync coordinate RUN --metrics-port PORT`` process that
    leads a run with one worker, once its /metrics shows a leader term and the worker."""
    from islandsync.bucket.run import init_run
    from islandsync.store import open_store

    from islandsync.testing.cluster import cluster_spec, start_coordinator, start_worker
    from islandsync.testing.processes import stop_all

    url = str(tmp_path / "run")
    init_run(open_store(url), cluster_spec(islands=2))
    port = free_port()
    procs = [start_coordinator(url, "metrics-c0", "--metrics-port", str(port)),
             start_worker(url, "metrics-w0")]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fams = _families(_scrape("127.0.0.1", port))
                if _value(fams, "islandsync_leader_term") >= 1 and \
                        _value(fams, "islandsync_worker_up", worker="metrics-w0",
                               platform="local") == 1:
                    break
            except (OSError, KeyError, AssertionError, StopIteration, TypeError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the coordinator's /metrics never showed a leader "
                                     "and its worker")
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        stop_all(procs)


# -- the exposition ------------------------------------------------------------------------

def test_scrape_values_labels_and_help(fed_server: tuple[CoordinatorMetrics, str, int]) -> None:
    _, host, port = fed_server
    text = _scrape(host, port)
    fams = _families(text)
    assert set(METRIC_NAMES) <= set(fams), set(METRIC_NAMES) - set(fams)
    assert set(fams) <= set(METRIC_NAMES), set(fams) - set(METRIC_NAMES)
    for name, family in fams.items():
        assert family.documentation.strip(), f"{name} has no help text"
    assert SECRET not in text

    v = _value
    assert v(fams, "islandsync_leader_term") == 7
    assert v(fams, "islandsync_is_leader") == 1
    assert v(fams, "islandsync_lease_renewal_failures_total") == 3
    assert v(fams, "islandsync_workers_alive", platform="kaggle") == 1
    assert v(fams, "islandsync_workers_alive", platform="colab") == 1
    assert v(fams, "islandsync_workers_alive", platform="local") == 0
    assert v(fams, "islandsync_workers_alive", platform="paperspace") == 0
    assert v(fams, "islandsync_worker_up", worker="kaggle-a1", platform="kaggle") == 1
    assert v(fams, "islandsync_worker_up", worker="local-c3", platform="local") == 0
    assert v(fams, "islandsync_worker_exited", worker="local-c3") == 0
    rate = "islandsync_worker_evaluations_per_second"
    assert v(fams, rate, worker="kaggle-a1", platform="kaggle") == 1500
    assert v(fams, rate, worker="colab-b2", platform="colab") == 500
    assert v(fams, rate, worker="local-c3") == 0  # lost: its stale rate is not summed
    assert v(fams, "islandsync_worker_evaluations_total", worker="colab-b2") == 9000
    assert v(fams, "islandsync_worker_evaluations_total", worker="local-c3") == 120000
    assert v(fams, "islandsync_worker_generations_total", worker="kaggle-a1") == 40
    assert v(fams, "islandsync_island_restarts_from_seed_total", worker="kaggle-a1") == 2
    assert v(fams, "islandsync_worker_islands", worker="kaggle-a1") == 2
    assert v(fams, "islandsync_worker_islands", worker="colab-b2") == 1
    assert v(fams, "islandsync_worker_islands", worker="local-c3") == 0
    assert v(fams, "islandsync_worker_max_islands", worker="colab-b2") == 4
    deadlines = fams["islandsync_worker_deadline_seconds"].samples
    assert [(s.labels["worker"], s.value) for s in deadlines] == [("kaggle-a1", 1800.0)]

    assert v(fams, "islandsync_island_generation", island="0", worker="kaggle-a1") == 20
    assert v(fams, "islandsync_island_generation", island="2", worker="") == 5
    assert v(fams, "islandsync_island_best_fitness", island="1") == 4.0
    assert {s.labels["island"] for s in fams["islandsync_island_best_fitness"].samples} == {"0", "1"}
    assert v(fams, "islandsync_global_best_fitness") == 3.5

    h = "islandsync_checkpoint_upload_seconds"
    assert v(fams, h, h + "_bucket", worker="kaggle-a1", le="0.05") == 1
    assert v(fams, h, h + "_bucket", worker="kaggle-a1", le="0.25") == 2
    assert v(fams, h, h + "_bucket", worker="kaggle-a1", le="0.5") == 3
    assert v(fams, h, h + "_bucket", worker="kaggle-a1", le="+Inf") == 4
    assert v(fams, h, h + "_count", worker="colab-b2") == 4
    assert v(fams, h, h + "_sum", worker="colab-b2") == pytest.approx(3.54)
    assert v(fams, "islandsync_checkpoint_bytes_total", worker="colab-b2", kind="raw") == 4000
    assert v(fams, "islandsync_checkpoint_bytes_total", worker="colab-b2", kind="compressed") == 1000
    assert v(fams, "islandsync_checkpoint_failures_total", worker="kaggle-a1") == 1
    assert v(fams, "islandsync_checkpoint_blocked_seconds_total", worker="kaggle-a1") == 0.75

    m = "islandsync_merge_seconds"
    assert v(fams, m, m + "_count") == 2
    assert v(fams, m, m + "_sum") == pytest.approx(0.32)
    assert v(fams, m, m + "_bucket", le="0.025") == 1
    assert v(fams, "islandsync_merge_candidates") == 80
    assert v(fams, "islandsync_duplicates_removed_total") == 5
    assert v(fams, "islandsync_reassignments_total", reason="dead") == 2
    assert v(fams, "islandsync_reassignments_total", reason="balance") == 1
    assert v(fams, "islandsync_reassignments_total", reason="drain") == 0

    ops = "islandsync_bucket_operations_total"
    assert v(fams, ops, worker="coordinator", **{"class": "A"}) == 11
    assert v(fams, ops, worker="coordinator", **{"class": "B"}) == 22
    assert v(fams, ops, worker="kaggle-a1", **{"class": "B"}) == 50
    errs = "islandsync_store_errors_total"
    assert v(fams, errs, worker="coordinator", operation="list") == 1
    assert v(fams, errs, worker="coordinator", operation="put") == 0
    assert v(fams, errs, worker="colab-b2", operation="put") == 2


def test_observe_replaces_the_snapshot(fed_server: tuple[CoordinatorMetrics, str, int]) -> None:
    metrics, host, port = fed_server
    metrics.observe_workers({"kaggle-a1": _heartbeat("kaggle-a1", "kaggle", state="exited")},
                            alive={"kaggle-a1"})
    metrics.set_leader(8, False)
    metrics.observe_global_best(None)
    fams = _families(_scrape(host, port))
    assert [s.labels["worker"] for s in fams["islandsync_worker_up"].samples] == ["kaggle-a1"]
    assert _value(fams, "islandsync_worker_up", worker="kaggle-a1") == 0
    assert _value(fams, "islandsync_worker_exited", worker="kaggle-a1") == 1
    assert _value(fams, "islandsync_workers_alive", platform="kaggle") == 0
    assert _value(fams, "islandsync_leader_term") == 8
    assert _value(fams, "islandsync_is_leader") == 0
    assert fams["islandsync_global_best_fitness"].samples == []


def test_upload_histogram() -> None:
    out = upload_histogram([0.01, 0.05, 0.07, 1.0, 100.0, float("nan"), -1.0])
    assert out["uploads"] == 5
    assert out["seconds_sum"] == pytest.approx(101.13)
    buckets = out["seconds_buckets"]
    assert list(buckets) == [f"{b:g}" for b in UPLOAD_BUCKETS] + ["+Inf"]
    assert buckets["0.05"] == 2 and buckets["0.1"] == 3 and buckets["1"] == 4
    assert buckets["60"] == 4 and buckets["+Inf"] == 5
    assert upload_histogram([]) == {"uploads": 0, "seconds_sum": 0.0,
                                    "seconds_buckets": {**{f"{b:g}": 0 for b in UPLOAD_BUCKETS},
                                                        "+Inf": 0}}


def test_worker_metrics_serves_one_worker() -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    assert metrics.registry is registry
    server, thread = serve(registry, 0)
    try:
        empty = _families(_scrape("127.0.0.1", server.server_port))
        assert set(empty) == set(WORKER_METRIC_NAMES)
        metrics.observe(_heartbeat("local-x", "local", deadline_in_s=60))
        text = _scrape("127.0.0.1", server.server_port)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    fams = _families(text)
    assert set(fams) == set(WORKER_METRIC_NAMES)
    assert _value(fams, "islandsync_worker_up", worker="local-x", platform="local") == 1
    assert _value(fams, "islandsync_worker_evaluations_per_second", worker="local-x") == 1500
    assert _value(fams, "islandsync_worker_deadline_seconds", worker="local-x") == 60
    assert _value(fams, "islandsync_bucket_operations_total", worker="local-x",
                  **{"class": "A"}) == 30
    assert SECRET not in text


def test_serve_reports_a_busy_port() -> None:
    from islandsync.errors import IslandSyncError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(IslandSyncError, match="cannot listen"):
            serve(CollectorRegistry(), s.getsockname()[1])


# -- untrusted heartbeats ------------------------------------------------------------------

NASTY: list[Any] = [
    None, "not a dict", 42, [],
    {},  # an old heartbeat with nothing in it
    {"platform": None, "rate": None, "islands": None, "checkpoint": None, "store": None},
    {"platform": "kaggle", "rate": "fast", "evaluations": "1e9", "generations": True,
     "islands": "0,1", "max_islands": float("nan"), "deadline_in_s": float("inf"),
     "checkpoint_blocked_s": -5, "state": ["running"], "device": SECRET},
    {"platform": "p" * 10_000 + '"}\n# HELP evil', "rate": 10**400, "evaluations": -1,
     "checkpoint": {"seconds_buckets": {"0.1": 5, "0.5": 3, "+Inf": 6}, "seconds_sum": 1.0,
                    "failures": "many", "bytes_raw_total": float("nan"),
                    "bytes_compressed_total": [1]},
     "store": {"ops": {"A": "x", "B": None, "C": 5}, "errors": {"put": float("nan"),
                                                                "rm -rf": 3, "get": -2}}},
    {"platform": "colab", "checkpoint": {"seconds_buckets": {"abc": 1, "+Inf": 1},
                                         "seconds_sum": 0.1}},
    {"platform": "colab", "checkpoint": {"seconds_buckets": {"0.1": 1}, "seconds_sum": 0.1}},
    {"platform": "colab", "checkpoint": {"seconds_buckets": {str(i): i for i in range(500)},
                                         "seconds_sum": 1.0}},
    {"platform": "colab", "checkpoint": {"seconds_buckets": {"nan": 1, "+Inf": 1},
                                         "seconds_sum": 0.1}},
    {"platform": "colab", "checkpoint": {"seconds_buckets": "0.1=1", "seconds_sum": "0.1"}},
    {"platform": "ünïcødé ☃", "store_errors": 4, "token": SECRET,
     "checkpoint": {"seconds_buckets": {"0.1": 1, "+Inf": 2}, "seconds_sum": float("nan")}},
]


def test_malformed_heartbeats_never_crash_nor_export_nan() -> None:
    metrics = CoordinatorMetrics()
    beats: dict[Any, Any] = {f"w{i}": hb for i, hb in enumerate(NASTY)}
    beats["x" * 5000 + "\n\"}{"] = NASTY[7]
    beats[("tuple", "key")] = {}
    beats[SECRET + "-as-id-is-fine"] = {"device": SECRET}
    metrics.observe_workers(None, alive=set(beats))  # type: ignore[arg-type]
    metrics.observe_workers(beats, alive=None)  # type: ignore[arg-type]
    metrics.observe_workers(beats, alive=set(beats) | {"ghost"})
    metrics.observe_islands({"a": {}, -1: {}, True: {}, 3: None, 4: {"generation": "x",  # type: ignore[dict-item]
                             "best": float("nan"), "owner": 'x"y\n' * 100}})
    metrics.observe_islands(None)  # type: ignore[arg-type]
    metrics.observe_islands({4: {"generation": 2, "best": -1e300, "owner": "o\nwn"}})
    metrics.observe_global_best(float("nan"))
    metrics.observe_global_best("1.0")  # type: ignore[arg-type]
    metrics.set_leader("x", True)  # type: ignore[arg-type]
    metrics.lease_renewal_failures(None)  # type: ignore[arg-type]
    metrics.observe_merge(float("nan"), -1, "x")  # type: ignore[arg-type]
    metrics.reassignment("weird reason\n\"}" * 50, 2)
    metrics.reassignment("dead", "x")  # type: ignore[arg-type]
    metrics.observe_store(None)  # type: ignore[arg-type]
    metrics.observe_store({"ops": "x", "errors": {"put": "x"}})
    worker = WorkerMetrics()
    for hb in NASTY:
        worker.observe(hb)

    for registry in (metrics.registry, worker.registry):
        server, thread = serve(registry, 0)
        try:
            text = _scrape("127.0.0.1", server.server_port)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        assert "evil" not in text
        fams = _families(text)  # parses
        for family in fams.values():
            for sample in family.samples:
                assert math.isfinite(sample.value), sample
                if sample.name.endswith("_total") or sample.name.endswith("_bucket"):
                    assert sample.value >= 0, sample
                for key, value in sample.labels.items():
                    if key != "le":
                        assert LABEL_OK.match(value), sample
        # the dangerous device/token field is never exported; worker ids are (sanitised)
        assert text.count(SECRET) == text.count(SECRET + "-as-id-is-fine")
        _lint(text)

    fams = _families(_scrape_registry(metrics.registry))
    up = {s.labels["worker"]: s.value for s in fams["islandsync_worker_up"].samples}
    assert up["ghost"] == 1 and up["w0"] == 1
    assert all(len(w) <= 64 for w in up)
    assert _value(fams, "islandsync_worker_up", worker="w7", platform="p" * 64) == 1
    assert not [s for s in fams["islandsync_worker_evaluations_total"].samples
                if s.labels["worker"] in ("w6", "w7")], "strings and negatives are left out"
    hist = fams["islandsync_checkpoint_upload_seconds"].samples
    assert {s.labels["worker"] for s in hist} == set(), "every nasty histogram is dropped"
    assert _value(fams, "islandsync_store_errors_total", worker="w13", operation="unknown") == 4
    assert _value(fams, "islandsync_island_generation", island="4", worker="o_wn") == 2
    assert fams["islandsync_global_best_fitness"].samples == []
    assert {s.labels["reason"] for s in fams["islandsync_reassignments_total"].samples} == {
        "dead", "drain", "balance", "new", "unplaced", ("weird_reason___" * 50)[:64]}


def _scrape_registry(registry: CollectorRegistry) -> str:
    from prometheus_client import generate_latest

    return generate_latest(registry).decode()


def _lint(text: str) -> None:
    """promtool's exposition linter (naming conventions, help) must find nothing."""
    proc = subprocess.run([_tool("promtool"), "check", "metrics"], input=text, check=False,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), (
        proc.stdout + proc.stderr)


def test_exposition_passes_promtool_lint(fed_server: tuple[CoordinatorMetrics, str, int]) -> None:
    _, host, port = fed_server
    _lint(_scrape(host, port))


# -- Grafana dashboard and alert rules -----------------------------------------------------

def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((GRAFANA / "dashboard.json").read_text())
    exprs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition") and isinstance(value, str):
                    exprs.append(value)
                elif key == "query" and isinstance(value, dict) and "query" in value:
                    exprs.append(value["query"])
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return exprs


def _alert_exprs() -> list[str]:
    """``expr:`` values of alerts.yml, inline or ``|`` blocks (no YAML library needed)."""
    exprs: list[str] = []
    lines = (GRAFANA / "alerts.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if not m:
            continue
        if m.group(2).strip() not in ("|", ">", "|-", ">-"):
            exprs.append(m.group(2))
            continue
        block = []
        for following in lines[i + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= len(m.group(1)):
                break
            block.append(following.strip())
        exprs.append(" ".join(block))
    return exprs


def _metric_names(expr: str) -> set[str]:
    names = set()
    for name in re.findall(r"islandsync_[a-z_]+", expr):
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
                name = name[: -len(suffix)]
        names.add(name)
    return names


def test_every_promql_metric_is_exported(fed_server: tuple[CoordinatorMetrics, str, int]) -> None:
    _, host, port = fed_server
    scraped = set(_families(_scrape(host, port)))
    dashboard, alerts = _dashboard_exprs(), _alert_exprs()
    assert len(alerts) == 5 and len(dashboard) >= 20
    used = set().union(*(_metric_names(e) for e in dashboard + alerts))
    assert used, "no metric names found in the expressions"
    assert used <= scraped, f"used but not exported: {sorted(used - scraped)}"
    # every panel has a title and a datasource that names the provisioned Prometheus
    board = json.loads((GRAFANA / "dashboard.json").read_text())
    assert 36 <= board["schemaVersion"] <= 41
    ds = next(v for v in board["templating"]["list"] if v["name"] == "datasource")
    assert ds["current"]["value"] == "islandsync-prometheus"
    assert "uid: islandsync-prometheus" in (
        GRAFANA / "provisioning/datasources/islandsync.yml").read_text()
    for panel in board["panels"]:
        assert panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]


def test_promtool_checks_rules_config_and_dashboard(tmp_path: Path) -> None:
    promtool = _tool("promtool")

    def run(*args: str) -> None:
        proc = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120,
                              check=False, cwd=GRAFANA)
        assert proc.returncode == 0, f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}"

    run("check", "rules", "alerts.yml")
    run("test", "rules", "alerts_test.yml")
    run("check", "config", "prometheus.yml")
    # The dashboard's PromQL parses: as recording rules ($worker replaced by a regex).
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(e for e in _dashboard_exprs() if not e.startswith("label_values")):
        rules += [f"      - record: dashboard:expr{i}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "dashboard_rules.yml").write_text(
        "\n".join(rules).replace("$worker", ".*") + "\n")
    run("check", "rules", str(tmp_path / "dashboard_rules.yml"))


def test_readme_lists_every_metric() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "## Metrics" in readme
    assert metrics_table() in readme, "README's metrics table is stale: paste metrics_table()"


# -- a real Prometheus scraping us -----------------------------------------------------------

def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_real_prometheus_scrapes_the_endpoint(metrics_endpoint: tuple[str, int],
                                              tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    host, port = metrics_endpoint
    fams = _families(_scrape(host, port))
    term = _value(fams, "islandsync_leader_term")
    assert term >= 1
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        f"rule_files:\n  - {json.dumps(str(GRAFANA / 'alerts.yml'))}\n"
        "scrape_configs:\n  - job_name: islandsync\n    static_configs:\n"
        f"      - targets: [\"{host}:{port}\"]\n")
    log = tmp_path / "prometheus.log"
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 45
        value, rules_ok = None, False
        query = urllib.parse.quote("islandsync_leader_term")
        while time.monotonic() < deadline and (value is None or not rules_ok):
            assert proc.poll() is None, f"prometheus exited:\n{log.read_text()[-3000:]}"
            try:
                result = _get_json(f"{api}/query?query={query}")["data"]["result"]
                if result:
                    value = float(result[0]["value"][1])
                    assert result[0]["metric"]["job"] == "islandsync"
                groups = _get_json(f"{api}/rules")["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                rules_ok = len(rules) == 5 and all(r["health"] == "ok" for r in rules)
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        assert value is not None, f"no islandsync_leader_term in time:\n{log.read_text()[-3000:]}"
        assert value == term
        assert rules_ok, f"alert rules not all evaluated healthy: {rules}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
