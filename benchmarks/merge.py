"""The leader's merge: time to merge N candidates, and bytes read per merge by ranged reads of
the elite frames versus downloading whole checkpoints.

    python benchmarks/merge.py [--candidates 10000,100000,1000000] [--dim 100] [--repeat 5]
                               [--islands 8] [--pop 4096] [--ckpt-dim 1000] [--json PATH]

Merge times are medians of ``--repeat`` runs of :func:`islandsync.leader.merge.merge_elites` on
candidates of which a third are copies of others (migration makes copies the normal case).
Bytes read: ``--islands`` real checkpoints of ``--pop x --ckpt-dim`` populations are written to
a temporary LocalStore, then the leader's reader (:class:`islandsync.leader.merge.IslandElites`, two
ranged reads at most per island) and a whole-blob reader fetch them through a CountingStore.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.layout import checkpoint_key
from islandsync.bucket.records import Head
from islandsync.config import spec_from_flags
from islandsync.leader.merge import IslandElites, merge_elites
from islandsync.search.population import genome_ids_numpy
from islandsync.store import open_store
from islandsync.store.counting import CountingStore
from islandsync.testing.machine import machine_info


def candidates_of(n: int, dim: int, parts: int, rng: np.random.Generator):
    """``parts`` island elites totalling ``n`` rows, a third of them copies of others."""
    unique = max(1, n - n // 3)
    genomes = rng.standard_normal((unique, dim)).astype(np.float32)
    rows = np.concatenate([np.arange(unique), rng.integers(0, unique, n - unique)])
    rng.shuffle(rows)
    g = genomes[rows]
    ids = genome_ids_numpy(genomes)[rows]
    scores = (g.astype(np.float64) ** 2).sum(1).astype(np.float32)
    scores += rng.normal(0, 1e-3, n).astype(np.float32)  # copies re-evaluated: slightly apart
    out = []
    for k, idx in enumerate(np.array_split(np.arange(n), parts)):
        out.append((g[idx], scores[idx], ids[idx], np.full(len(idx), k, np.int64)))
    return out


def time_merges(sizes: list[int], dim: int, repeat: int, top: int) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        parts = candidates_of(n, dim, 64, rng)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            result = merge_elites(parts, top)
            times.append(time.perf_counter() - t0)
        assert len(np.unique(result.elite[2])) == len(result.elite[2])
        rows.append({"candidates": n, "dim": dim, "top": top,
                     "median_s": statistics.median(times), "min_s": min(times),
                     "duplicates_removed": result.duplicates,
                     "candidates_per_s": n / statistics.median(times)})
        print(f"merge {n:>9,} candidates x {dim}: median {rows[-1]['median_s'] * 1e3:8.2f} ms "
              f"({rows[-1]['candidates_per_s']:,.0f}/s), {result.duplicates:,} duplicates "
              f"removed", flush=True)
    return rows


def bytes_per_merge(islands: int, pop: int, dim: int, elite: int) -> dict:
    rng = np.random.default_rng(1)
    spec = spec_from_flags(problem="rastrigin", dim=dim, islands=islands, pop=pop,
                           algorithm="de", elite_size=elite)
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(tmp)
        heads: dict[int, Head] = {}
        for i in range(islands):
            genomes = rng.uniform(-5, 5, (pop, dim)).astype(np.float32)
            snap = IslandSnapshot(i, 100, 100 * pop, 0, {
                "genomes": genomes, "scores": (genomes ** 2).sum(1),
                "ids": genome_ids_numpy(genomes), "origin": np.full(pop, i, np.int64)})
            key = checkpoint_key(i, 100, "bench")
            store.put(key, encode_island(snap, elite=elite, meta={}))
            heads[i] = Head(island=i, checkpoint=key, generation=100)
        sizes = [store.stat(h.checkpoint).size for h in heads.values()]
        ranged = CountingStore(store)
        t0 = time.perf_counter()
        IslandElites(ranged, spec).refresh(heads)
        ranged_s = time.perf_counter() - t0
        whole = CountingStore(store)
        t0 = time.perf_counter()
        for h in heads.values():
            whole.get(h.checkpoint)
        whole_s = time.perf_counter() - t0
    ranged_bytes, ranged_reads = ranged.counts()["bytes_read"], ranged.by_operation()["get"]
    whole_bytes, whole_reads = whole.counts()["bytes_read"], whole.by_operation()["get"]
    out = {"islands": islands, "pop": pop, "dim": dim, "elite": elite,
           "checkpoint_bytes_median": int(statistics.median(sizes)),
           "ranged_bytes": ranged_bytes, "ranged_reads": ranged_reads, "ranged_s": ranged_s,
           "whole_bytes": whole_bytes, "whole_reads": whole_reads, "whole_s": whole_s,
           "ratio": whole_bytes / ranged_bytes}
    print(f"bytes per merge of {islands} islands ({pop} x {dim}, elite {elite}): ranged "
          f"{ranged_bytes / 1e6:.3f} MB in {ranged_reads} reads vs whole checkpoints "
          f"{whole_bytes / 1e6:.1f} MB ({out['ratio']:,.0f}x less)", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidates", default="10000,100000,1000000")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--top", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--islands", type=int, default=8)
    ap.add_argument("--pop", type=int, default=4096)
    ap.add_argument("--ckpt-dim", dest="ckpt_dim", type=int, default=1000)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.candidates.split(",")]
    result = {
        "machine": machine_info("numpy"),
        "command": " ".join(["python", "benchmarks/merge.py", *(argv or sys.argv[1:])]),
        "merge": time_merges(sizes, args.dim, args.repeat, args.top),
        "bytes": bytes_per_merge(args.islands, args.pop, args.ckpt_dim, args.top),
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
