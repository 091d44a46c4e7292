"""The ``.isz`` checkpoint format: a JSON header and independently compressed numpy frames.

Layout, byte by byte (integers little-endian)::

    offset  size  field
    0       4     magic b"ISZ\\x89" (the high byte keeps tools from taking the file for text)
    4       2     version, u16 = 1
    6       4     header length H, u32
    10      4     header crc32c, u32, over bytes [0, 10) followed by the H header bytes
    14      H     header JSON, ASCII (other characters \\u-escaped), maybe space-padded
    14+H    ...   frames: one zstd frame per array, at the absolute offsets the header names

    {"meta": {...the caller's dict...},
     "frames": [{"name": str, "offset": int, "length": int (stored bytes), "raw_length": int,
                 "dtype": "<f4" | "|b1" | ..., "shape": [int, ...], "codec": "zstd",
                 "filter": "none" | "shuffle", "crc32c": int (of the stored bytes)}, ...]}

Compression itself (the byte shuffle, zstd, the per-frame choice of filter and level) is
:mod:`islandsync.bucket.compression`.

The header crc32c is not in the design brief's layout: without it a flipped bit inside
``meta`` would decode "successfully" to a different value. Frames follow the header in the
caller's order, so frame 0 (the island's elite) arrives with the header in :func:`read_frame`'s
first ranged read. Arrays are stored C-ordered and little-endian; ``shuffle`` means the raw
bytes were transposed from ``[n, itemsize]`` to ``[itemsize, n]`` before compression.

Blobs come from a shared bucket, so the reader trusts nothing: the header must fit in the
first :data:`PREFIX_SIZE` bytes; dtypes come from a whitelist of plain numbers; ``raw_length``
must match the shape, stay under :data:`MAX_RAW_LENGTH` and under what its stored length can
expand to, all before anything is allocated; crc32c is checked before zstd sees a byte.
Nothing is unpickled, evaluated or imported. Malformed input raises
:class:`~islandsync.errors.CheckpointError` naming the blob, and nothing else.
:func:`encode` raises :class:`~islandsync.errors.ConfigError` for arguments it cannot store
faithfully: a writer's bug must not look like a corrupt blob that readers skip.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zstandard

from islandsync.bucket.compression import (
    DEFAULT_LEVEL,
    FILTERS,
    check_level,
    choose,
    compress,
    shuffle,
    unshuffle,
)
from islandsync.errors import CheckpointError, ConfigError
from islandsync.store.base import BlobStore

MAGIC = b"ISZ\x89"
VERSION = 1
_PREFIX = struct.Struct("<4sHII")  # magic, version, header length, header crc32c
PREFIX_SIZE = 64 * 1024  # read_frame's first ranged read; the header always fits in it
MAX_HEADER_SIZE = PREFIX_SIZE - _PREFIX.size
MAX_RAW_LENGTH = 4 << 30  # per frame
MAX_NDIM = 8
MAX_META_DEPTH = 64
ALLOWED_DTYPES = frozenset(
    ["|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
)
#: A blob read without a run's shapes to bound it (a tool's or a test's observer) is still
#: refused past this many stored bytes, before download.
MAX_UNSHAPED_BLOB = 256 << 20
# A zstd block holds at most 128 KiB and costs at least 4 bytes, so no frame expands more
# than 32768x; allowing twice that still stops a forged raw_length from costing gigabytes.
_MAX_EXPANSION = 1 << 16


@dataclass(frozen=True)
class FrameInfo:
    """One validated entry of a header's ``frames`` list."""

    name: str
    offset: int
    length: int
    raw_length: int
    dtype: str
    shape: tuple[int, ...]
    codec: str
    filter: str
    crc32c: int

    @property
    def end(self) -> int:
        return self.offset + self.length


def _canonical(name: str, array: object) -> np.ndarray:
    """The array as C-contiguous little-endian data, bit for bit (NaN payloads included)."""
    if isinstance(array, np.generic):  # a numpy scalar is a 0-d array in all but type
        array = np.asarray(array)
    if not isinstance(array, np.ndarray):
        raise ConfigError(f"frame {name!r}: expected a numpy array, got {type(array).__name__}")
    return _canonical_array(name, array)


