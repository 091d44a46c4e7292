"""The .isz checkpoint codec: round trips, hostile input, ranged reads, the adaptive filter."""

from __future__ import annotations

import ast
import datetime as dt
import json
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from islandsync.bucket import codec, compression
from islandsync.errors import CheckpointError, ConfigError, IslandSyncError, NotFound
from islandsync.store.base import Blob, BlobInfo, BlobStore

NAME = "islands/3/120.isz"
DTYPES = ["<f2", "<f4", "<f8", ">f4", ">f8", "|i1", "<i2", "<i4", "<i8", ">i2", ">i8",
          "|u1", "<u2", "<u4", "<u8", "|b1"]


def bits(a: np.ndarray) -> np.ndarray:
    """Values as native unsigned ints, so NaN payloads and -0.0 compare exactly."""
    a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.byteswap().view(a.dtype.newbyteorder())
    return a.view(f"u{a.itemsize}") if a.dtype.kind == "f" else a


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert (got.dtype.kind, got.itemsize) == (want.dtype.kind, want.itemsize)
    assert got.flags.writeable and got.flags.c_contiguous
    np.testing.assert_array_equal(bits(got), bits(want))


@st.composite
def frame_arrays(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=9))
    array = draw(hnp.arrays(dtype, shape))
    layout = draw(st.sampled_from(["c", "fortran", "reversed"]))
    if layout == "fortran":
        array = np.asfortranarray(array)
    elif layout == "reversed" and array.ndim:
        array = array[::-1]
    return array


@settings(max_examples=500, deadline=None)
@given(
    frames=st.dictionaries(st.text(min_size=1, max_size=8), frame_arrays(), max_size=3),
    meta=st.dictionaries(st.text(max_size=5), st.none() | st.booleans() | st.integers()
                         | st.floats(allow_nan=False) | st.text(max_size=5), max_size=4),
    filt=st.sampled_from(["auto", "none", "shuffle"]),
    level=st.sampled_from([1, 3]),
)
def test_round_trip(frames: dict, meta: dict, filt: str, level: int) -> None:
    blob = codec.encode(meta, frames, level=level, filter=filt)
    got_meta, got = codec.decode(blob, name=NAME)
    assert got_meta == meta
    assert list(got) == list(frames)
    for name, array in frames.items():
        assert_same(got[name], array)


def test_round_trip_edge_arrays() -> None:
    nan_payloads = np.array([0x7FC00000, 0x7FA00001, 0xFFC12345, 0x80000000], "<u4")
    frames: dict[str, Any] = {
        "scalar": np.array(2.5),
        "numpy_scalar": np.int16(-7),
        "empty": np.zeros((0, 5), np.float32),
        "empty3d": np.zeros((2, 0, 3), "<i8"),
        "nans_be": nan_payloads.view("<f4").astype(">f4"),  # NaN bits must survive byte swaps
        "fortran": np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4)),
        "strided": np.arange(40, dtype=np.float64).reshape(5, 8)[::2, 1::3],
        "bools": np.array([[True, False, True]]),
    }
    for filt in ("auto", "none", "shuffle"):
        _, got = codec.decode(codec.encode({}, frames, filter=filt))
        for name, array in frames.items():
            assert_same(got[name], np.asarray(array))
    assert bits(got["nans_be"]).tolist() == nan_payloads.tolist()


def test_large_frame_round_trip_and_frame_order() -> None:
    rng = np.random.default_rng(0)
    frames = {"elite": rng.standard_normal((8, 50), dtype=np.float32),
              # over SAMPLE_WHOLE_LIMIT, so "auto" decides on the sample, for each item size
              "pop": converged(1024, 1000, rng),
              "f64": rng.standard_normal((301, 999)),
              "tokens": rng.integers(0, 64, (1501, 1003), dtype=np.int16),
              "bytes": rng.integers(0, 4, 2_100_001, dtype=np.int8)}
    blob = codec.encode({"gen": 1}, frames)
    _, infos = codec.read_header(blob, blob_size=len(blob))
    assert [i.name for i in infos] == list(frames)
    assert [i.offset for i in infos] == sorted(i.offset for i in infos)
    _, got = codec.decode(blob)
    for name, array in frames.items():
        assert_same(got[name], array)


# ----------------------------------------------------------------------------- corruption


