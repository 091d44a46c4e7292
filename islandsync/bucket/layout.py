"""Every key of a run, in one place: names, prefixes and the parsers that read them back.

A run lives under one URL; everything below is relative to it::

    run.json                                  immutable run spec (create-only)
    lease.json                                the coordinator lease (CAS)
    workers/<worker_id>.json                  a worker's heartbeat (its own, plain writes)
    assignment.json                           island -> worker, the leader's (CAS, term)
    finished.json                             the run's stop decision (create-only)
    islands/<i>/HEAD.json                     an island's latest checkpoint and owner (CAS)
    islands/<i>/<generation:012>-<tag>.isz    an island checkpoint (immutable)
    elite/HEAD.json                           names the newest merged elite (CAS, term)
    elite/<epoch:012>.isz                     a merged elite epoch (immutable, create-only)
    protocol.json                             the run's bucket-protocol version (create-only)
    history/<first:012>-<last:012>.json       run history entries first..last (immutable)
    dist/<sha256>/islandsync-<v>-py3-none-any.whl  a published wheel, named by its content's
                                              sha256 (64 hex; immutable, create-only)
    dist/<seq:06>/islandsync-<v>-py3-none-any.whl  the same, as runs before the content
                                              address wrote it (read, never written)
    smoke-<random>/checkpoint.isz             ``islandsync smoke``'s own test blob, deleted
                                              by it (never among the run's records)

Parsers return None for a key that is not of their shape, so a stray or crafted blob in a
listing is skipped, never trusted. See docs/design.md for who writes and who reads each.
"""

from __future__ import annotations

import re
import secrets

RUN_KEY = "run.json"
LEASE_KEY = "lease.json"
ASSIGNMENT_KEY = "assignment.json"
FINISHED_KEY = "finished.json"
WORKERS_PREFIX = "workers/"
ISLANDS_PREFIX = "islands/"
ELITE_PREFIX = "elite/"
ELITE_HEAD_KEY = "elite/HEAD.json"
PROTOCOL_KEY = "protocol.json"
HISTORY_PREFIX = "history/"
DIST_PREFIX = "dist/"
#: ``islandsync smoke`` works under <run>/<this><random>/, never among the run's own records.
SMOKE_PREFIX = "smoke-"

#: The bucket protocol this code speaks: the keys above, the records' meanings and the CAS
#: rules. Bump it on any change an older worker would get wrong; a worker refuses to join a
#: run whose protocol.json names another (islandsync.bucket.records.check_protocol).
PROTOCOL_VERSION = 1

#: What a worker id (and so a checkpoint tag) may contain: it becomes part of object names.
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HEARTBEAT_RE = re.compile(r"^workers/([A-Za-z0-9_.-]{1,128})\.json$")
_CHECKPOINT_RE = re.compile(r"^islands/(\d{1,9})/(\d{12})-([A-Za-z0-9_.-]{1,128})\.isz$")
_ELITE_RE = re.compile(r"^elite/(\d{12})\.isz$")
_HISTORY_RE = re.compile(r"^history/(\d{12})-(\d{12})\.json$")
#: Only a pure-Python islandsync wheel: the install cells download nothing else.
WHEEL_NAME_RE = re.compile(r"^islandsync-[A-Za-z0-9_.+]{1,64}-py3-none-any\.whl$")
_DIST_RE = re.compile(
    r"^dist/([0-9a-f]{64})/(islandsync-[A-Za-z0-9_.+]{1,64}-py3-none-any\.whl)$")
_LEGACY_DIST_RE = re.compile(
    r"^dist/(\d{6})/(islandsync-[A-Za-z0-9_.+]{1,64}-py3-none-any\.whl)$")
#: The sha256 of a wheel, as its dist key and the install line's ``#sha256=`` carry it.
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_HEAD_RE = re.compile(r"^islands/(\d{1,9})/HEAD\.json$")


def heartbeat_key(worker_id: str) -> str:
    return f"{WORKERS_PREFIX}{worker_id}.json"


def parse_heartbeat_key(key: str) -> str | None:
    """The worker id a heartbeat key names, or None for anything else under ``workers/``."""
    m = _HEARTBEAT_RE.match(key)
    return m[1] if m else None


def island_prefix(island: int) -> str:
    return f"{ISLANDS_PREFIX}{island}/"


def head_key(island: int) -> str:
    return f"{ISLANDS_PREFIX}{island}/HEAD.json"


def parse_head_key(key: str) -> int | None:
    """The island an ``islands/<i>/HEAD.json`` key names, or None for anything else (also
    for ``islands/007/HEAD.json``: only the key :func:`head_key` writes is an island's HEAD)."""
    m = _HEAD_RE.match(key)
    return int(m[1]) if m and head_key(int(m[1])) == key else None