def _canonical_array(name: str, array: np.ndarray) -> np.ndarray:
    dt = array.dtype
    le = dt.newbyteorder("<")
    if dt.fields is not None or dt.subdtype is not None or le.str not in ALLOWED_DTYPES:
        raise ConfigError(f"frame {name!r}: unsupported dtype {dt} (plain bool/int/uint/float "
                          "of at most 8 bytes only)")
    if array.ndim > MAX_NDIM:
        raise ConfigError(f"frame {name!r}: {array.ndim} dimensions, at most {MAX_NDIM}")
    if not array.flags.c_contiguous:  # not ascontiguousarray: it turns 0-d into 1-d
        array = array.copy(order="C")
    if dt != le:  # byteswap, not astype: a plain byte move keeps every bit pattern
        array = array.byteswap().view(le)
    if math.prod(max(d, 1) for d in array.shape) * le.itemsize > MAX_RAW_LENGTH:
        raise ConfigError(f"frame {name!r}: {array.nbytes} bytes, over {MAX_RAW_LENGTH}")
    return array


def _check_meta(value: Any, path: str, depth: int = 0) -> None:
    # Refuse what json.dumps would change or choke on (int keys become strings, numpy scalars
    # fail): the reader must get back what the writer meant.
    if depth > MAX_META_DEPTH:
        raise ConfigError(f"meta nested deeper than {MAX_META_DEPTH} at {path}")
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_meta(v, f"{path}[{i}]", depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"meta key {k!r} at {path} is not a str")
            _check_meta(v, f"{path}[{k!r}]", depth + 1)
    elif value is not None and not isinstance(value, (str, int, float)):  # bool is an int
        raise ConfigError(f"meta value at {path} has type {type(value).__name__}, not JSON "
                          "(use dict/list/str/int/float/bool/None; put arrays in frames)")


def choose_codec(array: np.ndarray, level: int = DEFAULT_LEVEL) -> tuple[str, int]:
    """The ``(filter, level)`` that ``encode(filter="auto", level=level)`` uses for ``array``.

    Both filters are measured at ``level`` on a sample; the smaller wins, and is then tried
    ``ESCALATE_STEP`` levels higher (capped at ``ESCALATE_MAX_LEVEL``): that level is kept
    where it shrinks the sample by ``ESCALATE_MIN_GAIN`` or more.
    """
    array = _canonical("<array>", array)
    return choose(array.reshape(-1).view(np.uint8), array.itemsize, check_level(level))


def choose_filter(array: np.ndarray, level: int = DEFAULT_LEVEL) -> str:
    """``"shuffle"`` or ``"none"``: whichever compresses a sample of ``array`` smaller."""
    return choose_codec(array, level)[0]


def encode(
    header: Mapping[str, Any],
    frames: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]],
    *,
    level: int = DEFAULT_LEVEL,
    filter: str = "auto",  # shadows the builtin, but it is the format's own word
) -> bytes:
    """Serialise ``header`` (stored as ``meta``) and the named arrays to ``.isz`` bytes.

    ``filter="none"`` or ``"shuffle"`` compress every frame so, at exactly ``level``; ``"auto"``
    picks per frame with :func:`choose_codec`, which may raise the level where it pays.
    ``header`` must be JSON data (tuples come back as lists) of at most about
    :data:`MAX_HEADER_SIZE` bytes with the frame list: big things (RNG state) go in frames.
    """
    check_level(level)
    if filter not in ("auto", *FILTERS):
        raise ConfigError(f"filter must be 'auto', 'none' or 'shuffle', got {filter!r}")
    if not isinstance(header, Mapping):
        raise ConfigError(f"header must be a dict, got {type(header).__name__}")
    meta = dict(header)
    _check_meta(meta, "meta")
    entries: list[dict[str, Any]] = []
    payloads: list[bytes] = []
    pairs = list(frames.items() if isinstance(frames, Mapping) else frames)
    if not all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
        raise ConfigError("frames must be a mapping or (name, array) pairs")
    for name, given in pairs:
        if type(name) is not str or not name:
            raise ConfigError(f"frame names must be non-empty str, got {name!r}")
        if any(e["name"] == name for e in entries):
            raise ConfigError(f"duplicate frame name {name!r}")
        array = _canonical(name, given)
        raw, itemsize = array.reshape(-1).view(np.uint8), array.itemsize
        if filter == "auto":
            chosen, lvl = choose(raw, itemsize, level)
        else:
            chosen, lvl = (filter if itemsize > 1 else "none"), level
        payloads.append(compress(shuffle(raw, itemsize) if chosen == "shuffle" else raw, lvl))
        entries.append({"name": name, "offset": 0, "length": len(payloads[-1]),
                        "raw_length": raw.size, "dtype": array.dtype.str,
                        "shape": list(array.shape), "codec": "zstd", "filter": chosen,
                        "crc32c": google_crc32c.value(payloads[-1])})

    # Offsets depend on the header's length, which depends on the offsets' digits: grow the
    # length until the text fits, then pad it with spaces (JSON whitespace) to that length.
    header_len = 0
    while True:
        offset = _PREFIX.size + header_len
        for entry, payload in zip(entries, payloads, strict=True):
            entry["offset"], offset = offset, offset + len(payload)
        body = json.dumps({"meta": meta, "frames": entries}, separators=(",", ":")).encode()
        if len(body) > MAX_HEADER_SIZE:
            raise ConfigError(f"checkpoint header is {len(body)} bytes, over the {MAX_HEADER_SIZE}"
                              "-byte limit; put large data (e.g. RNG state) in a frame, not meta")
        if len(body) <= header_len:
            break
        header_len = len(body)
    body = body.ljust(header_len, b" ")
    start = struct.pack("<4sHI", MAGIC, VERSION, header_len)
    crc = google_crc32c.extend(google_crc32c.value(start), body)
    return b"".join([start, struct.pack("<I", crc), body, *payloads])