def small_checkpoint() -> tuple[bytes, dict, dict]:
    rng = np.random.default_rng(1)
    meta = {"island": 3, "generation": 120, "algo": "ga", "best": -1.25}
    frames: dict[str, Any] = {"elite": rng.standard_normal((4, 3)).astype(np.float32),
              "fitness": np.linspace(0.0, 1.0, 4), "ids": np.arange(4, dtype=np.uint64)}
    return codec.encode(meta, frames), meta, frames


def test_every_byte_flip_and_truncation_is_detected() -> None:
    blob, meta, frames = small_checkpoint()
    assert 200 < len(blob) < 1000
    for i in range(len(blob)):
        for mask in (0x01, 0x80, 0xFF):
            bad = bytearray(blob)
            bad[i] ^= mask
            try:
                got_meta, got = codec.decode(bytes(bad), name=NAME)
            except CheckpointError as err:
                assert str(err).startswith(f"checkpoint {NAME}: ")
                continue
            # Allowed by the contract, though the header crc32c makes it unreachable today.
            assert got_meta == meta and all(np.array_equal(got[k], v) for k, v in frames.items())
    for n in range(len(blob)):
        with pytest.raises(CheckpointError, match=f"^checkpoint {NAME}: "):
            codec.decode(blob[:n], name=NAME)


def with_header(blob: bytes, body: bytes) -> bytes:
    """``blob`` with its header JSON replaced by ``body`` (same length) and a fresh crc32c."""
    hlen = struct.unpack_from("<I", blob, 6)[0]
    assert len(body) == hlen
    crc = google_crc32c.extend(google_crc32c.value(blob[:10]), body)
    return blob[:10] + struct.pack("<I", crc) + body + blob[14 + hlen:]


def decode_or_checkpoint_error(blob: bytes) -> None:
    try:
        codec.decode(blob, name=NAME)
    except CheckpointError as err:
        assert str(err).startswith(f"checkpoint {NAME}: ")


