"""The merge: never a duplicate id, the best copy kept, the global best never regresses."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from islandsync.leader.merge import merge_elites
from islandsync.search.population import genome_ids_numpy


def _part(genomes: np.ndarray, scores: np.ndarray, island: int):
    return (genomes.astype(np.float32), scores.astype(np.float32),
            genome_ids_numpy(genomes.astype(np.float32)), np.full(len(scores), island, np.int64))


@st.composite
def island_parts(draw, dim: int | None = None):
    """Many islands holding overlapping copies of a small pool of genomes (migration makes
    that the normal case), with differing scores for the same genome (re-evaluation noise)."""
    dim = dim or draw(st.integers(1, 6))
    pool = draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    genomes = rng.integers(-3, 3, size=(pool, dim)).astype(np.float32)
    parts = []
    for island in range(draw(st.integers(1, 10))):
        n = draw(st.integers(0, 20))
        rows = rng.integers(0, pool, size=n)
        scores = rng.normal(size=n).astype(np.float32)
        if n and draw(st.booleans()):
            scores[rng.integers(0, n)] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        parts.append(_part(genomes[rows], scores, island))
    return parts


@settings(max_examples=300, deadline=None)  # a property, not a timing
@given(parts=island_parts(), top=st.integers(1, 40))
def test_merged_elite_never_holds_a_duplicate_and_keeps_the_best_copy(parts, top) -> None:
    if not any(p[1].size for p in parts):
        with pytest.raises(ValueError):
            merge_elites(parts, top)
        return
    result = merge_elites(parts, top)
    genomes, scores, ids, origin = result.elite
    assert len(np.unique(ids)) == len(ids)  # no duplicate id
    assert len(ids) <= top
    assert np.all(np.isfinite(scores))
    assert np.all(np.diff(scores) >= 0)  # best first
    assert np.array_equal(genome_ids_numpy(genomes), ids)  # rows stay together
    # Reference, the slow way: best finite score per id.
    best: dict[int, float] = {}
    for g, s, i, _ in parts:
        for score, gid in zip(s.tolist(), i.tolist()):
            if np.isfinite(score) and (gid not in best or score < best[gid]):
                best[gid] = score
    for score, gid in zip(scores.tolist(), ids.tolist()):
        assert score == pytest.approx(best[gid])
    expected = sorted(best.values())[:top]
    assert np.allclose(np.sort(scores), expected)
    total = sum(p[1].size for p in parts)
    finite = sum(int(np.isfinite(p[1]).sum()) for p in parts)
    assert result.candidates == total
    assert result.duplicates == finite - len(best)


@settings(max_examples=100, deadline=None)  # a property, not a timing
@given(rounds=st.lists(island_parts(dim=3), min_size=2, max_size=5), top=st.integers(1, 16))
def test_global_best_never_gets_worse_across_epochs(rounds, top) -> None:
    previous = None
    for parts in rounds:
        inputs = parts + ([previous] if previous is not None else [])
        if not any(p[1][np.isfinite(p[1])].size for p in inputs):
            continue
        result = merge_elites(inputs, top)
        if previous is not None and previous[1].size:
            assert result.elite[1][0] <= previous[1][0]
        previous = result.elite


def test_merge_of_a_million_candidates_is_vectorised() -> None:
    rng = np.random.default_rng(0)
    n, dim = 1_000_000, 4
    genomes = rng.integers(0, 50, size=(n, dim)).astype(np.float32)  # many duplicates
    part = _part(genomes, rng.normal(size=n), 0)
    result = merge_elites([part], 64)
    assert len(np.unique(result.elite[2])) == 64
    assert result.duplicates > 0


def _padded_frame(data: bytes, name: str, extra: int) -> bytes:
    """``data`` (an ``.isz`` blob) with ``extra`` bytes of a zstd skippable frame appended to
    frame ``name``'s payload, its length and crc32c made to match: a decoder steps over it."""
    import json
    import struct

    import google_crc32c

    from islandsync.bucket import codec

    _, infos = codec.read_header(data)
    header_len = struct.unpack_from("<I", data, 6)[0]
    doc = json.loads(data[14:14 + header_len])
    payloads = [data[i.offset:i.end] for i in infos]
    for entry, info in zip(doc["frames"], infos):
        if info.name == name:
            k = infos.index(info)
            payloads[k] += struct.pack("<II", 0x184D2A50, extra) + bytes(extra)
            entry["length"], entry["crc32c"] = len(payloads[k]), google_crc32c.value(payloads[k])
    header_len += 64  # room for the offsets' extra digits
    offset = 14 + header_len
    for entry, payload in zip(doc["frames"], payloads):
        entry["offset"], offset = offset, offset + len(payload)
    body = json.dumps(doc, separators=(",", ":")).encode().ljust(header_len)
    start = struct.pack("<4sHI", codec.MAGIC, codec.VERSION, header_len)
    crc = google_crc32c.extend(google_crc32c.value(start), body)
    return start + struct.pack("<I", crc) + body + b"".join(payloads)


def test_the_merges_second_read_is_bounded_by_the_runs_shapes(tmp_path) -> None:
    """N5: the merge's ranged read of elite frames past the first 64 KiB was bounded only by
    the lengths the header states; a frame may hold no more than zstd needs for the raw
    bytes the run's shapes allow."""
    from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
    from islandsync.bucket.layout import checkpoint_key
    from islandsync.bucket.records import Head
    from islandsync.config import spec_from_flags
    from islandsync.leader.merge import IslandElites
    from islandsync.store import LocalStore
    from islandsync.store.counting import CountingStore

    spec = spec_from_flags(problem="rastrigin", dim=5, pop=16, islands=2, elite_size=4)
    genomes = np.random.default_rng(0).random((16, 5)).astype(np.float32)
    snap = IslandSnapshot(0, 5, 80, 0, {
        "genomes": genomes, "scores": np.arange(16, dtype=np.float32),
        "ids": genome_ids_numpy(genomes), "origin": np.zeros(16, np.int64)})
    key = checkpoint_key(0, 5, "w.00000000")
    store = CountingStore(LocalStore(tmp_path))
    store.put(key, _padded_frame(encode_island(snap, elite=4, meta={}), "elite.genomes",
                                 16 << 20))
    elites = IslandElites(store, spec)
    elites.refresh({0: Head(island=0, checkpoint=key, generation=5, owner="w")})
    assert elites.parts() == []  # refused
    assert store.counts()["bytes_read"] < 1 << 20


def test_float64_scores_keep_their_precision() -> None:
    # A run of dtype float64: scores 2e-16 apart near 1 stay apart in the merged elite.
    g = np.zeros((2, 3))
    g[1, 0] = 1.0
    scores = np.array([1.0 + 2e-16, 1.0])
    part = (g, scores, genome_ids_numpy(g), np.zeros(2, np.int64))
    elite = merge_elites([part], 2).elite
    assert elite[1].dtype == np.float64 and list(elite[1]) == [1.0, 1.0 + 2e-16]
    as32 = (g.astype(np.float32), scores.astype(np.float32), part[2], part[3])
    assert merge_elites([as32], 2).elite[1].dtype == np.float32  # float32 runs as before
