"""One-shot looks at a run from outside its processes, for benchmarks: every worker's
heartbeat (through the read boundary) and a process's ``/metrics`` endpoint."""

from __future__ import annotations

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
