"""Which old checkpoints the leader's housekeeping deletes: a pure function of one listing.

The rule: a blob that a HEAD may name by the time its CAS lands is never swept. That is every
blob a HEAD names, and every blob written by HEAD's owner (any process of that worker id), *at
any generation*: only the owner's CAS can move HEAD on, and its upload in flight may sit above
HEAD or at or below it (a claimer that resumed an older checkpoint than HEAD's, or restarted
from the seed, uploads generations at or below the HEAD it claimed until its first HEAD CAS
lands); an outage can hold that CAS up for longer than any period, and swept, the blob would
leave the HEAD that finally lands naming a deleted blob. The owner deletes its own leftovers
(it knows which it wrote); those of an owner that died go once the island has another owner.

Of the other blobs, each island keeps those at or below HEAD up to the :data:`KEEP_FALLBACKS`
newest (a reader's last resort; an orphan of a killed owner must not push the real lineage
out), and blobs above HEAD (a writer that lost the island) go once seen twice, a housekeeping
period apart. Checkpoints are those the cycle's listing of ``islands/`` showed; an island whose
HEAD could not be read fresh from that listing is left alone.
"""

from __future__ import annotations

from islandsync.bucket.heads import HeadView
from islandsync.bucket.layout import written_by
from islandsync.bucket.records import Head

#: Checkpoints at or below an island's HEAD that HEAD's lineage does not name, kept as a last
#: resort for a reader whose whole lineage is unreadable (newest first).
KEEP_FALLBACKS = 2


def sweep(view: HeadView, heads: dict[int, Head],
          seen_orphans: set[str]) -> tuple[list[str], set[str]]:
    """(checkpoint keys to delete now, orphans to remember until the next sweep), given the
    orphans the previous sweep remembered."""
    named = {key for head in heads.values() for key in head.lineage()}
    orphans: set[str] = set()
    doomed: list[str] = []
    for island, head in heads.items():
        if island not in view.fresh:
            continue
        # Named, or the owner's (an upload whose HEAD CAS may be in flight): never swept.
        keys = sorted(((g, k) for g, k in view.checkpoints.get(island, ())
                       if k not in named and not written_by(k, head.owner)), reverse=True)
        doomed += [k for g, k in keys if g <= head.generation][KEEP_FALLBACKS:]
        orphans |= {k for g, k in keys if g > head.generation}
    doomed += sorted(orphans & seen_orphans)
    return doomed, orphans - seen_orphans


__all__ = ["KEEP_FALLBACKS", "sweep"]
