"""Genome ids in numpy (``bucket/ids.py``): a content hash, so equal genomes have equal ids
whatever their dtype's width, -0.0 and 0.0 (and every NaN) are one gene, one changed gene
changes the id, and the hash is fixed (part of the format: a stored id must keep meaning the
same genome). Bit-identity with the torch twin is in tests/search/test_population.py."""

from __future__ import annotations

import numpy as np
import pytest

from islandsync.bucket.ids import genome_ids_numpy
from islandsync.errors import ConfigError


def test_equal_genomes_have_equal_ids_and_one_gene_changes_it() -> None:
    g = np.arange(12, dtype=np.float32).reshape(3, 4)
    g[2] = g[0]
    ids = genome_ids_numpy(g)
    assert ids.dtype == np.int64 and ids.shape == (3,)
    assert ids[0] == ids[2] and ids[0] != ids[1]
    h = g.copy()
    h[0, 3] = np.nextafter(h[0, 3], np.float32(100))
    assert genome_ids_numpy(h)[0] != ids[0]


def test_the_id_is_of_the_value_not_its_storage() -> None:
    g = np.array([[1.5, -2.0, 0.0]], np.float32)
    assert genome_ids_numpy(g.astype(np.float64)) == genome_ids_numpy(g)
    assert genome_ids_numpy(np.array([[1.5, -2.0, -0.0]], np.float32)) == genome_ids_numpy(g)
    nan = np.array([[np.nan, 1.0]], np.float32)
    other_nan = nan.view(np.uint32).copy()
    other_nan[0, 0] |= 1  # another NaN payload
    assert genome_ids_numpy(other_nan.view(np.float32)) == genome_ids_numpy(nan)
    tokens = np.array([[1, 2, 3]], np.int64)
    assert genome_ids_numpy(tokens.astype(np.int8)) == genome_ids_numpy(tokens)


def test_leading_dimensions_are_batch_dimensions() -> None:
    g = np.random.default_rng(0).standard_normal((2, 3, 5)).astype(np.float32)
    assert np.array_equal(genome_ids_numpy(g), genome_ids_numpy(g.reshape(6, 5)).reshape(2, 3))


def test_the_hash_is_fixed() -> None:
    """Stored ids name genomes across versions: these values may never change."""
    ids = genome_ids_numpy(np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]], np.float32))
    assert ids.tolist() == EXPECTED


def test_what_has_no_genes_or_no_number_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one dimension"):
        genome_ids_numpy(np.float32(1.0))
    with pytest.raises(ConfigError, match="unsupported dtype"):
        genome_ids_numpy(np.array([["a", "b"]]))


#: Written when the format was fixed (and equal to the torch twin's values for these genomes).
EXPECTED = [5192976491995929680, 9222607612119531151]
