"""The ``islandsync`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from . import __version__
from .errors import IslandSyncError, PreconditionFailed


def _smoke(args: argparse.Namespace) -> int:
    """Exercise the store and the codec end to end on a run directory: the first thing a
    newcomer runs, and a quick check that a bucket URL and its credentials work."""
    import numpy as np

    from . import codec
    from .store import open_store

    rng = np.random.default_rng(args.seed)
    store = open_store(args.run)
    print(f"store      {store!r}")
    t0 = time.perf_counter()
    pop = (rng.standard_normal((args.pop, args.dim)) * 5).astype(np.float32)
    fitness = (pop**2).sum(axis=1)
    order = np.argsort(fitness)[: args.elite]
    frames = {
        "elite": pop[order],
        "elite_fitness": fitness[order],
        "population": pop,
        "fitness": fitness,
    }
    blob = codec.encode({"island": 0, "generation": 1}, frames)
    raw = sum(a.nbytes for a in frames.values())
    key = f"islands/0/{time.time_ns()}.isz"
    store.put(key, blob, if_generation=0)
    print(f"checkpoint {key}: {raw / 1e6:.2f} MB raw -> {len(blob) / 1e6:.2f} MB "
          f"({raw / len(blob):.2f}x)")

    _, elite = codec.read_frame(store, key, "elite")
    if not np.array_equal(elite, pop[order]):
        raise IslandSyncError(f"smoke: elite frame read back from {key} differs")
    _, decoded = codec.decode(store.get(key).data, name=key)
    if not all(np.array_equal(decoded[n], a) for n, a in frames.items()):
        raise IslandSyncError(f"smoke: checkpoint {key} did not round-trip")
    print(f"read back  elite {elite.shape} by ranged read, full checkpoint verified")

    head = json.dumps({"checkpoint": key, "owner": "smoke"}).encode()
    info = store.stat("islands/0/HEAD.json")
    gen = store.put("islands/0/HEAD.json", head, if_generation=0 if info is None else info.generation)
    try:
        store.put("islands/0/HEAD.json", head, if_generation=0 if info is None else info.generation)
        raise IslandSyncError("smoke: a stale compare-and-swap was accepted")
    except PreconditionFailed:
        pass
    print(f"HEAD       islands/0/HEAD.json at generation {gen}; stale CAS refused as it should be")
    print(f"ok in {time.perf_counter() - t0:.2f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="islandsync",
        description="One island-model evolutionary search across notebooks and a laptop.",
    )
    parser.add_argument("--version", action="version", version=f"islandsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    smoke = sub.add_parser("smoke", help="write, read back and CAS a checkpoint in RUN")
    smoke.add_argument("run", nargs="?", default="./islandsync-smoke",
                       help="run URL: a directory, file:///path or gs://bucket/prefix")
    smoke.add_argument("--pop", type=int, default=1024)
    smoke.add_argument("--dim", type=int, default=100)
    smoke.add_argument("--elite", type=int, default=32)
    smoke.add_argument("--seed", type=int, default=0)
    smoke.set_defaults(func=_smoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except IslandSyncError as err:
        print(f"islandsync: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
