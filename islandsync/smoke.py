"""``islandsync smoke``: exercise a store and the codec end to end: the first thing a newcomer
runs, and a quick check that a bucket URL and its credentials work and that the bucket keeps
preconditions."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import numpy as np

from islandsync.bucket import codec
from islandsync.bucket.layout import SMOKE_PREFIX, smoke_key
from islandsync.errors import IslandSyncError
from islandsync.store import BlobStore
from islandsync.store.probe import check_fencing


def run_smoke(store: BlobStore, *, pop: int = 1024, dim: int = 100, elite: int = 32,
              seed: int = 0, say: Callable[[str], None] = print) -> float:
    """Write a checkpoint of a ``pop`` x ``dim`` test population under a prefix of its own,
    read its elite back by ranged read and the whole back, run the fencing probe, clean up;
    returns the seconds it took. IslandSyncError when anything does not hold."""
    rng = np.random.default_rng(seed)
    # A prefix of its own: smoke may run against a live run's URL, and must never touch a
    # record of that run (it once overwrote islands/0/HEAD.json and stopped a solo worker).
    key = smoke_key(secrets.token_hex(4))
    prefix = key.rsplit("/", 1)[0] + "/"
    say(f"store      {store.url}, under {prefix}")
    t0 = time.perf_counter()
    genomes = (rng.standard_normal((pop, dim)) * 5).astype(np.float32)
    fitness = (genomes**2).sum(axis=1)
    order = np.argsort(fitness)[:elite]
    frames = {
        "elite": genomes[order],
        "elite_fitness": fitness[order],
        "population": genomes,
        "fitness": fitness,
    }
    blob = codec.encode({"island": 0, "generation": 1}, frames)
    raw = sum(a.nbytes for a in frames.values())
    store.put(key, blob, if_generation=0)
    say(f"checkpoint {key}: {raw / 1e6:.2f} MB raw -> {len(blob) / 1e6:.2f} MB "
        f"({raw / len(blob):.2f}x)")

    _, read = codec.read_frame(store, key, "elite")
    if not np.array_equal(read, genomes[order]):
        raise IslandSyncError(f"smoke: elite frame read back from {key} differs")
    _, decoded = codec.decode(store.get(key).data, name=key)
    if not all(np.array_equal(decoded[n], a) for n, a in frames.items()):
        raise IslandSyncError(f"smoke: checkpoint {key} did not round-trip")
    say(f"read back  elite {read.shape[0]} x {read.shape[1]} by ranged read, full checkpoint "
        f"verified")

    check_fencing(store)
    say("fencing    create-only, compare-and-swap, conditional delete and ranged reads hold")
    store.delete(key)
    seconds = time.perf_counter() - t0
    say(f"ok in {seconds:.2f} s ({prefix} cleaned up)")
    return seconds


__all__ = ["SMOKE_PREFIX", "run_smoke"]
