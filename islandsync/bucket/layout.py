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

Parsers return None for a key that is not of their shape, so a stray or crafted blob in a
listing is skipped, never trusted. See docs/design.md for who writes and who reads each.
"""

from __future__ import annotations

import re

RUN_KEY = "run.json"
LEASE_KEY = "lease.json"
ASSIGNMENT_KEY = "assignment.json"
FINISHED_KEY = "finished.json"
WORKERS_PREFIX = "workers/"
ISLANDS_PREFIX = "islands/"
ELITE_PREFIX = "elite/"
ELITE_HEAD_KEY = "elite/HEAD.json"

#: What a worker id (and so a checkpoint tag) may contain: it becomes part of object names.
WORKER_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_HEARTBEAT_RE = re.compile(r"^workers/([A-Za-z0-9_.-]{1,128})\.json$")
_CHECKPOINT_RE = re.compile(r"^islands/(\d{1,9})/(\d{12})-([A-Za-z0-9_.-]{1,128})\.isz$")
_ELITE_RE = re.compile(r"^elite/(\d{12})\.isz$")


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


def checkpoint_key(island: int, generation: int, tag: str) -> str:
    return f"{ISLANDS_PREFIX}{island}/{generation:012d}-{tag}.isz"


def parse_checkpoint_key(key: str) -> tuple[int, int, str] | None:
    """(island, generation, writer tag) of a checkpoint key, or None."""
    m = _CHECKPOINT_RE.match(key)
    return (int(m[1]), int(m[2]), m[3]) if m else None


def elite_key(epoch: int) -> str:
    return f"{ELITE_PREFIX}{epoch:012d}.isz"


def parse_elite_key(key: str) -> int | None:
    m = _ELITE_RE.match(key)
    return int(m[1]) if m else None


__all__ = [
    "ASSIGNMENT_KEY", "ELITE_HEAD_KEY", "ELITE_PREFIX", "FINISHED_KEY", "ISLANDS_PREFIX",
    "LEASE_KEY", "RUN_KEY", "WORKERS_PREFIX", "WORKER_ID_RE", "checkpoint_key", "elite_key",
    "head_key", "heartbeat_key", "island_prefix", "parse_checkpoint_key", "parse_elite_key",
    "parse_heartbeat_key",
]