def test_header_byte_changes_behind_a_valid_crc() -> None:
    # A hostile writer can always produce a matching crc32c: the schema checks must hold alone.
    blob = small_checkpoint()[0]
    hlen = struct.unpack_from("<I", blob, 6)[0]
    body = blob[14:14 + hlen]
    for i in range(hlen):
        for value in {body[i] ^ 0x01, body[i] ^ 0x20, ord("9"), ord("-"), ord('"'), 0x80}:
            decode_or_checkpoint_error(with_header(blob, body[:i] + bytes([value]) + body[i + 1:]))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.integers(0, 3000)
    | st.floats() | st.text(max_size=4) | st.sampled_from(["<f4", "|b1", "zstd", "shuffle"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                 max_size=3),
    max_leaves=6,
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_header_field_changes_behind_a_valid_crc(data: st.DataObject) -> None:
    _, meta, frames = small_checkpoint()
    blob = codec.encode({**meta, "slack": "x" * 300}, frames)
    hlen = struct.unpack_from("<I", blob, 6)[0]
    doc = json.loads(blob[14:14 + hlen])
    del doc["meta"]["slack"]  # room for longer values at the same header length
    frame = doc["frames"][data.draw(st.integers(0, 2))]
    key = data.draw(st.sampled_from([*frame, "meta", "frames", "extra"]))
    target = doc if key in ("meta", "frames") else frame
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(JSON_VALUES)
    body = json.dumps(doc, separators=(",", ":")).encode()
    if len(body) <= hlen:  # the header's length may not change, or every offset would shift
        decode_or_checkpoint_error(with_header(blob, body.ljust(hlen)))


def forge(frames: list[dict], payload: bytes = b"", meta: object = None, *,
          body: bytes | None = None, magic: bytes = codec.MAGIC, version: int = 1,
          pad: int = 2048) -> bytes:
    """A blob built by hand from the documented layout, with a valid header crc32c.

    Frame offsets are given relative to the end of the (padded) header."""
    entries = [dict(f, offset=14 + pad + f.get("offset", 0)) if type(f.get("offset", 0)) is int
               else f for f in frames]
    if body is None:
        doc = {"meta": {} if meta is None else meta, "frames": entries}
        body = json.dumps(doc).encode()
    body = body.ljust(pad)
    start = struct.pack("<4sHI", magic, version, len(body))
    crc = google_crc32c.extend(google_crc32c.value(start), body)
    return start + struct.pack("<I", crc) + body + payload


def entry(payload: bytes, **over: object) -> dict:
    base = {"name": "pop", "length": len(payload), "raw_length": 16, "dtype": "<f4",
            "shape": [4], "codec": "zstd", "filter": "none",
            "crc32c": google_crc32c.value(payload)}
    return {**base, **over}


ZPAYLOAD = zstandard.ZstdCompressor().compress(np.arange(4, dtype="<f4").tobytes())
NO_SIZE = zstandard.ZstdCompressor(write_content_size=False).compress(bytes(16))
BOOL_2 = zstandard.ZstdCompressor().compress(b"\x00\x01\x02")


def test_forge_matches_the_documented_layout() -> None:
    meta, got = codec.decode(forge([entry(ZPAYLOAD)], ZPAYLOAD, {"k": "v"}))
    assert meta == {"k": "v"}
    assert got["pop"].tolist() == [0.0, 1.0, 2.0, 3.0]


def _bad_prefix(**kw: object) -> bytes:
    good = forge([entry(ZPAYLOAD)], ZPAYLOAD)
    magic, version, hlen, crc = struct.unpack_from("<4sHII", good)
    fields = {"magic": magic, "version": version, "hlen": hlen, "crc": crc, **kw}
    return struct.pack("<4sHII", *fields.values()) + good[14:]


Z = ZPAYLOAD
FORGED = {
    "wrong magic": forge([entry(Z)], Z, magic=b"PK\x03\x04"),
    "wrong version": forge([entry(Z)], Z, version=2),
    "absurd header length": _bad_prefix(hlen=2**32 - 1),
    "header length past the end": _bad_prefix(hlen=60000),
    "bad header crc": _bad_prefix(crc=12345),
    "bad json": forge([], body=b'{"meta": {}, "frames": [}'),
    "bad utf-8": forge([], body=b'{"meta": {"\xff\xfe": 1}, "frames": []}'),
    "json not an object": forge([], body=b"[1, 2]"),
    "deep nesting": forge([], body=b"[" * 30000 + b"]" * 30000, pad=60010),
    "huge int": forge([], body=b'{"meta": {"x": ' + b"9" * 5000 + b'}, "frames": []}'),
    "duplicate json key": forge([], body=b'{"meta": {}, "meta": {}, "frames": []}'),
    "meta not a dict": forge([], meta=[1, 2]),
    "frames not a list": forge([], body=b'{"meta": {}, "frames": {}}'),
    "frame not a dict": forge([], body=b'{"meta": {}, "frames": [5]}'),
    "name not str": forge([entry(Z, name=7)], Z),
    "empty name": forge([entry(Z, name="")], Z),
    "duplicate names": forge([entry(Z), entry(Z)], Z),
    "offset as str": forge([entry(Z, offset="0")], Z),
    "length as bool": forge([entry(Z, length=True)], Z),
    "negative length": forge([entry(Z, length=-1)], Z),
    "shape of floats": forge([entry(Z, shape=[4.0])], Z),
    "negative shape": forge([entry(Z, shape=[-4], raw_length=-16)], Z),
    "shape not a list": forge([entry(Z, shape=4)], Z),
    "too many dims": forge([entry(Z, shape=[1] * 9 + [4])], Z),
    "object dtype": forge([entry(Z, dtype="|O")], Z),
    "unicode dtype": forge([entry(Z, dtype="<U4", raw_length=64)], Z),
    "void dtype": forge([entry(Z, dtype="|V4")], Z),
    "structured dtype": forge([entry(Z, dtype=[["a", "<f4"]])], Z),
    "big-endian dtype": forge([entry(Z, dtype=">f4")], Z),
    "dtype as int": forge([entry(Z, dtype=4)], Z),
    "unknown codec": forge([entry(Z, codec="lz4")], Z),
    "unknown filter": forge([entry(Z, filter="delta")], Z),
    "raw_length mismatch": forge([entry(Z, raw_length=12)], Z),
    "crc32c out of range": forge([entry(Z, crc32c=2**32 + entry(Z)["crc32c"])], Z),
    "crc32c mismatch": forge([entry(Z, crc32c=entry(Z)["crc32c"] ^ 1)], Z),
    "frame past the end": forge([entry(Z, length=len(Z) + 1)], Z),
    "frame inside header": forge([entry(Z, offset=-100)], Z),
    "overlapping frames": forge([entry(Z), entry(Z, name="b")], Z),
    "content size mismatch": forge([entry(Z, shape=[2], raw_length=8)], Z),
    "no content size": forge([entry(NO_SIZE)], NO_SIZE),
    "not zstd": forge([entry(b"\x00" * 16)], b"\x00" * 16),
    "trailing zstd data": forge([entry(Z + Z)], Z + Z),
    "bool byte 2": forge([entry(BOOL_2, dtype="|b1", shape=[3], raw_length=3)], BOOL_2),
}


@pytest.mark.parametrize("case", FORGED)
def test_forged_blobs_raise_checkpoint_error(case: str) -> None:
    with pytest.raises(CheckpointError, match=r"^checkpoint forged: "):
        codec.decode(FORGED[case], name="forged")


@pytest.mark.parametrize("shape", [[10**6, 10**6], [2**28], [0, 2**62, 2**62]])
def test_absurd_raw_length_rejected_before_allocating(shape: list[int]) -> None:
    raw = int(np.prod(np.array(shape, dtype=object))) * 4
    blob = forge([entry(Z, shape=shape, raw_length=raw)], Z)
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError):
            codec.decode(blob, name="forged")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# ----------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize("frames", [
    {"a": np.array([object()])},
    {"a": np.array(["abc"])},
    {"a": np.zeros(3, dtype=[("x", "<f4")])},
    {"a": np.zeros(3, np.complex64)},
    {"a": np.zeros(3, np.longdouble)} if np.dtype(np.longdouble).itemsize > 8 else {"a": None},
    {"a": np.zeros(3, "M8[s]")},
    {"a": [1.0, 2.0]},
    {"a": np.zeros([1] * 9)},
    {7: np.zeros(3)},
    {"": np.zeros(3)},
    [("a", np.zeros(3)), ("a", np.ones(3))],
    [np.zeros(3)],
])
def test_encode_rejects_bad_frames(frames: object) -> None:
    with pytest.raises(ConfigError):
        codec.encode({}, frames)  # type: ignore[arg-type]


