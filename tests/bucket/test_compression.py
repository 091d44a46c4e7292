"""How a frame's bytes are compressed (``bucket/compression.py``): the byte shuffle is undone
exactly for every item size; zstd levels outside zstd's range are a writer's error; the
per-frame choice never shuffles 1-byte items, leaves an empty frame alone, and never raises
the level past ``ESCALATE_MAX_LEVEL``. (Which filter and level real populations get, through
``codec.choose_codec``, is in tests/bucket/test_codec.py.)"""

from __future__ import annotations

import numpy as np
import pytest
import zstandard

from islandsync.bucket import compression
from islandsync.bucket.compression import (
    ESCALATE_MAX_LEVEL,
    ESCALATE_STEP,
    check_level,
    choose,
    compress,
    shuffle,
    unshuffle,
)
from islandsync.errors import ConfigError


@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_unshuffle_undoes_shuffle_for_every_item_size(itemsize: int) -> None:
    raw = np.random.default_rng(itemsize).integers(0, 256, 40 * itemsize, dtype=np.uint8)
    shuffled = shuffle(raw, itemsize).reshape(-1)  # as its bytes are compressed
    if itemsize > 1:
        assert not np.array_equal(shuffled, raw)
        # byte plane k holds byte k of every item, in item order
        assert np.array_equal(shuffled[:40], raw[::itemsize])
    assert np.array_equal(unshuffle(shuffled, itemsize), raw)


def test_a_compressed_frame_carries_its_size_and_decompresses_to_its_bytes() -> None:
    raw = np.arange(1000, dtype=np.int32).view(np.uint8)
    frame = compress(raw, 3)
    assert zstandard.frame_content_size(frame) == raw.size  # what the reader checks first
    assert zstandard.ZstdDecompressor().decompress(frame) == raw.tobytes()


@pytest.mark.parametrize("level", [0, -1, zstandard.MAX_COMPRESSION_LEVEL + 1, 3.0, "3", True])
def test_a_level_zstd_does_not_have_is_a_writers_error(level: object) -> None:
    with pytest.raises(ConfigError, match="zstd level"):
        check_level(level)


def test_levels_zstd_has_pass() -> None:
    assert check_level(1) == 1 and check_level(zstandard.MAX_COMPRESSION_LEVEL) == \
        zstandard.MAX_COMPRESSION_LEVEL


def test_an_empty_frame_is_left_alone_at_the_level_asked() -> None:
    assert choose(np.zeros(0, np.uint8), 4, 3) == ("none", 3)


def test_one_byte_items_are_never_shuffled() -> None:
    rng = np.random.default_rng(1)
    raw = np.repeat(rng.integers(0, 4, 4096, dtype=np.uint8), 8)
    assert choose(raw, 1, 3)[0] == "none"


def _copied_genes(rows: int = 4096, dim: int = 64) -> np.ndarray:
    """A GA population: children copy genes of a few parents, so zstd finds long matches
    that a higher level finds more of."""
    rng = np.random.default_rng(2)
    pool = rng.standard_normal((16, dim), dtype=np.float32)
    pick = rng.integers(0, 16, (rows, dim))
    return np.take_along_axis(pool, pick % 16, axis=0).view(np.uint8).reshape(-1)


def test_the_level_is_raised_where_it_pays_but_never_past_the_cap(
        monkeypatch: pytest.MonkeyPatch) -> None:
    raw = _copied_genes()
    assert choose(raw, 4, 3)[1] == 3 + ESCALATE_STEP  # it pays on copied genes
    assert choose(raw, 4, ESCALATE_MAX_LEVEL)[1] == ESCALATE_MAX_LEVEL
    monkeypatch.setattr(compression, "ESCALATE_MAX_LEVEL", 4)
    assert choose(raw, 4, 3)[1] <= 4


def test_the_level_stays_where_the_gain_is_too_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "ESCALATE_MIN_GAIN", 0.99)  # nothing gains 99%
    assert choose(_copied_genes(), 4, 3)[1] == 3
