"""The byzantine writer's garbage (:class:`~islandsync.testing.faulty.Byzantine`): what a
careless or hostile party with the run's credentials writes over a record or a blob, by kind.

Each kind is a function (honest bytes, key, rng, codec module or None) -> garbage, or None when
the kind does not fit that blob. JSON kinds break the format, a field, a key or a term; the
``.isz`` kinds break the bytes, or re-encode a blob with a valid format and checksum and wrong
content (the codec is passed in by the :class:`~islandsync.testing.faulty.Byzantine` rule).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

from islandsync.bucket.layout import island_prefix
from islandsync.errors import CheckpointError

#: (honest bytes, key, rng, codec module or None) -> garbage, or None when the kind does not
#: fit this blob.
Garbage = Callable[[bytes, str, random.Random, Any], "bytes | None"]
_NUMBERS = ("Infinity", "-Infinity", "NaN", "1e999", str(2**64))
_KEY_FIELDS = ("checkpoint", "key", "previous", "holder", "leader", "owner", "worker")


def _record(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and value else None


def _truncated(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    return data[:rng.randrange(len(data))] if data else None


def _random(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    return rng.randbytes(max(16, len(data)))


def _bad_utf8(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    rec = _record(data)
    if rec is None:
        return None
    text = json.dumps(rec).encode()
    cut = text.index(b'"') + 1  # inside the first field name
    return text[:cut] + b"\xff\xfe\xc3" + text[cut:]


def _nested(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    return b"[" * 200_000


def _set_field(data: bytes, rng: random.Random, fields: list[str] | None,
               value_text: Callable[[Any], str]) -> bytes | None:
    """The record with one field (among ``fields``, or any) replaced by raw JSON text."""
    rec = _record(data)
    if rec is None:
        return None
    names = [k for k in rec if fields is None or k in fields]
    if not names:
        return None
    name = rng.choice(sorted(names))
    marker = "\u0000garbage\u0000"
    text = json.dumps({**rec, name: marker})
    return text.replace(json.dumps(marker), value_text(rec[name]), 1).encode()


def _non_finite(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    rec = _record(data) or {}
    numeric = [k for k, v in rec.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return _set_field(data, rng, numeric, lambda _: rng.choice(_NUMBERS))


def _bad_key(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    return _set_field(data, rng, list(_KEY_FIELDS),
                      lambda v: '["../x"]' if isinstance(v, list) else '"../x"')


def _wrong_type(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    def other(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return '"true"'
        if isinstance(v, (int, float)):
            return json.dumps(str(v))
        if isinstance(v, str):
            return "[1, 2]"
        return "7"  # a list or an object
    return _set_field(data, rng, None, other)


def _other_island(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    rec = _record(data)
    if rec is None or not isinstance(rec.get("island"), int):
        return None
    old, new = rec["island"], rec["island"] + 1 + rng.randrange(3)
    # A valid-looking record of another island: its checkpoint keys name that island too.
    text = json.dumps({**rec, "island": new}).replace(island_prefix(old), island_prefix(new))
    return text.encode()


def _reencoded(edit: Callable[[dict[str, Any], dict[str, Any], random.Random], bool]
               ) -> Garbage:
    """A garbage kind for ``.isz``: decode the honest blob, edit it, encode it again (a blob
    with a valid format and crc, wrong content). The codec (``islandsync.bucket.codec``)
    comes from the :class:`Byzantine` rule."""
    def make(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
        if codec is None:
            return None
        try:
            meta, frames = codec.decode(data, name=key)
        except CheckpointError:
            return None
        if not edit(meta, frames, rng):
            return None
        return codec.encode(meta, frames)
    return make


def _frames_wrong_length(meta: dict, frames: dict, rng: random.Random) -> bool:
    name = next((n for n in ("scores", "elite.scores") if n in frames), None)
    if name is None or frames[name].ndim != 1:
        return False
    a = frames[name]
    frames[name] = a[:-1] if a.size > 1 and rng.random() < 0.5 else a.take([*range(a.size), 0])
    return True


def _meta_field(names: tuple[str, ...], value: Callable[[random.Random], Any]
                ) -> Callable[[dict, dict, random.Random], bool]:
    def edit(meta: dict, frames: dict, rng: random.Random) -> bool:
        present = [n for n in names if n in meta]
        if not present:
            return False
        meta[rng.choice(present)] = value(rng)
        return True
    return edit


def _meta_island(meta: dict, frames: dict, rng: random.Random) -> bool:
    if not isinstance(meta.get("island"), int):
        return False
    meta["island"] += 1 + rng.randrange(3)
    return True


def _forged_term(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    """A valid record whose term is far above the lease's, yet within every bound a record
    has: garbage only to a reader that trusts no term the lease's CAS chain did not vouch for
    (an assignment.json of term 10^15 once made the live leader stop assigning)."""
    rec = _record(data)
    if rec is None or not isinstance(rec.get("term"), int):
        return None
    return json.dumps({**rec, "term": rec["term"] + rng.randrange(1000, 1_000_000)}).encode()


#: Terms at and past a cap: 2^31 (islandsync's term cap), 10^15 (the issue's forged
#: assignment), 2^62 (the limit of every count: one more is no valid term).
_CAPPED_TERMS = (2**31 - 1, 2**31, 10**15, 2**62)


def _term_at_cap(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    rec = _record(data)
    if rec is None or not isinstance(rec.get("term"), int):
        return None
    return json.dumps({**rec, "term": rng.choice(_CAPPED_TERMS)}).encode()


#: Past the 256 KiB every record reader fetches at most (a history segment of too many
#: entries once was): refused unread.
OVERSIZED_BYTES = 300 * 1024


def _oversized(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    """The record, valid in every field, with more of what it holds until it is too big to
    read: its longest list repeated (a history segment's entries), or a filler field."""
    rec = _record(data)
    if rec is None:
        return None
    lists = [k for k, v in rec.items() if isinstance(v, list) and v]
    if lists:
        name = max(lists, key=lambda k: len(json.dumps(rec[k])))
        times = OVERSIZED_BYTES // max(1, len(json.dumps(rec[name]))) + 1
        return json.dumps({**rec, name: rec[name] * times}).encode()
    return json.dumps({**rec, "padding": " " * OVERSIZED_BYTES}).encode()


#: Junk a padded blob carries after its last frame (the issue's 300 MiB, scaled down: a soak
#: writes many; what matters is that a stored size nothing caps is read whole).
PADDING_BYTES = (1 << 20, 4 << 20)
#: What a decompression bomb expands to: frames of zeros (a few KiB stored).
BOMB_BYTES = 64 << 20


def _padded(data: bytes, key: str, rng: random.Random, codec: Any) -> bytes | None:
    """A valid blob with junk after it: only a reader that caps the stored size (or refuses
    trailing bytes) tells."""
    return data + bytes(rng.randrange(*PADDING_BYTES)) if data else None


def _bomb(meta: dict, frames: dict, rng: random.Random) -> bool:
    """Every frame of the population's length grown to :data:`BOMB_BYTES` of zeros in all,
    consistently (same rows everywhere), so only a cap from the run's shapes refuses it."""
    import numpy as np  # only where a codec is passed: importing the harness needs no numpy

    if not frames:
        return False
    n = max((a.shape[0] for a in frames.values() if a.ndim), default=0)
    row = sum(a[:1].nbytes for a in frames.values() if a.ndim and a.shape[0] == n)
    if n == 0 or row == 0:
        return False
    rows = BOMB_BYTES // row
    for name, a in frames.items():
        if a.ndim and a.shape[0] == n:
            frames[name] = np.zeros((rows, *a.shape[1:]), a.dtype)
    return True


_COUNTS = ("island", "generation", "evals", "epoch", "term")

#: Garbage for JSON records, by kind.
JSON_GARBAGE: dict[str, Garbage] = {
    "truncated": _truncated, "random": _random, "bad_utf8": _bad_utf8, "nested": _nested,
    "non_finite": _non_finite, "bad_key": _bad_key, "wrong_type": _wrong_type,
    "other_island": _other_island, "forged_term": _forged_term, "term_at_cap": _term_at_cap,
    "oversized": _oversized,
}
#: Garbage for ``.isz`` checkpoints and elite epochs, by kind (the re-encoded kinds carry a
#: valid format and checksum: only their content is wrong).
ISZ_GARBAGE: dict[str, Garbage] = {
    "truncated": _truncated, "random": _random,
    "wrong_shape": _reencoded(_frames_wrong_length),
    "non_finite": _reencoded(_meta_field(_COUNTS, lambda rng: 2**64)),
    "wrong_type": _reencoded(_meta_field(_COUNTS, lambda rng: "12")),
    "other_island": _reencoded(_meta_island),
    "padded": _padded, "bomb": _reencoded(_bomb),
}
#: The kinds whose fixes are issue 18's N4/N5 (elite and checkpoint size caps, trailing
#: bytes): a soak leaves them out unless told (islandsync/testing/soak.py).
SIZE_GARBAGE = ("padded", "bomb")