@pytest.mark.parametrize("meta", [
    {"n": np.int64(3)}, {1: "int key"}, {"s": {1, 2}}, {"a": np.zeros(2)}, [1, 2],
    {"rng": "x" * 70000},
])
def test_encode_rejects_bad_meta(meta: object) -> None:
    with pytest.raises(ConfigError) as info:
        codec.encode(meta, {})  # type: ignore[arg-type]
    assert isinstance(info.value, IslandSyncError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("kw", [{"filter": "lz4"}, {"level": 0}, {"level": 23}, {"level": True}])
def test_encode_rejects_bad_options(kw: dict) -> None:
    with pytest.raises(ConfigError):
        codec.encode({}, {"a": np.zeros(3)}, **kw)


def test_header_cap_fits_the_prefix() -> None:
    assert 14 + codec.MAX_HEADER_SIZE <= codec.PREFIX_SIZE
    codec.decode(codec.encode({"rng": "x" * 60000}, {"a": np.zeros(3)}))


@pytest.mark.parametrize("module", [codec, compression], ids=lambda m: m.__name__)
def test_codec_never_unpickles_or_evaluates(module) -> None:
    source = Path(module.__file__).read_text()
    tree = ast.parse(source)
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= {"__future__", "itertools", "json", "math", "struct", "collections.abc",
                        "dataclasses", "typing", "google_crc32c", "numpy", "zstandard",
                        "islandsync.errors", "islandsync.store.base",
                        "islandsync.bucket.compression"}
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not names & {"pickle", "marshal", "eval", "exec", "__import__", "import_module"}
    assert "allow_pickle" not in source


# ----------------------------------------------------------------------------- read_frame


class MemoryStore(BlobStore):
    """A dict with BlobStore's get semantics that records its get calls (a test double;
    not :class:`~islandsync.store.counting.CountingStore`, which wraps a real store)."""

    url = "memory://recorded"

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[int, bytes]] = {}
        self.gets: list[tuple[str, int | None, int | None]] = []
        self.bump_after_first_get = False

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        self.gets.append((key, start, end))
        if key not in self.blobs:
            raise NotFound(f"{self.url}/{key}")
        gen, data = self.blobs[key]
        if self.bump_after_first_get and len(self.gets) > 1:
            gen += 1
        return Blob(data[start:end], gen)

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        gen = self.blobs.get(key, (0, b""))[0] + 1
        self.blobs[key] = (gen, bytes(data))
        return gen

    def stat(self, key: str) -> BlobInfo | None:
        if key not in self.blobs:
            return None
        gen, data = self.blobs[key]
        return BlobInfo(key, gen, len(data), dt.datetime.now(dt.timezone.utc))

    def list(self, prefix: str = "") -> list[BlobInfo]:
        return [i for k in sorted(self.blobs) if k.startswith(prefix) and (i := self.stat(k))]

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        if self.blobs.pop(key, None) is None:
            raise NotFound(key)


