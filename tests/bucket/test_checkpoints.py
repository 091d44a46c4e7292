"""Island checkpoints read against the run: the header's counts and the frame list are checked
before anything is decompressed, and a reader falls back along HEAD's lineage, then to any
readable checkpoint at or below HEAD, never above it."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zstandard

from islandsync.bucket import codec
from islandsync.bucket.checkpoints import (
    IslandSnapshot,
    decode_island,
    encode_island,
    load_island,
    max_checkpoint_bytes,
)
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import checkpoint_key
from islandsync.bucket.records import Head
from islandsync.config import RunSpec, spec_from_flags
from islandsync.errors import CheckpointError
from islandsync.store import LocalStore

from .conftest import assemble, island_frames, zeros_payload

POP, DIM, ELITE = 16, 10, 8
# GA named: REAL is the run whose islands carry no island state (the default is cmaes).
REAL = spec_from_flags(problem="rastrigin", dim=DIM, pop=POP, islands=4, elite_size=ELITE,
                       algorithm="ga")
DE = spec_from_flags(problem="rastrigin", dim=DIM, pop=POP, islands=4, elite_size=ELITE,
                     algorithm="de")
TOKENS = spec_from_flags(problem="symbolic_regression", pop=POP, islands=4, elite_size=ELITE)
CMAES = spec_from_flags(problem="rastrigin", dim=DIM, pop=POP, islands=4, elite_size=ELITE,
                        algorithm="cmaes")
KEY = "islands/0/000000000005-w.isz"


def arrays(spec: RunSpec, *, island: int = 0, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pop, width = spec.algorithm.pop, spec.problem.genome.width
    if spec.problem.genome.kind == "real":
        genomes = rng.uniform(-5, 5, (pop, width)).astype(np.float32)
    else:
        genomes = rng.integers(0, spec.problem.genome.vocab, (pop, width), dtype=np.int64)
    out = {"genomes": genomes, "scores": rng.random(pop).astype(np.float32),
           "ids": genome_ids_numpy(genomes), "origin": np.full(pop, island, np.int64)}
    if spec.algorithm.name == "de":
        out |= {"extra.F": np.full(pop, 0.5, np.float32), "extra.CR": np.full(pop, 0.9, np.float32)}
    for name, (shape, dtype) in spec.algorithm.island_frames(width).items():
        out[f"island.{name}"] = rng.random(shape).astype(dtype)
    return out


def snapshot(spec: RunSpec = REAL, *, island: int = 0, generation: int = 5, seed: int = 0,
             **changes: np.ndarray) -> IslandSnapshot:
    a = arrays(spec, island=island, seed=seed) | changes
    return IslandSnapshot(island, generation, generation * POP, 0, a)


def blob(snap: IslandSnapshot, *, elite: int = ELITE, **meta: object) -> bytes:
    return encode_island(snap, elite=elite, meta={"owner": "w", **meta})


def frames_of(snap: IslandSnapshot, elite: int = ELITE) -> list[tuple[str, str, list[int], bytes]]:
    """The frames encode_island writes for ``snap``, as (name, dtype, shape, payload)."""
    return island_frames(snap, elite)


# -- the frame list against the run -----------------------------------------------------------


@pytest.mark.parametrize("spec", [REAL, DE, TOKENS, CMAES], ids=["real", "de", "tokens", "cmaes"])
def test_valid_checkpoints_decode_against_their_run(spec: RunSpec) -> None:
    snap = snapshot(spec)
    got = decode_island(blob(snap), key=KEY, spec=spec)
    assert (got.island, got.generation, got.evals) == (0, 5, 5 * POP)
    for name, array in snap.arrays.items():
        np.testing.assert_array_equal(got.arrays[name], array)


def test_a_decompression_bomb_is_refused_before_it_inflates() -> None:
    """A genomes frame of ~33 KiB that inflates to 256 MiB (a real zstd stream, crc-valid):
    the run's shapes allow 16 x 10 genes, so it is refused from the header alone."""
    big = 256 << 20
    payload = zeros_payload(big)
    assert len(payload) < 64 << 10
    frames = [f for f in frames_of(snapshot()) if f[0] != "genomes"]
    frames.insert(4, ("genomes", "<f4", [POP, big // 4 // POP], payload))
    data = assemble({"island": 0, "generation": 5, "evals": 80, "nan_count": 0}, frames)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=rf"^checkpoint {KEY}: .*genomes"):
            decode_island(data, key=KEY, spec=REAL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def _with(snap_frames: list, name: str, dtype: str | None = None, shape: list[int] | None = None
          ) -> list:
    out = []
    for n, dt, sh, p in snap_frames:
        if n == name:
            dt, sh = dtype or dt, shape if shape is not None else sh
            itemsize, count = int(dt[2:]), int(np.prod(sh))
            p = zstandard.ZstdCompressor(write_content_size=True).compress(bytes(itemsize * count))
        out.append((n, dt, sh, p))
    return out


HEADER = {"island": 0, "generation": 5, "evals": 80, "nan_count": 0}
REST = POP - ELITE
MISFITS = {
    "genomes of ints in a real run": ("rest.genomes", "<i4", None),
    "genomes too narrow": ("rest.genomes", None, [REST, DIM - 1]),
    "genomes too many rows": ("rest.genomes", None, [REST + 1, DIM]),
    "genomes flat": ("rest.genomes", None, [REST * DIM]),
    "scores short": ("rest.scores", None, [REST - 1]),
    "scores of ints": ("rest.scores", "<i4", None),
    "ids of int32": ("rest.ids", "<i4", None),
    "ids of uint64": ("rest.ids", "<u8", None),
    "origin of floats": ("rest.origin", "<f8", None),
    "origin 2-d": ("rest.origin", None, [REST, 1]),
    "order short": ("order", None, [POP - 1]),
    "order of floats": ("order", "<f8", None),
    "elite genomes of another length": ("elite.genomes", None, [ELITE - 1, DIM]),
    "elite genomes too wide": ("elite.genomes", None, [ELITE, DIM + 1]),
    "elite ids short": ("elite.ids", None, [ELITE - 1]),
    "elite scores of bools": ("elite.scores", "|b1", None),
}


@pytest.mark.parametrize("case", MISFITS)
def test_frames_that_do_not_fit_the_run_are_refused(case: str) -> None:
    name, dtype, shape = MISFITS[case]
    data = assemble(HEADER, _with(frames_of(snapshot()), name, dtype, shape))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {KEY}: "):
        decode_island(data, key=KEY, spec=REAL)


ISLAND_MISFITS = {
    "covariance missing": ("island.cov", "drop", None),
    "covariance of another width": ("island.cov", None, [DIM + 1, DIM + 1]),
    "covariance of ints": ("island.cov", "<i8", None),
    "covariance of float32": ("island.cov", "<f4", None),
    "a mean per individual": ("island.mean", None, [POP, DIM]),
    "sigma as a vector": ("island.sigma", None, [1]),
    "an undeclared island frame": ("island.huge", "<f8", [1 << 20]),
}


@pytest.mark.parametrize("case", ISLAND_MISFITS)
def test_island_frames_must_be_the_ones_the_algorithm_declares(case: str) -> None:
    name, dtype, shape = ISLAND_MISFITS[case]
    frames = frames_of(snapshot(CMAES))
    if dtype == "drop":
        frames = [f for f in frames if f[0] != name]
    elif name in {f[0] for f in frames}:
        frames = _with(frames, name, dtype, shape)
    else:
        frames.append((name, dtype, shape, zeros_payload(int(np.prod(shape)) * 8)))
    with pytest.raises(CheckpointError, match=rf"^checkpoint {KEY}: .*island\."):
        decode_island(assemble(HEADER, frames), key=KEY, spec=CMAES)


def test_island_frames_are_refused_in_a_run_without_island_state() -> None:
    frames = frames_of(snapshot(REAL))
    frames.append(("island.mean", "<f8", [DIM], zeros_payload(DIM * 8)))
    with pytest.raises(CheckpointError, match=r"unexpected frame 'island.mean'"):
        decode_island(assemble(HEADER, frames), key=KEY, spec=REAL)


def test_the_size_cap_grows_by_the_declared_island_state_only() -> None:
    # CMA-ES's full covariance is D x D an island: the cap makes room for it, and no more.
    extra = max_checkpoint_bytes(CMAES) - max_checkpoint_bytes(REAL)
    assert extra == 8 * (DIM * DIM + 3 * DIM + 6)  # cov; mean, pc, ps; six scalars


def test_each_genome_is_stored_once_and_the_population_order_comes_back() -> None:
    snap = snapshot()
    names = [n for n, *_ in frames_of(snap)]
    assert names[:4] == ["elite.genomes", "elite.scores", "elite.ids", "elite.origin"]
    assert "genomes" not in names and "order" in names
    rows = {n: shape[0] for n, _, shape, _ in frames_of(snap) if n.endswith("genomes")}
    assert rows == {"elite.genomes": ELITE, "rest.genomes": POP - ELITE}
    got = decode_island(blob(snap), key=KEY, spec=REAL)
    for name, array in snap.arrays.items():  # the engine's order, not best-first
        np.testing.assert_array_equal(got.arrays[name], array)
    best = np.argsort(snap.arrays["scores"], kind="stable")[:ELITE]
    _, frames = codec.decode(blob(snap))
    np.testing.assert_array_equal(frames["elite.genomes"], snap.arrays["genomes"][best])


def test_checkpoints_of_the_layout_before_still_load() -> None:
    """Whole frames beside a copied elite: what writers before this layout wrote."""
    snap = snapshot()
    best = np.argsort(snap.arrays["scores"], kind="stable")[:ELITE]
    old = {**{f"elite.{n}": snap.arrays[n][best] for n in ("genomes", "scores", "ids", "origin")},
           **snap.arrays}
    got = decode_island(codec.encode(HEADER, old), key=KEY, spec=REAL)
    for name, array in snap.arrays.items():
        np.testing.assert_array_equal(got.arrays[name], array)


def test_an_order_that_is_no_permutation_is_refused() -> None:
    frames = dict(codec.decode(blob(snapshot()))[1])
    frames["order"] = np.zeros(POP, np.int64)
    with pytest.raises(CheckpointError, match="not a permutation"):
        decode_island(codec.encode(HEADER, frames), key=KEY, spec=REAL)


def test_frame_list_misfits_beyond_one_frame() -> None:
    snap = snapshot()
    # more elite rows than the run keeps (a writer of another run, or a crafted blob)
    too_many = blob(snap, elite=ELITE + 1)
    decode_island(too_many, key=KEY)
    with pytest.raises(CheckpointError, match="elite of 9 rows"):
        decode_island(too_many, key=KEY, spec=REAL)
    # token genomes must be ints, real genomes floats
    with pytest.raises(CheckpointError, match="genomes"):
        decode_island(blob(snap), key=KEY, spec=TOKENS)
    with pytest.raises(CheckpointError, match="genomes"):
        decode_island(blob(snapshot(TOKENS)), key=KEY, spec=REAL)
    frames = frames_of(snap)
    for what, bad in {
        "missing frames": [f for f in frames if f[0] != "elite.origin"],
        "unexpected frame": frames + [("rng", "<u8", [4],
                                       zstandard.ZstdCompressor().compress(bytes(32)))],
        "extra.* frames": frames + [(f"extra.x{i}", "<f4", [POP], zstandard.ZstdCompressor()
                                     .compress(bytes(4 * POP))) for i in range(17)],
    }.items():
        data = assemble(HEADER, bad)
        with pytest.raises(CheckpointError, match=what):
            decode_island(data, key=KEY, spec=REAL)


def test_the_total_cap_is_what_the_run_allows() -> None:
    # every frame at 8 bytes an item: the genomes, four per-row frames, the elite, the extras
    assert max_checkpoint_bytes(REAL) == 8 * ((POP + ELITE) * (DIM + 3) + 16 * POP)
    assert len(blob(snapshot(DE))) < max_checkpoint_bytes(DE)


# -- the header's counts ------------------------------------------------------------------------

BAD_COUNTS = [float("inf"), float("nan"), -1, 2**62, 2**64, 1.5, 5.0, "5", True, None, [5]]


@pytest.mark.parametrize("field", ["island", "generation", "evals", "nan_count"])
@pytest.mark.parametrize("value", BAD_COUNTS, ids=repr)
def test_header_counts_must_be_bounded_ints(field: str, value: object) -> None:
    """``"generation": Infinity`` made int() raise OverflowError, which killed the worker's
    bucket thread: every bad count is one CheckpointError, with or without the spec."""
    data = assemble({**HEADER, field: value}, frames_of(snapshot()))
    for spec in (None, REAL):
        with pytest.raises(CheckpointError, match=rf"^checkpoint {KEY}: .*{field}"):
            decode_island(data, key=KEY, spec=spec)


def test_missing_nan_count_means_zero() -> None:
    data = assemble({k: v for k, v in HEADER.items() if k != "nan_count"}, frames_of(snapshot()))
    assert decode_island(data, key=KEY, spec=REAL).nan_count == 0


# -- load_island: lineage first, then any checkpoint at or below HEAD ---------------------------


def _put(store: LocalStore, island: int, generation: int, tag: str, data: bytes | None = None,
         spec: RunSpec = REAL) -> str:
    key = checkpoint_key(island, generation, tag)
    store.put(key, data if data is not None else
              blob(snapshot(spec, island=island, generation=generation, seed=generation)))
    return key


def test_a_scores_frame_of_the_wrong_length_is_skipped_for_the_previous(tmp_path: Path) -> None:
    """A checkpoint whose scores frame is one short crashed every worker that claimed the
    island: with the run's spec it is skipped, and the lineage's previous one resumed."""
    store = LocalStore(tmp_path)
    good = _put(store, 2, 10, "a")
    bad_snap = snapshot(island=2, generation=12, scores=np.zeros(POP - 1, np.float32))
    bad = _put(store, 2, 12, "b", blob(bad_snap))
    head = Head(island=2, checkpoint=bad, generation=12, owner="b", previous=[good])
    snap = load_island(store, 2, head, spec=REAL)
    assert snap is not None and snap.meta["key"] == good and snap.arrays["scores"].shape == (POP,)


def test_an_exhausted_lineage_falls_back_to_any_readable_checkpoint_below_head(
        tmp_path: Path) -> None:
    """Every checkpoint HEAD names is corrupt; an older one HEAD no longer names (its lineage
    is only MAX_PREVIOUS long) is readable, and so is an orphan above HEAD. The island resumes
    from the older one, not from the seed, and never from the orphan."""
    store = LocalStore(tmp_path)
    oldest = _put(store, 1, 4, "a")
    older = _put(store, 1, 6, "x", b"garbage")  # below HEAD, unreadable: skipped
    lineage = [_put(store, 1, g, "a", b"\x00" * 40) for g in (16, 14, 12, 10)]
    orphan = _put(store, 1, 20, "z")  # a writer that lost the island: never resumed
    _put(store, 0, 15, "a")  # another island's
    head = Head(island=1, checkpoint=lineage[0], generation=16, owner="a",
                previous=lineage[1:])
    snap = load_island(store, 1, head, spec=REAL)
    assert snap is not None and snap.meta["key"] == oldest, snap and snap.meta["key"]
    assert snap.generation == 4 and older and orphan
    store.delete(oldest)
    assert load_island(store, 1, head, spec=REAL) is None


def test_lineage_comes_before_newer_blobs_it_does_not_name(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    named = _put(store, 0, 10, "a")
    _put(store, 0, 13, "a")  # an orphan below HEAD: a branch HEAD never took
    head_blob = _put(store, 0, 20, "b", b"truncated")
    head = Head(island=0, checkpoint=head_blob, generation=20, owner="b", previous=[named])
    assert load_island(store, 0, head, spec=REAL).meta["key"] == named


# -- what a reader downloads (issue 18, N5) ---------------------------------------------------


def test_a_padded_checkpoint_is_refused_without_downloading_the_padding(tmp_path: Path) -> None:
    """A valid checkpoint padded with junk once loaded (1.7 KB + 300 MB: peak RSS 75 -> 675
    MiB). The run's shapes cap what a reader fetches; what is left must be header and frames."""
    from islandsync.bucket.checkpoints import max_checkpoint_blob
    from islandsync.store.counting import CountingStore

    store = CountingStore(LocalStore(tmp_path))
    good = blob(snapshot())
    cap = max_checkpoint_blob(REAL)
    head = Head(island=0, checkpoint=KEY, generation=5, owner="w")
    for padding in (1, cap):  # a little (refused by the codec), a lot (refused unread)
        store.put(KEY, good + bytes(padding))
        before = store.counts()["bytes_read"]
        assert load_island(store, 0, head, spec=REAL) is None
        assert store.counts()["bytes_read"] - before <= cap + 1
    store.put(KEY, good)
    assert load_island(store, 0, head, spec=REAL) is not None
    assert len(good) < cap < 1 << 20  # the cap follows the run's (tiny) shapes


def test_an_auto_dtype_run_reads_either_float_dtype_but_never_a_mix() -> None:
    """``dtype = "auto"``: each worker writes its own dtype (float32 on a GPU, float64 on a
    CPU), so a checkpoint of either reads, every float frame of one dtype (SHADE's archive
    too); one whose frames mix the two is refused before anything is decompressed."""
    spec = spec_from_flags(problem="rastrigin", dim=DIM, pop=POP, islands=4,
                           elite_size=ELITE, algorithm="shade")
    assert spec.dtype == "auto"
    wide = {name: a.astype(np.float64) if a.dtype == np.float32 else a
            for name, a in arrays(spec).items()}
    for name, (shape, dt) in spec.algorithm.island_frames(DIM, "float64").items():
        wide[f"island.{name}"] = np.zeros(shape, dt)
    for snap in (snapshot(spec), IslandSnapshot(0, 5, 5 * POP, 0, wide)):
        got = decode_island(blob(snap), key=KEY, spec=spec)
        assert got.arrays["genomes"].dtype == snap.arrays["genomes"].dtype
    mixed = dict(wide, scores=wide["scores"].astype(np.float32))
    with pytest.raises(CheckpointError, match=KEY):
        decode_island(blob(IslandSnapshot(0, 5, 5 * POP, 0, mixed)), key=KEY, spec=spec)
    # A run of a fixed dtype reads only its own.
    fixed = spec.model_copy(update={"dtype": "float32"})
    with pytest.raises(CheckpointError, match="float64|<f8"):
        decode_island(blob(IslandSnapshot(0, 5, 5 * POP, 0, wide)), key=KEY, spec=fixed)
