"""Multi-process races on one key, used by the contract suite. Each process opens its own
store from the URL, as separate workers on one machine (or one bucket) would."""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Any

from islandsync.errors import PreconditionFailed
from islandsync.store import open_store

# fork keeps STORAGE_EMULATOR_HOST and needs no importable target; stores are opened after it.
_ctx = mp.get_context("fork")


def _racer(url: str, key: str, rounds: int, ident: int, barrier: Any, out: Any) -> None:
    with open_store(url) as store:
        for r in range(rounds):
            info = store.stat(key)
            seen = 0 if info is None else info.generation
            barrier.wait(timeout=60)
            try:
                store.put(key, f"{r}:{ident}".encode(), if_generation=seen)
                out.put((r, ident, True))
            except PreconditionFailed:
                out.put((r, ident, False))
            barrier.wait(timeout=60)  # nobody reads for the next round before all have written


def race_rounds(url: str, key: str, *, processes: int, rounds: int) -> list[tuple[int, int, bool]]:
    barrier = _ctx.Barrier(processes)
    out = _ctx.Queue()
    procs = [_ctx.Process(target=_racer, args=(url, key, rounds, i, barrier, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in range(processes * rounds)]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"racer exited with {p.exitcode}"
    return results


def _incrementer(url: str, key: str, increments: int) -> None:
    with open_store(url) as store:
        done = 0
        while done < increments:
            info = store.stat(key)
            if info is None:
                value, gen = 0, 0
            else:
                blob = store.get(key)
                value, gen = int(blob.data), blob.generation
            try:
                store.put(key, str(value + 1).encode(), if_generation=gen)
                done += 1
            except PreconditionFailed:
                continue
    os._exit(0)


def cas_increments(url: str, key: str, *, processes: int, increments: int) -> None:
    procs = [_ctx.Process(target=_incrementer, args=(url, key, increments))
             for _ in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0, f"incrementer exited with {p.exitcode}"