@pytest.fixture
def big_store() -> tuple[MemoryStore, dict]:
    rng = np.random.default_rng(2)
    frames: dict[str, Any] = {
        "elite": rng.standard_normal((16, 20), dtype=np.float32),
        "pop": rng.integers(0, 256, 300_000, dtype=np.uint8),  # incompressible, > prefix
        "tail": np.arange(10, dtype=np.int32),
    }
    store = MemoryStore()
    store.put(NAME, codec.encode({"island": 3}, frames))
    return store, frames


def test_read_frame_small_first_frame_costs_one_request(big_store: tuple) -> None:
    store, frames = big_store
    meta, elite = codec.read_frame(store, NAME, "elite")
    assert meta == {"island": 3}
    assert_same(elite, frames["elite"])
    assert store.gets == [(NAME, 0, codec.PREFIX_SIZE)]


@pytest.mark.parametrize("name", ["pop", "tail"])
def test_read_frame_beyond_prefix_costs_two_requests(big_store: tuple, name: str) -> None:
    store, frames = big_store
    _, array = codec.read_frame(store, NAME, name)
    _, whole = codec.decode(store.blobs[NAME][1], name=NAME)
    assert_same(array, whole[name])
    assert_same(array, frames[name])
    _, infos = codec.read_header(store.blobs[NAME][1])
    info = next(i for i in infos if i.name == name)
    assert store.gets == [(NAME, 0, codec.PREFIX_SIZE), (NAME, info.offset, info.end)]


def test_read_frames_fetches_the_rest_in_one_span(big_store: tuple) -> None:
    store, frames = big_store
    meta, got = codec.read_frames(store, NAME, ["elite", "tail", "pop", "elite"])
    assert meta == {"island": 3} and list(got) == ["elite", "tail", "pop"]
    for name, array in got.items():
        assert_same(array, frames[name])
    _, infos = codec.read_header(store.blobs[NAME][1])
    by_name = {i.name: i for i in infos}
    span = (NAME, by_name["pop"].offset, by_name["tail"].end)
    assert store.gets == [(NAME, 0, codec.PREFIX_SIZE), span]
    store.gets.clear()
    assert list(codec.read_frames(store, NAME, ["elite"])[1]) == ["elite"]
    assert len(store.gets) == 1
    with pytest.raises(CheckpointError, match="no frame 'x', 'y'"):
        codec.read_frames(store, NAME, ["elite", "x", "y"])


def test_read_frame_small_blob_costs_one_request() -> None:
    blob, meta, frames = small_checkpoint()
    store = MemoryStore()
    store.put(NAME, blob)
    for name, array in frames.items():
        got_meta, got = codec.read_frame(store, NAME, name)
        assert got_meta == meta
        assert_same(got, array)
    assert len(store.gets) == len(frames)


def test_read_frame_not_found_propagates() -> None:
    with pytest.raises(NotFound) as info:
        codec.read_frame(MemoryStore(), "islands/0/9.isz", "elite")
    assert not isinstance(info.value, CheckpointError)


def test_read_frame_unknown_frame(big_store: tuple) -> None:
    store, _ = big_store
    with pytest.raises(CheckpointError, match=f"checkpoint {NAME}: .*'nope'"):
        codec.read_frame(store, NAME, "nope")


def test_read_frame_truncated_or_replaced_blob(big_store: tuple) -> None:
    store, _ = big_store
    gen, data = store.blobs[NAME]
    store.blobs[NAME] = (gen, data[: codec.PREFIX_SIZE + 1000])
    with pytest.raises(CheckpointError, match="truncated"):
        codec.read_frame(store, NAME, "pop")
    store.blobs[NAME] = (gen, data)
    store.gets.clear()
    store.bump_after_first_get = True
    with pytest.raises(CheckpointError, match="changed between reads"):
        codec.read_frame(store, NAME, "pop")


