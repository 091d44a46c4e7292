"""Genome ids, elites, migrant selection and injection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import IslandState
from islandsync.search.population import (
    device_genome_ids,
    elite,
    genome_ids,
    genome_ids_numpy,
    inject,
    select_migrants,
)

# ---------------------------------------------------------------- genome ids


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                  elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_ids_torch_equals_numpy_float(a: np.ndarray) -> None:
    # genome_ids takes numpy's way on a CPU; device_genome_ids is the torch code a GPU runs.
    for ids in (genome_ids, device_genome_ids):
        assert np.array_equal(ids(torch.from_numpy(a)).numpy(), genome_ids_numpy(a))


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(st.sampled_from([np.int64, np.int32, np.uint8]),
                  hnp.array_shapes(min_dims=1, max_dims=3, max_side=6)))
def test_ids_torch_equals_numpy_int(a: np.ndarray) -> None:
    for ids in (genome_ids, device_genome_ids):
        assert np.array_equal(ids(torch.from_numpy(a)).numpy(), genome_ids_numpy(a))


def test_ids_canonical_and_sensitive() -> None:
    x = torch.tensor([[0.0, 1.5, -2.0], [-0.0, 1.5, -2.0], [0.0, 1.5, -2.0000002]])
    ids = genome_ids(x)
    assert ids.dtype == torch.int64 and ids.shape == (3,)
    assert ids[0] == ids[1] and ids[0] != ids[2]
    # float64 genomes hash by their float32 value, the stored precision
    assert genome_ids(x.double())[0] == ids[0]
    # same values in a different order, or as ints, are different genomes
    assert genome_ids(x[:1, [1, 0, 2]])[0] != ids[0]
    # every single-gene change changes the id
    g = torch.Generator().manual_seed(3)
    base = torch.randint(0, 13, (40,), generator=g)
    changed = base.repeat(40, 1)
    changed[torch.arange(40), torch.arange(40)] = (base + 1) % 13
    assert bool((genome_ids(changed) != genome_ids(base)).all())


def test_ids_over_many_blocks_and_any_layout() -> None:
    # Both ways hash a CPU batch in blocks of rows (2**15 genes): a batch of several blocks,
    # with a short last one, strided, float64, and bfloat16 or a tensor that requires grad
    # (torch's way: numpy cannot take them) give the same ids both ways, and those of each
    # genome hashed alone.
    g = torch.Generator().manual_seed(1)
    x = torch.randn(250, 301, generator=g)
    x[3, 5], x[200, 7], x[249, 0] = float("nan"), -0.0, float("inf")
    for genomes in (x, x.t().contiguous().t(), x.double(), x[::2], x.bfloat16(),
                    x.clone().requires_grad_(), x[:, None, :].expand(250, 2, 301)):
        want = device_genome_ids(genomes)
        assert torch.equal(genome_ids(genomes), want)
        assert torch.equal(want.reshape(-1)[:1], device_genome_ids(genomes.reshape(-1, 301)[:1]))
    assert torch.equal(genome_ids(x), torch.from_numpy(genome_ids_numpy(x.numpy())))
    assert torch.equal(genome_ids(x[:, None]), genome_ids(x)[:, None])


def test_no_collisions_in_1e5_random_genomes() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.rand(100_000, 20, generator=g)
    toks = torch.randint(0, 13, (100_000, 24), generator=g)
    for x in (real, toks):
        ids = genome_ids(x)
        assert torch.unique(ids).numel() == torch.unique(x, dim=0).shape[0]


# ---------------------------------------------------------------- helpers


def make_state(scores: list[list[float]], d: int = 2, island_ids: list[int] | None = None,
               extra: bool = False) -> IslandState:
    s = torch.tensor(scores, dtype=torch.float32)
    k, p = s.shape
    genomes = torch.arange(k * p * d, dtype=torch.float32).reshape(k, p, d)
    isl = torch.tensor(island_ids if island_ids is not None else list(range(k)))
    ex = {"F": torch.full((k, p), 0.7)} if extra else {}
    return IslandState(genomes, s, genome_ids(genomes), isl[:, None].expand(k, p).clone(), ex)


def test_elite_best_first() -> None:
    st_ = make_state([[3.0, 1.0, 2.0, 0.5], [0.0, 9.0, 8.0, 7.0]])
    g, s, ids, origin = elite(st_, 2)
    assert s.tolist() == [[0.5, 1.0], [0.0, 7.0]]
    assert torch.equal(ids, genome_ids(g))
    assert torch.equal(g[0, 0], st_.genomes[0, 3]) and origin.tolist() == [[0, 0], [1, 1]]
    with pytest.raises(ConfigError):
        elite(st_, 5)


# ---------------------------------------------------------------- select_migrants


def test_pool_never_picks_own_origin_nor_residents_nor_duplicates() -> None:
    # candidates: (score, id, origin)
    cands = [(1.0, 100, 0), (2.0, 101, 1), (0.5, 102, 2), (0.7, 101, 2), (float("inf"), 103, 1),
             (0.1, 104, 0), (0.2, 105, 1), (0.3, 105, 2)]
    sc = torch.tensor([c[0] for c in cands])
    ids = torch.tensor([c[1] for c in cands])
    org = torch.tensor([c[2] for c in cands])
    island_ids = torch.tensor([0, 1, 2])
    resident = torch.tensor([[1, 2], [102, 3], [4, 5]])
    idx, valid = select_migrants(sc, ids, org, island_ids, resident, 3, "pool", 3)
    assert idx.shape == valid.shape == (3, 3) and idx.dtype == torch.int64
    chosen = [[int(i) for i, v in zip(r, vr, strict=True) if v]
              for r, vr in zip(idx, valid, strict=True)]
    # island 0: eligible 102(.5), 101 best copy (.7 from origin 2), 105 best copy (.2)
    assert [ids[i].item() for i in chosen[0]] == [105, 102, 101]
    # island 1: 102 is resident; 104(.1), 105 only from origin 2 (.3), 101 from origin 2 (.7)
    assert [ids[i].item() for i in chosen[1]] == [104, 105, 101]
    assert org[chosen[1][1]] == 2 and org[chosen[1][2]] == 2
    # island 2: 104(.1), 105 from origin 1 (.2), 100(1.0)
    assert [ids[i].item() for i in chosen[2]] == [104, 105, 100]
    for k, row in enumerate(chosen):
        assert all(org[i] != k for i in row)
        assert all(torch.isfinite(sc[i]) for i in row)


def test_ring_takes_only_from_previous_island_and_pads() -> None:
    sc = torch.tensor([1.0, 2.0, 3.0, 0.5])
    ids = torch.tensor([10, 11, 12, 13])
    org = torch.tensor([4, 4, 0, 5])
    island_ids = torch.tensor([0, 5, 1])  # global numbers of a worker's islands
    resident = torch.tensor([[11, 99], [0, 1], [2, 3]])
    idx, valid = select_migrants(sc, ids, org, island_ids, resident, 4, "ring", 6)
    # island 0 hears only from 5 = (0 - 1) % 6, island 5 from 4 (id 11 is not resident
    # there), island 1 from 0; fewer eligible candidates than slots leave padding
    assert valid.tolist() == [[True, False, False, False], [True, True, False, False],
                              [True, False, False, False]]
    assert idx[0, 0].item() == 3 and idx[1, :2].tolist() == [0, 1] and idx[2, 0].item() == 2


def test_select_migrants_empty_and_bad_args() -> None:
    e = torch.empty(0)
    idx, valid = select_migrants(e, e.long(), e.long(), torch.tensor([0, 1]),
                                 torch.zeros(2, 3, dtype=torch.long), 2, "pool", 2)
    assert idx.shape == (2, 2) and not bool(valid.any())
    with pytest.raises(ConfigError, match="topology"):
        select_migrants(e, e.long(), e.long(), torch.tensor([0]),
                        torch.zeros(1, 3, dtype=torch.long), 2, "star", 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.integers(0, 6), st.integers(0, 2**31 - 1),
       st.sampled_from(["pool", "ring"]))
def test_select_migrants_invariants(c: int, k: int, m: int, seed: int, topology: str) -> None:
    g = torch.Generator().manual_seed(seed)
    n = 5
    sc = torch.randint(0, 5, (c,), generator=g).float()
    sc[torch.rand(c, generator=g) < 0.1] = float("inf")
    ids = torch.randint(0, 12, (c,), generator=g)
    org = torch.randint(0, n, (c,), generator=g)
    island_ids = torch.randperm(n, generator=g)[:k]
    resident = torch.randint(0, 12, (k, 3), generator=g)
    idx, valid = select_migrants(sc, ids, org, island_ids, resident, m, topology, n)
    assert idx.shape == valid.shape == (k, m)
    for r in range(k):
        isl = island_ids[r].item()
        chosen = idx[r][valid[r]].tolist()
        ok = [i for i in range(c) if sc[i].isfinite() and ids[i].item() not in resident[r].tolist()
              and (org[i] != isl if topology == "pool" else org[i] == (isl - 1) % n)]
        n_ids = len({ids[i].item() for i in ok})
        assert len(chosen) == min(m, n_ids)                     # as many as possible
        assert valid[r].tolist() == sorted(valid[r].tolist(), reverse=True)  # valid first
        assert len({ids[i].item() for i in chosen}) == len(chosen)  # no duplicate ids
        assert set(chosen) <= set(ok)
        chosen_scores = [sc[i].item() for i in chosen]
        assert chosen_scores == sorted(chosen_scores)
        # best first: nothing left out beats anything taken (per distinct id)
        left = {ids[i].item(): sc[i].item() for i in sorted(ok, key=lambda i: -sc[i])}
        for i in chosen:
            left.pop(ids[i].item(), None)
        if chosen and left:
            assert min(left.values()) >= max(chosen_scores)


# ---------------------------------------------------------------- inject


def test_inject_replaces_worst_keeps_best() -> None:
    st_ = make_state([[5.0, 1.0, 9.0, 3.0], [2.0, 4.0, 0.0, 1.0]], extra=True)
    mg = torch.full((2, 2, 2), -1.0)
    mg[0, 1] = -2.0
    ms = torch.tensor([[0.25, 0.375], [0.125, 0.5]])
    mi = genome_ids(mg)
    mo = torch.tensor([[7, 8], [9, 9]])
    valid = torch.tensor([[True, True], [False, True]])
    out = inject(st_, None, mg, ms, mi, mo, valid, {"F": 0.5})
    # island 0: the two worst (9 at 2, 5 at 0) replaced; island 1: worst (4 at 1) replaced by
    # its one valid migrant (the second slot)
    assert out.scores.tolist() == [[0.375, 1.0, 0.25, 3.0], [2.0, 0.5, 0.0, 1.0]]
    assert out.origin.tolist() == [[8, 0, 7, 0], [1, 9, 1, 1]]
    assert torch.equal(out.ids, genome_ids(out.genomes))
    f = st_.extra["F"][0, 0].item()
    assert out.extra["F"].tolist() == [[0.5, f, 0.5, f], [f, 0.5, f, f]]
    assert torch.equal(out.genomes[0, 1], st_.genomes[0, 1])
    assert out.scores.min(1).values.tolist() == [0.25, 0.0]
    assert st_.scores[0, 2] == 9.0  # input untouched


def test_inject_into_some_rows() -> None:
    st_ = make_state([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    rows = torch.tensor([2, 0])
    mg = torch.zeros(2, 1, 2)
    out = inject(st_, rows, mg, torch.tensor([[0.0], [0.5]]), genome_ids(mg),
                 torch.tensor([[4], [4]]), torch.tensor([[True], [True]]), {})
    assert out.scores.tolist() == [[1.0, 0.5], [3.0, 4.0], [5.0, 0.0]]
    assert out.origin.tolist() == [[0, 4], [1, 1], [2, 4]]
    with pytest.raises(ConfigError, match="extra_defaults"):
        inject(make_state([[1.0]], extra=True), None, torch.zeros(1, 1, 2), torch.zeros(1, 1),
               torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
               torch.ones(1, 1, dtype=torch.bool), {})


def test_ids_every_nan_is_one_nan() -> None:
    # Quiet, signalling and negative NaNs (any payload) hash alike, on both sides; so do
    # -0.0 and 0.0; the infinities keep their own ids.
    bits = np.array([0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FFFFFFF, 0x80000000,
                     0x00000000, 0x7F800000, 0xFF800000], dtype=np.uint32)
    a = np.repeat(bits.view(np.float32)[:, None], 4, axis=1)
    with np.errstate(invalid="ignore"):
        want = genome_ids_numpy(a)
    got = genome_ids(torch.from_numpy(a.copy())).numpy()
    assert np.array_equal(got, want)
    assert np.array_equal(device_genome_ids(torch.from_numpy(a.copy())).numpy(), want)
    assert len(set(got[:5].tolist())) == 1 and got[5] == got[6]
    assert len({got[0], got[5], got[7], got[8]}) == 4


def test_inject_valid_first_is_the_same_injection() -> None:
    # The engine passes select_migrants' valid-first slots with valid_first=True (no sort);
    # on such input the result must be the one of the general path.
    g = torch.Generator().manual_seed(5)
    st_ = make_state(torch.rand(3, 6, generator=g).tolist(), extra=True)
    mg = torch.rand(3, 2, 2, generator=g)
    ms, mo = torch.rand(3, 2, generator=g), torch.tensor([[7, 8], [9, 9], [4, 5]])
    valid = torch.tensor([[True, True], [True, False], [False, False]])
    a = inject(st_, None, mg, ms, genome_ids(mg), mo, valid, {"F": 0.5})
    b = inject(st_, None, mg, ms, genome_ids(mg), mo, valid, {"F": 0.5}, valid_first=True)
    for x, y in zip(a[:4], b[:4], strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a.extra["F"], b.extra["F"])
    assert not torch.equal(a.scores, st_.scores)
