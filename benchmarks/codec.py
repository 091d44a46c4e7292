"""Checkpoint codec benchmark: compression ratio and speed of fixed choices vs. the adaptive one.

    python benchmarks/codec.py [--json PATH] [--pop 4096] [--dim 1000] [--repeat 3] [--seed 0]

Every method goes through ``islandsync.bucket.codec.encode``/``decode`` (crc32c and header included),
so the rows differ only in filter and level. Ratio = raw array bytes / blob bytes. MB/s is
10^6 raw bytes per second, median of ``--repeat`` runs, single-threaded. The adaptive row is
``filter="auto"`` at level 3, sampling time included. It passes when its ratio is within 2% of
the best fixed choice on every case; the script exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from islandsync.bucket import codec
from islandsync.testing.machine import machine_info

TOLERANCE = 0.02
FIXED = [("zstd-1", "none", 1), ("zstd-3", "none", 3), ("zstd-6", "none", 6),
         ("shuffle+zstd-3", "shuffle", 3)]


def gaussian(pop: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((pop, dim), dtype=np.float32)


def converged(pop: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centre = rng.standard_normal(dim, dtype=np.float32)
    return centre + np.float32(1e-3) * rng.standard_normal((pop, dim), dtype=np.float32)


def _children(
    pool: np.ndarray, pop: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Uniform crossover of two random parents per child (each gene copied from one of them),
    and the mask of the ~1% of genes to mutate."""
    a, b = pool[rng.integers(0, len(pool), pop)], pool[rng.integers(0, len(pool), pop)]
    child = np.where(rng.random(a.shape) < 0.5, a, b)
    return child, rng.random(a.shape) < 0.01


def ga_population(pop: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    child, mutate = _children(rng.standard_normal((32, dim), dtype=np.float32), pop, rng)
    noise = np.float32(0.1) * rng.standard_normal(child.shape, dtype=np.float32)
    return np.where(mutate, child + noise, child)


def token_genomes(pop: int, dim: int, rng: np.random.Generator, vocab: int = 64) -> np.ndarray:
    # The structure is the parent pool: children mix 32 random parents as in ga_population,
    # and mutation replaces ~1% of tokens with random ones.
    child, mutate = _children(rng.integers(0, vocab, (32, dim)), pop, rng)
    return np.where(mutate, rng.integers(0, vocab, child.shape), child).astype(np.int16)


CASES = {
    "gaussian f32": gaussian,
    "near-converged f32": converged,
    "GA crossover+mutation f32": ga_population,
    "GA tokens int16": token_genomes,
}


def measure(array: np.ndarray, filt: str, level: int, repeat: int) -> dict:
    enc, dec = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        blob = codec.encode({}, {"pop": array}, level=level, filter=filt)
        t1 = time.perf_counter()
        _, out = codec.decode(blob)
        t2 = time.perf_counter()
        enc.append(t1 - t0)
        dec.append(t2 - t1)
    assert np.array_equal(out["pop"], array)
    info = codec.read_header(blob)[1][0]
    return {"ratio": array.nbytes / len(blob), "bytes": len(blob),
            "compress_MBps": array.nbytes / 1e6 / statistics.median(enc),
            "decompress_MBps": array.nbytes / 1e6 / statistics.median(dec),
            "filter": info.filter,
            "level": level if filt != "auto" else codec.choose_codec(array, level)[1]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--pop", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    results: dict[str, dict] = {}
    ok = True
    for case, make in CASES.items():
        array = make(args.pop, args.dim, np.random.default_rng(args.seed))
        print(f"# {case}: {array.shape} {array.dtype}, {array.nbytes / 1e6:.1f} MB",
              file=sys.stderr, flush=True)
        rows = {}
        for label, filt, level in [*FIXED, ("adaptive", "auto", codec.DEFAULT_LEVEL)]:
            rows[label] = measure(array, filt, level, args.repeat)
            print(f"#   {label}: ratio {rows[label]['ratio']:.3f}", file=sys.stderr, flush=True)
        best = max(FIXED, key=lambda f: rows[f[0]]["ratio"])[0]
        passed = rows["adaptive"]["ratio"] >= (1 - TOLERANCE) * rows[best]["ratio"]
        ok &= passed
        results[case] = {"rows": rows, "best_fixed": best, "within_2pct": passed}

    print("| case | method | ratio | compress MB/s | decompress MB/s |")
    print("| --- | --- | ---: | ---: | ---: |")
    for case, res in results.items():
        for label, r in res["rows"].items():
            name = label
            if label == "adaptive":
                name = f"adaptive (picked {r['filter']}, level {r['level']})"
            print(f"| {case} | {name} | {r['ratio']:.3f} | {r['compress_MBps']:.0f} "
                  f"| {r['decompress_MBps']:.0f} |")
    print()
    for case, res in results.items():
        a, b = res["rows"]["adaptive"]["ratio"], res["rows"][res["best_fixed"]]["ratio"]
        verdict = "within 2%" if res["within_2pct"] else "NOT within 2%"
        print(f"- {case}: adaptive {a:.3f} vs best fixed {res['best_fixed']} {b:.3f} "
              f"({(a / b - 1) * 100:+.1f}%): {verdict}")
    print("PASS" if ok else "FAIL")

    if args.json:
        machine = machine_info("numpy", "zstandard", uname=" ".join(platform.uname()))
        doc = {"machine": machine, "params": vars(args) | {"json": str(args.json)},
               "tolerance": TOLERANCE, "cases": results, "pass": ok}
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