def test_read_frame_on_flipped_bytes() -> None:
    blob, _, frames = small_checkpoint()
    store = MemoryStore()
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x10
        store.put(NAME, bytes(bad))
        try:
            _, elite = codec.read_frame(store, NAME, "elite")
        except CheckpointError as err:
            assert str(err).startswith(f"checkpoint {NAME}: ")
        else:  # the flip hit another frame's bytes, which this read never looks at
            assert_same(elite, frames["elite"])


# ----------------------------------------------------------------------------- adaptive filter


def converged(pop: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centre = rng.standard_normal(dim, dtype=np.float32)
    return (centre + np.float32(1e-3) * rng.standard_normal((pop, dim), dtype=np.float32))


def ga_children(pop: int, dim: int, rng: np.random.Generator, parents: int = 32) -> np.ndarray:
    pool = rng.standard_normal((parents, dim), dtype=np.float32)
    a, b = pool[rng.integers(0, parents, pop)], pool[rng.integers(0, parents, pop)]
    child = np.where(rng.random((pop, dim)) < 0.5, a, b)
    mutate = rng.random((pop, dim)) < 0.01
    return child + mutate * np.float32(0.1) * rng.standard_normal((pop, dim), dtype=np.float32)


@pytest.mark.parametrize("pop", [128, 1024])  # 0.5 MB is measured whole, 4 MB via the sample
def test_adaptive_filter_follows_the_data(pop: int) -> None:
    rng = np.random.default_rng(3)
    assert codec.choose_filter(converged(pop, 1000, rng)) == "shuffle"
    assert codec.choose_filter(ga_children(pop, 1000, rng)) == "none"
    assert codec.choose_filter(rng.integers(0, 9, (pop, 100), dtype=np.int8)) == "none"


def test_adaptive_raises_the_level_only_where_it_pays() -> None:
    rng = np.random.default_rng(4)
    assert codec.choose_codec(ga_children(1024, 1000, rng)) == ("none", 6)
    assert codec.choose_codec(converged(1024, 1000, rng)) == ("shuffle", 3)
    blob = codec.encode({}, {"pop": converged(64, 100, rng)}, filter="auto")
    assert codec.read_header(blob)[1][0].filter == "shuffle"


# -- nothing but the header and the frames (issue 18, N5) ----------------------------------


def test_bytes_beyond_the_header_and_frames_are_refused() -> None:
    """A valid checkpoint padded with junk once loaded whole (1.7 KB + 300 MB: RSS 75 -> 675
    MiB); the writer lays frames end to end after the header, so any other byte is refused."""
    good = codec.encode({"k": 1}, {"a": np.arange(50, dtype=np.int64)})
    codec.decode(good)
    for junk in (b"\x00", bytes(4096)):
        with pytest.raises(CheckpointError, match="bytes beyond the header and frames"):
            codec.decode(good + junk)
    gap = forge([entry(ZPAYLOAD, offset=8)], bytes(8) + ZPAYLOAD)  # junk before the frame
    with pytest.raises(CheckpointError, match="beyond the header and frames"):
        codec.decode(gap)


def _skippable(n: int) -> bytes:
    """A zstd skippable frame of ``n`` bytes: zstd decoders step over it."""
    return struct.pack("<II", 0x184D2A50, n) + bytes(n)


def test_a_frame_longer_than_zstd_needs_for_its_raw_bytes_is_refused() -> None:
    """A frame's stored length bounds a ranged read (the merge's second one): it may not
    exceed zstd's compress bound of the raw length the run's shapes allow."""
    padded = ZPAYLOAD + _skippable(1 << 20)
    with pytest.raises(CheckpointError, match="zstd needs at most"):
        codec.decode(forge([entry(padded)], padded))
    assert codec.max_stored_length(16) < len(padded)
    for n in (0, 1, 1000, 1 << 20):  # incompressible bytes stay within the bound
        raw = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8)
        blob = codec.encode({}, {"r": raw}, filter="none")
        assert codec.decode(blob)[1]["r"].tobytes() == raw.tobytes()


def test_a_capped_read_fetches_at_most_the_cap_plus_one(tmp_path: Path) -> None:
    from islandsync.store import LocalStore
    from islandsync.store.counting import CountingStore

    store = CountingStore(LocalStore(tmp_path))
    store.put("b.isz", bytes(10_000))
    assert len(codec.read_capped(store, "b.isz", 10_000)) == 10_000
    before = store.counts()["bytes_read"]
    with pytest.raises(CheckpointError, match="larger than the 100 bytes"):
        codec.read_capped(store, "b.isz", 100)
    assert store.counts()["bytes_read"] - before == 101
