"""Helpers the protocol's tests share (bucket/ and the leader's merge): ``.isz`` blobs forged
from ready zstd payloads, whose headers claim anything the payloads hold."""

from __future__ import annotations

import json
import struct

import google_crc32c
import numpy as np
import zstandard

from islandsync.bucket import codec
from islandsync.bucket.checkpoints import IslandSnapshot, encode_island


def assemble(meta: dict, frames: list[tuple[str, str, list[int], bytes]]) -> bytes:
    """An ``.isz`` blob from ready payloads, laid out as codec.encode lays it out: frames whose
    header claims anything their (valid, crc-checked) zstd payloads hold."""
    entries = [{"name": n, "offset": 0, "length": len(p), "raw_length": int(np.prod(shape))
                * int(dt[2:]), "dtype": dt, "shape": shape, "codec": "zstd", "filter": "none",
                "crc32c": google_crc32c.value(p)} for n, dt, shape, p in frames]
    header_len = 0
    while True:
        offset = 14 + header_len
        for e in entries:
            e["offset"], offset = offset, offset + e["length"]
        body = json.dumps({"meta": meta, "frames": entries}, separators=(",", ":")).encode()
        if len(body) <= header_len:
            break
        header_len = len(body)
    body = body.ljust(header_len, b" ")
    start = struct.pack("<4sHI", codec.MAGIC, codec.VERSION, header_len)
    crc = google_crc32c.extend(google_crc32c.value(start), body)
    return b"".join([start, struct.pack("<I", crc), body, *(p for *_, p in frames)])


def island_frames(snap: IslandSnapshot, elite: int) -> list[tuple[str, str, list[int], bytes]]:
    """The frames encode_island writes for ``snap``, as (name, dtype, shape, payload)."""
    _, decoded = codec.decode(encode_island(snap, elite=elite, meta={"owner": "w"}))
    z = zstandard.ZstdCompressor(write_content_size=True)
    return [(n, a.dtype.str, list(a.shape), z.compress(a.tobytes())) for n, a in decoded.items()]


def zeros_payload(n: int) -> bytes:
    """zstd of ``n`` zero bytes, compressed in pieces so the test never holds them."""
    cobj = zstandard.ZstdCompressor(level=1, write_content_size=True).compressobj(size=n)
    chunk, out = bytes(1 << 20), []
    for _ in range(n >> 20):
        out.append(cobj.compress(chunk))
    out.append(cobj.flush())
    return b"".join(out)