def max_stored_length(raw_length: int) -> int:
    """The most stored bytes a frame of ``raw_length`` raw bytes takes: zstd's compress bound
    (``ZSTD_COMPRESSBOUND``: size + size/256 + at most 64), with room for its frame header."""
    return raw_length + (raw_length >> 8) + 128


def max_blob_size(raw_total: int, frames: int) -> int:
    """The most bytes a blob of ``frames`` frames holding ``raw_total`` raw bytes in all can
    take: a blob larger than that is refused before download (:func:`read_capped`)."""
    return PREFIX_SIZE + raw_total + (raw_total >> 8) + 128 * frames


def read_capped(store: BlobStore, key: str, max_size: int) -> bytes:
    """The whole blob at ``key``, fetching at most ``max_size`` + 1 bytes (a ranged read): a
    larger blob raises CheckpointError naming it, unread beyond that. NotFound passes."""
    data = _to_bytes(store.get(key, start=0, end=max_size + 1).data)
    if len(data) > max_size:
        raise CheckpointError(f"checkpoint {key}: larger than the {max_size} bytes this run's "
                              f"shapes allow; refused unread")
    return data


def _is_uint(value: object) -> bool:
    return type(value) is int and value >= 0  # type(), not isinstance: True is no length


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len(out := dict(pairs)) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return out


def _short(value: object) -> str:
    text = repr(value)  # hostile headers may hold 64 KiB where a dtype belongs: keep logs sane
    return text if len(text) <= 40 else text[:37] + "..."


def _frame_info(f: object, i: int, fail: Callable[[str], CheckpointError]) -> FrameInfo:
    if type(f) is not dict:
        raise fail(f"frame #{i} is not an object")
    name, shape, dtype = f.get("name"), f.get("shape"), f.get("dtype")
    if type(name) is not str or not name:
        raise fail(f"frame #{i} has no valid name")

    def bad(why: str) -> CheckpointError:
        return fail(f"frame {_short(name)}: {why}")

    for key in ("offset", "length", "raw_length", "crc32c"):
        if not _is_uint(f.get(key)):
            raise bad(f"{key} must be a non-negative int")
    if type(shape) is not list or len(shape) > MAX_NDIM or not all(map(_is_uint, shape)):
        raise bad(f"shape must be a list of at most {MAX_NDIM} non-negative ints")
    if type(dtype) is not str or dtype not in ALLOWED_DTYPES:
        raise bad(f"dtype {_short(dtype)} not allowed")
    if f.get("codec") != "zstd" or f.get("filter") not in FILTERS:
        raise bad(f"unknown codec/filter {_short(f.get('codec'))}/{_short(f.get('filter'))}")
    itemsize = int(dtype[2:])
    # max(d, 1): an empty array may not hide absurd dimensions either (numpy would choke)
    if math.prod(max(d, 1) for d in shape) * itemsize > MAX_RAW_LENGTH:
        raise bad(f"shape {_short(shape)} over the {MAX_RAW_LENGTH}-byte limit")
    info = FrameInfo(name, f["offset"], f["length"], f["raw_length"], dtype, tuple(shape),
                     "zstd", f["filter"], f["crc32c"])
    if info.raw_length != math.prod(shape) * itemsize:
        raise bad(f"raw_length {info.raw_length} does not match shape {shape} of {dtype}")
    if info.raw_length > _MAX_EXPANSION * (info.length + 1):
        raise bad(f"{info.length} stored bytes cannot hold {info.raw_length}")
    if info.length > max_stored_length(info.raw_length):
        # So a reader that bounds raw lengths (the run's shapes) bounds what it downloads.
        raise bad(f"{info.length} stored bytes for {info.raw_length} raw: zstd needs at most "
                  f"{max_stored_length(info.raw_length)}")
    if info.crc32c >= 1 << 32:
        raise bad("crc32c out of range")
    return info


