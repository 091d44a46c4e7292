"""One-shot looks at a run from outside its processes, for benchmarks: every worker's
heartbeat (through the read boundary), a process's ``/metrics`` endpoint, and quantiles of a
scraped histogram."""

from __future__ import annotations

import math
import urllib.request
from typing import Any

from islandsync.bucket.layout import WORKERS_PREFIX, parse_heartbeat_key
from islandsync.bucket.records import Heartbeat, read_record
from islandsync.errors import IslandSyncError
from islandsync.store import BlobStore


def read_heartbeats(store: BlobStore) -> dict[str, dict[str, Any]]:
    """Worker id -> its heartbeat as a dict; a heartbeat that does not read is left out."""
    out = {}
    for info in store.list(WORKERS_PREFIX):
        worker = parse_heartbeat_key(info.key)
        if worker is None:
            continue
        try:
            found = read_record(store, info.key, Heartbeat)
        except IslandSyncError:
            continue
        if found is not None:
            out[worker] = found[0].model_dump()
    return out


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value from a /metrics endpoint ({} when it cannot be read)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = float(s.value)
    return out


def _ranked(buckets: dict[str, float], q: float) -> tuple[list[tuple[float, float]], float]:
    """Cumulative buckets as sorted ``(upper bound, count)`` and the count that quantile ``q``
    reaches; no buckets (or an empty histogram) gives ``([], 0)``."""
    items = sorted(((math.inf if k == "+Inf" else float(k)), v) for k, v in buckets.items())
    if not items or items[-1][1] <= 0:
        return [], 0.0
    return items, q * items[-1][1]


def quantile_from_buckets(buckets: dict[str, float], q: float) -> float | None:
    """Prometheus ``histogram_quantile`` over cumulative buckets (``le`` -> count): linear
    interpolation inside the bucket that holds quantile ``q``."""
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


__all__ = ["bucket_range", "quantile_from_buckets", "read_heartbeats", "scrape"]