def checkpoint_key(island: int, generation: int, tag: str) -> str:
    return f"{ISLANDS_PREFIX}{island}/{generation:012d}-{tag}.isz"


def parse_checkpoint_key(key: str) -> tuple[int, int, str] | None:
    """(island, generation, writer tag) of a checkpoint key, or None."""
    m = _CHECKPOINT_RE.match(key)
    return (int(m[1]), int(m[2]), m[3]) if m else None


#: Random hex characters after the worker id in a checkpoint tag.
TAG_SUFFIX_HEX = 8
_TAG_ID_CHARS = 128 - 1 - TAG_SUFFIX_HEX  # the layout's tags are at most 128 characters


def checkpoint_tag(worker_id: str) -> str:
    """This process's writer tag: the worker id, a dot and random hex. Unique per process, so
    a worker restarted under the same id never writes (nor deletes) a blob of its former
    self, and a HEAD naming a blob of this tag and this owner was written by this process."""
    return f"{worker_id[:_TAG_ID_CHARS]}.{secrets.token_hex(TAG_SUFFIX_HEX // 2)}"


def tag_writer(tag: str) -> str:
    """The worker id a :func:`checkpoint_tag` was made from (cut at 119 characters)."""
    return tag.rsplit(".", 1)[0] if "." in tag else tag


def written_by(key: str, worker_id: str | None) -> bool:
    """Whether checkpoint ``key`` was written by (some process of) worker ``worker_id``."""
    parsed = parse_checkpoint_key(key)
    return parsed is not None and worker_id is not None \
        and tag_writer(parsed[2]) == worker_id[:_TAG_ID_CHARS]


def elite_key(epoch: int) -> str:
    return f"{ELITE_PREFIX}{epoch:012d}.isz"


def parse_elite_key(key: str) -> int | None:
    m = _ELITE_RE.match(key)
    return int(m[1]) if m else None


def history_key(first: int, last: int) -> str:
    """The segment holding history entries ``first..last`` (sequence numbers, inclusive)."""
    return f"{HISTORY_PREFIX}{first:012d}-{last:012d}.json"


def parse_history_key(key: str) -> tuple[int, int] | None:
    """(first, last) entry of a history segment key, or None (also when last < first)."""
    m = _HISTORY_RE.match(key)
    if not m or int(m[2]) < int(m[1]):
        return None
    return int(m[1]), int(m[2])


def dist_key(sha256: str, wheel: str) -> str:
    """Where the wheel of content hash ``sha256`` (64 lowercase hex) lives. Content-addressed:
    a key names one content forever, so no later wheel can outrank or replace it by its name,
    and publishing the same bytes twice is the same key."""
    if not WHEEL_NAME_RE.match(wheel):
        raise ValueError(f"not an islandsync wheel name: {wheel!r}")
    if not SHA256_RE.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{DIST_PREFIX}{sha256}/{wheel}"


def parse_dist_key(key: str) -> tuple[str | None, str] | None:
    """(sha256 or None, wheel file name) of a dist key, or None for anything else. The sha256
    is None for a key of the earlier numbered layout (``dist/<seq:06>/``), which is listed but
    vouches for no content."""
    if m := _DIST_RE.match(key):
        return m[1], m[2]
    if m := _LEGACY_DIST_RE.match(key):
        return None, m[2]
    return None


def smoke_key(token: str) -> str:
    """``islandsync smoke``'s test checkpoint under a prefix of its own (``token``: random)."""
    return f"{SMOKE_PREFIX}{token}/checkpoint.isz"


__all__ = [
    "SMOKE_PREFIX", "smoke_key",
    "ASSIGNMENT_KEY", "ELITE_HEAD_KEY", "ELITE_PREFIX", "FINISHED_KEY", "ISLANDS_PREFIX",
    "LEASE_KEY", "RUN_KEY", "WORKERS_PREFIX", "WORKER_ID_RE", "checkpoint_key", "elite_key",
    "head_key", "heartbeat_key", "island_prefix", "parse_checkpoint_key", "parse_elite_key",
    "parse_head_key", "parse_heartbeat_key",
    # checkpoint writer tags
    "TAG_SUFFIX_HEX", "checkpoint_tag", "tag_writer", "written_by",
    # run history, published wheels, the protocol version
    "DIST_PREFIX", "HISTORY_PREFIX", "PROTOCOL_KEY", "PROTOCOL_VERSION", "SHA256_RE",
    "WHEEL_NAME_RE",
    "dist_key", "history_key", "parse_dist_key", "parse_history_key",
]