def _parse_header(data: bytes, name: str, blob_size: int | None
                  ) -> tuple[dict[str, Any], list[FrameInfo]]:
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {name}: {why}")

    if len(data) < _PREFIX.size:
        raise fail(f"truncated: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix")
    magic, version, header_len, header_crc = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise fail(f"not an .isz checkpoint (magic {magic!r})")
    if version != VERSION:
        raise fail(f"unsupported format version {version} (this reader knows {VERSION})")
    if header_len > MAX_HEADER_SIZE:
        raise fail(f"header length {header_len} over the {MAX_HEADER_SIZE}-byte limit")
    header_end = _PREFIX.size + header_len
    if header_end > len(data):
        raise fail(f"truncated inside the header ({len(data)} of {header_end} bytes)")
    body = data[_PREFIX.size:header_end]
    if google_crc32c.extend(google_crc32c.value(data[:10]), body) != header_crc:
        raise fail("header crc32c mismatch")
    try:
        doc = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError) as err:  # bad UTF-8 or JSON, absurd nesting or digits
        raise fail(f"header is not valid JSON: {err}") from err
    if type(doc) is not dict or type(doc.get("meta")) is not dict \
            or type(doc.get("frames")) is not list:
        raise fail("header must be an object with a 'meta' object and a 'frames' list")
    infos: list[FrameInfo] = []
    for i, f in enumerate(doc["frames"]):
        info = _frame_info(f, i, fail)
        if any(x.name == info.name for x in infos):
            raise fail(f"frame {_short(info.name)} appears twice")
        if info.offset < header_end or (blob_size is not None and info.end > blob_size):
            raise fail(f"frame {_short(info.name)}: bytes [{info.offset}, {info.end}) outside the "
                       f"frame area [{header_end}, {'?' if blob_size is None else blob_size})")
        infos.append(info)
    ordered = sorted(infos, key=lambda x: x.offset)
    for a, b in itertools.pairwise(ordered):
        if b.offset < a.end:
            raise fail(f"frames {_short(a.name)} and {_short(b.name)} overlap")
    if blob_size is not None and (extra := blob_size - header_end - sum(i.length for i in infos)):
        # The writer lays frames end to end after the header: any other byte is padding
        # that a reader would download for nothing (a 1.7 KB checkpoint with 300 MB of it).
        raise fail(f"{extra} bytes beyond the header and frames")
    return doc["meta"], infos


def _to_bytes(data: bytes | bytearray | memoryview) -> bytes:
    # google_crc32c takes only bytes, so other buffers cost a copy
    return data if type(data) is bytes else bytes(memoryview(data).cast("B"))


def read_header(
    data: bytes | bytearray | memoryview, *, name: str = "<bytes>", blob_size: int | None = None
) -> tuple[dict[str, Any], list[FrameInfo]]:
    """Validate and return ``(meta, frames)`` from the start of a blob.

    ``data`` needs only the bytes up to the header's end (the first :data:`PREFIX_SIZE` always
    suffice). Pass ``blob_size`` when known to check that frames lie within the blob.
    """
    return _parse_header(_to_bytes(data), name, blob_size)


