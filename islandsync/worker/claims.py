"""Taking an island: the HEAD CAS that makes a worker its owner, then the checkpoint to resume.

A claim copies the HEAD it read with ``owner`` set to us, fenced by that HEAD's version (so of
several workers racing for an island exactly one wins; losing is normal and returns None; a
refusal or an unknown outcome is read back by the claim's nonce before it counts as lost),
then loads the newest readable checkpoint along HEAD's lineage
(:func:`islandsync.bucket.checkpoints.load_island`).

A HEAD that is not a valid record (garbage, a crafted blob) is skipped by every reader and
replaced by nobody, so it would stop its island for good: :func:`take_over_garbage` replaces
it, fenced by the garbage's version, with a HEAD that names the island's newest readable
checkpoint, which the island resumes. Naming it matters: a HEAD naming nothing would make every
blob of the island an orphan to the leader's sweep and, should we die before our first upload,
send the next owner back to the seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from islandsync.bucket.checkpoints import IslandSnapshot, load_island
from islandsync.bucket.layout import head_key, island_prefix, parse_checkpoint_key
from islandsync.bucket.records import MAX_INT, Head, stamp, write_fenced
from islandsync.config import RunSpec
from islandsync.store import BlobStore

log = logging.getLogger(__name__)


@dataclass
class Claim:
    island: int
    head_generation: int
    snapshot: IslandSnapshot | None  # None: start fresh from the seed
    keys: list[str]
    snapshot_key: str | None = None  # the checkpoint the snapshot was read from
    lineage: list[str] = field(default_factory=list)  # HEAD's checkpoint and its previous
    #: The island had progress but none of it was readable: it restarts from the seed.
    from_seed: bool = False
    #: The nonce of the claim's HEAD write: a write of this process (see Uploader.also_ours).
    nonce: str = ""


def take_island(store: BlobStore, spec: RunSpec, worker_id: str, island: int,
                current: tuple[Head, int] | None, *,
                loaded: IslandSnapshot | None = None) -> Claim | None:
    """CAS the island's HEAD (``current``: as read, with its version; None when absent) to
    name ``worker_id``, then load the checkpoint it names (unless ``loaded`` already is it).
    None when another worker won the race."""
    head, version = current if current is not None else (Head(island=island), 0)
    # Stamped once: its nonce tells, on reading HEAD back, whether this very write landed
    # (a lost reply, or a store or proxy that resent it and met its own 412, would otherwise
    # leave HEAD naming us while we walked away).
    mine = stamp(head.model_copy(update={"owner": worker_id, "released": False}))
    new_version = write_fenced(store, head_key(island), mine, Head, if_generation=version)
    if new_version is None:
        return None  # another worker won the race: normal
    snapshot, keys, from_seed = loaded, [], False
    if head.checkpoint or head.generation:
        if snapshot is None:
            snapshot = load_island(store, island, head, spec=spec)
        keys = [i.key for i in store.list(island_prefix(island)) if parse_checkpoint_key(i.key)]
        if snapshot is None:
            from_seed = True  # loud: the island's whole progress is lost
            log.warning("island %d: no readable checkpoint (HEAD was at generation %d); "
                        "restarting it from the seed", island, head.generation)
    return Claim(island, new_version, snapshot, keys,
                 snapshot.meta.get("key") if snapshot is not None else None, head.lineage(),
                 from_seed, mine.nonce)


def take_over_garbage(store: BlobStore, spec: RunSpec, worker_id: str,
                      island: int) -> Claim | None:
    """Take over an island whose HEAD is not a valid record (see module doc); None when the
    HEAD is gone meanwhile (claimed the ordinary way next poll) or another worker won."""
    info = store.stat(head_key(island))
    if info is None:
        return None
    log.warning("island %d: HEAD is not a valid record; taking it over from its newest "
                "readable checkpoint", island)
    # Its lineage is unknown: any readable blob of the island will do, the newest first.
    found = load_island(store, island, Head(island=island, generation=MAX_INT), spec=spec)
    if found is None:
        claim = take_island(store, spec, worker_id, island, (Head(island=island),
                                                             info.generation))
        if claim is not None:
            claim.from_seed = True
            log.warning("island %d: no readable checkpoint; restarting it from the seed",
                        island)
        return claim
    named = Head(island=island, checkpoint=found.meta["key"], generation=found.generation,
                 evals=found.evals)
    return take_island(store, spec, worker_id, island, (named, info.generation), loaded=found)


__all__ = ["Claim", "take_island", "take_over_garbage"]
