"""Elite epochs read with the run's bounds, checked from the header before decompression."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zstandard

from islandsync.bucket import codec
from islandsync.bucket.elites import encode_elite, read_elite
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import elite_key
from islandsync.errors import CheckpointError
from islandsync.store import LocalStore

from .conftest import assemble, zeros_payload

KEY = elite_key(3)


def _elite(genomes: np.ndarray) -> tuple[np.ndarray, ...]:
    n = genomes.shape[0]
    return (genomes, np.arange(n, dtype=np.float32), genome_ids_numpy(genomes),
            np.zeros(n, np.int64))


def test_elite_read_back_within_bounds(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    elite = _elite(np.ones((4, 5), np.float32))
    store.put(KEY, encode_elite(elite, epoch=3, term=1))
    got = read_elite(store, KEY, width=5, max_size=4, kind="real")
    for a, b in zip(got, elite):
        np.testing.assert_array_equal(a, b)
    for bad in ({"width": 6}, {"max_size": 3}, {"kind": "tokens"}):
        with pytest.raises(CheckpointError, match=rf"^elite {KEY}: "):
            read_elite(store, KEY, **bad)
    tokens = _elite(np.ones((4, 5), np.int64))
    store.put(KEY, encode_elite(tokens, epoch=3, term=1))
    read_elite(store, KEY, kind="tokens")
    with pytest.raises(CheckpointError, match="dtypes"):
        read_elite(store, KEY, kind="real")


def test_an_elite_bomb_is_refused_before_it_inflates(tmp_path: Path) -> None:
    """64 MiB of genomes in a few KiB: with the run's width the header alone refuses it."""
    store = LocalStore(tmp_path)
    rows = 16
    small = encode_elite(_elite(np.ones((rows, 5), np.float32)), epoch=3, term=1)
    _, frames = codec.decode(small)
    z = zstandard.ZstdCompressor(write_content_size=True)
    parts = [(n, a.dtype.str, list(a.shape), z.compress(a.tobytes())) for n, a in frames.items()]
    parts[0] = ("genomes", "<f4", [rows, (64 << 20) // 4 // rows], zeros_payload(64 << 20))
    store.put(KEY, assemble({"epoch": 3, "term": 1}, parts))
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match="wide"):
            read_elite(store, KEY, width=5, max_size=64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_an_epoch_is_read_only_up_to_what_the_runs_shapes_allow(tmp_path: Path) -> None:
    """N5: every bucket read has a size cap before download; with the run's spec, an epoch's
    is its elite_size x width at the widest dtype. Bytes past the frames are refused too."""
    from islandsync.bucket.elites import max_elite_blob
    from islandsync.config import spec_from_flags
    from islandsync.store.counting import CountingStore

    spec = spec_from_flags(problem="rastrigin", dim=5, pop=16, islands=2, elite_size=4)
    store = CountingStore(LocalStore(tmp_path))
    good = encode_elite(_elite(np.ones((4, 5), np.float32)), epoch=3, term=1)
    store.put(KEY, good)
    assert read_elite(store, KEY, spec=spec)[0].shape == (4, 5)
    cap = max_elite_blob(5, 4)
    for padding in (1, 4 * cap):
        store.put(KEY, good + bytes(padding))
        before = store.counts()["bytes_read"]
        with pytest.raises(CheckpointError, match=rf"{KEY}: .*(beyond|larger)"):
            read_elite(store, KEY, spec=spec)
        assert store.counts()["bytes_read"] - before <= cap + 1