def _decode_frame(info: FrameInfo, payload: bytes, name: str) -> np.ndarray:
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {name}: frame {_short(info.name)} {why}")

    if len(payload) != info.length:
        raise fail(f"truncated ({len(payload)} of {info.length} bytes)")
    if google_crc32c.value(payload) != info.crc32c:
        raise fail("crc32c mismatch")
    try:
        # zstd would allocate what its own frame header claims: make that agree first
        if zstandard.frame_content_size(payload) != info.raw_length:
            raise fail("zstd content size does not match raw_length")
        out = np.empty(info.raw_length, np.uint8)  # bounded by _frame_info
        reader = zstandard.ZstdDecompressor().stream_reader(payload)
        view, filled = out.data, 0
        while filled < info.raw_length:  # straight into our writable buffer, no extra copy
            if not (n := reader.readinto(view[filled:])):
                break
            filled += n
        if filled != info.raw_length or reader.read(1):
            raise fail(f"decompressed size differs from raw_length {info.raw_length}")
    except zstandard.ZstdError as err:
        raise fail(f"does not decompress: {err}") from err
    itemsize = int(info.dtype[2:])
    if info.filter == "shuffle" and itemsize > 1:
        out = unshuffle(out, itemsize)
    if info.dtype == "|b1" and out.size and out.max() > 1:  # numpy bools must be 0 or 1
        raise fail("holds bool bytes other than 0 and 1")
    return out.view(np.dtype(info.dtype)).reshape(info.shape)


def decode(
    data: bytes | bytearray | memoryview, *, name: str = "<bytes>"
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Parse a whole ``.isz`` blob into ``(meta, {frame name: array})``, frames in file order.

    Arrays are writable, C-ordered, little-endian and bit-exact. Malformed input of any kind
    raises CheckpointError, its message starting ``checkpoint <name>:``.
    """
    data = _to_bytes(data)
    meta, infos = _parse_header(data, name, len(data))
    return meta, {i.name: _decode_frame(i, data[i.offset:i.end], name) for i in infos}


def read_frames(
    store: BlobStore, key: str, frames: Iterable[str], *,
    check: Callable[[dict[str, Any], list[FrameInfo]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, {name: array})`` for the named frames of the checkpoint at ``key``, in at most
    two ranged reads.

    The first read takes :data:`PREFIX_SIZE` bytes: the header and every named frame that fits
    (a small frame 0, the elite, does). One more read fetches the span from the first to the
    last of the rest, so name adjacent frames (``elite.*``) to avoid fetching what lies between.
    ``check(meta, frames)``, when given, sees the validated header before anything more is
    fetched or decompressed, and raises CheckpointError to refuse the blob (a reader that knows
    the shapes to expect stops a small blob from inflating to gigabytes).
    NotFound from the store propagates unchanged; corruption raises CheckpointError.
    """
    first = store.get(key, start=0, end=PREFIX_SIZE)
    data = _to_bytes(first.data)
    blob_size = len(data) if len(data) < PREFIX_SIZE else None  # a short read is the whole blob
    meta, infos = _parse_header(data, key, blob_size)
    if check is not None:
        check(meta, infos)
    by_name = {i.name: i for i in infos}
    wanted = list(dict.fromkeys(frames))
    if missing := [n for n in wanted if n not in by_name]:
        have = ", ".join(map(_short, by_name)) or "none"
        raise CheckpointError(f"checkpoint {key}: no frame {', '.join(map(repr, missing))} "
                              f"(frames: {have})")
    rest = [by_name[n] for n in wanted if by_name[n].end > len(data)]
    span, lo = b"", 0
    if rest:
        lo = min(i.offset for i in rest)
        second = store.get(key, start=lo, end=max(i.end for i in rest))
        if second.generation != first.generation:  # rewritten between the reads: don't mix
            raise CheckpointError(f"checkpoint {key}: changed between reads (generation "
                                  f"{first.generation} -> {second.generation})")
        span = _to_bytes(second.data)
    out = {}
    for n in wanted:
        i = by_name[n]
        payload = data[i.offset:i.end] if i.end <= len(data) else span[i.offset - lo:i.end - lo]
        out[n] = _decode_frame(i, payload, key)
    return meta, out


def read_frame(store: BlobStore, key: str, frame: str) -> tuple[dict[str, Any], np.ndarray]:
    """``(meta, array)`` of one frame: :func:`read_frames` for one name, so at most two ranged
    reads, the second for exactly the frame's bytes when it lies beyond the first."""
    meta, arrays = read_frames(store, key, [frame])
    return meta, arrays[frame]


__all__ = [
    "ALLOWED_DTYPES", "DEFAULT_LEVEL", "FILTERS", "MAGIC", "MAX_HEADER_SIZE", "MAX_RAW_LENGTH",
    "MAX_UNSHAPED_BLOB", "PREFIX_SIZE", "VERSION", "FrameInfo", "choose_codec", "choose_filter",
    "decode", "encode", "max_blob_size", "max_stored_length", "read_capped", "read_frame",
    "read_frames", "read_header",
]
