"""Which old checkpoints the leader's housekeeping deletes: a pure function of one listing.

Never a blob that a HEAD names. Each island keeps every checkpoint on HEAD's lineage, and of
the others at or below HEAD the :data:`KEEP_FALLBACKS` newest (a reader's last resort); an
orphan of a killed owner must not push the real lineage out. Blobs above HEAD (a writer that
lost the island) go once seen twice, a housekeeping period apart. A blob above HEAD written by
HEAD's owner (any process of that worker id) is not an orphan at all: it is an upload whose
HEAD CAS is in flight, which an outage can hold up for longer than any period; swept, it would
leave the HEAD that finally lands naming a deleted blob. The owner deletes its own leftovers
(it knows which it wrote); those of an owner that died go once the island has another owner.
Checkpoints are those the cycle's listing of ``islands/``
showed; an island whose HEAD could not be read fresh from that listing is left alone.
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
        keys = sorted(view.checkpoints.get(island, ()), reverse=True)
        fallbacks = [k for g, k in keys if g <= head.generation and k not in named]
        doomed += fallbacks[KEEP_FALLBACKS:]
        orphans |= {k for g, k in keys if g > head.generation and k not in named
                    and not written_by(k, head.owner)}
    doomed += sorted(orphans & seen_orphans)
    return doomed, orphans - seen_orphans


__all__ = ["KEEP_FALLBACKS", "sweep"]
