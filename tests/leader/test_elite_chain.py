"""The global elite of a leader's term (``leader/elite_chain.py``): merged from the islands'
elite frames and the previous global elite, written as a new immutable epoch and then
``elite/HEAD.json`` only when the result differs and only while leading; the oldest epochs
pruned; a garbage HEAD or a corrupt newest epoch started over from what is readable."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from islandsync.bucket.checkpoints import IslandSnapshot, encode_island
from islandsync.bucket.elites import read_elite
from islandsync.bucket.ids import genome_ids_numpy
from islandsync.bucket.layout import ELITE_HEAD_KEY, checkpoint_key, elite_key
from islandsync.bucket.records import Head, read_elite_head, stamp, write_record
from islandsync.bucket.run import init_run
from islandsync.config import spec_from_flags
from islandsync.leader.elite_chain import KEEP_ELITE_EPOCHS, EliteChain
from islandsync.store import LocalStore

POP, DIM, ELITE = 8, 3, 4


class Chain:
    """An EliteChain over a fresh run, with the coordinator's callbacks as plain state."""

    def __init__(self, tmp_path: Path, *, direction: str = "minimize") -> None:
        self.store = LocalStore(tmp_path / "run")
        self.spec = spec_from_flags(problem="sphere", dim=DIM, islands=2, pop=POP,
                                    elite_size=ELITE, direction=direction,
                                    algorithm="ga")
        init_run(self.store, self.spec)
        self.leading = True
        self.deleted: list[str] = []
        #: Run as the chain enters its paced HEAD write (after its stat of the cycle).
        self.before_head_write = lambda: None
        self.chain = self.new()
        self.generation = {0: 0, 1: 0}

    def new(self) -> EliteChain:
        return EliteChain(self.store, self.spec, leading=lambda: self.leading,
                          paced=self._paced, delete=self._delete)

    @contextlib.contextmanager
    def _paced(self, key: str):
        self.before_head_write()
        yield

    def _delete(self, key: str) -> None:
        self.deleted.append(key)
        self.store.delete(key)

    def island(self, island: int, scores: list[float], offset: float = 0.0) -> Head:
        """A checkpoint of ``island`` whose genomes score ``scores`` (minimisation scores),
        and the HEAD naming it."""
        self.generation[island] += 1
        generation = self.generation[island]
        genomes = (np.arange(POP * DIM, dtype=np.float32).reshape(POP, DIM)
                   + 100 * island + offset)
        snap = IslandSnapshot(island, generation, generation * POP, 0, {
            "genomes": genomes, "scores": np.asarray(scores, np.float32),
            "ids": genome_ids_numpy(genomes), "origin": np.full(POP, island, np.int64)})
        key = checkpoint_key(island, generation, "w")
        self.store.put(key, encode_island(snap, elite=ELITE, meta={"owner": "w"}))
        return Head(island=island, checkpoint=key, generation=generation, owner="w")

    def epochs(self) -> list[str]:
        return sorted(i.key for i in self.store.list("elite/") if i.key.endswith(".isz"))


def _scores(best: float) -> list[float]:
    return [best + i for i in range(POP)]


def test_a_merge_writes_an_epoch_then_the_head_naming_it_in_the_leaders_term(
        tmp_path: Path) -> None:
    c = Chain(tmp_path)
    c.chain.merge({0: c.island(0, _scores(5.0)), 1: c.island(1, _scores(2.0))}, term=3)
    head = read_elite_head(c.store)[0]
    assert (head.epoch, head.key, head.term, head.size) == (1, elite_key(1), 3, ELITE)
    assert head.best == 2.0
    scores = read_elite(c.store, head.key, spec=c.spec)[1]
    assert scores.tolist() == [2.0, 3.0, 4.0, 5.0]  # the best of both islands, best first


def test_the_best_is_written_in_the_problems_own_direction(tmp_path: Path) -> None:
    c = Chain(tmp_path, direction="maximize")
    c.chain.merge({0: c.island(0, _scores(-7.0))}, term=1)  # minimisation score -7: fitness 7
    assert read_elite_head(c.store)[0].best == 7.0


def test_nothing_is_written_when_no_head_moved_or_the_elite_is_the_same(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    heads = {0: c.island(0, _scores(1.0))}
    c.chain.merge(heads, term=1)
    c.chain.merge(heads, term=1)  # no HEAD moved
    assert c.epochs() == [elite_key(1)]
    c.chain.merge({0: c.island(0, _scores(1.0))}, term=1)  # moved, same genomes and scores
    assert c.epochs() == [elite_key(1)]


def test_the_global_best_never_gets_worse(tmp_path: Path) -> None:
    """The island lost its best (its owner died before uploading it): the global elite keeps
    it, since it takes part in every merge."""
    c = Chain(tmp_path)
    c.chain.merge({0: c.island(0, _scores(1.0))}, term=1)
    c.chain.merge({0: c.island(0, _scores(50.0), offset=0.5), 1: c.island(1, _scores(2.5))},
                  term=1)
    head = read_elite_head(c.store)[0]
    assert head.epoch == 2 and head.best == 1.0
    assert read_elite(c.store, head.key, spec=c.spec)[1].tolist() == [1.0, 2.0, 2.5, 3.0]


def test_a_chain_that_is_not_leading_writes_nothing(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    c.leading = False
    c.chain.merge({0: c.island(0, _scores(1.0))}, term=1)
    assert c.epochs() == [] and c.store.stat(ELITE_HEAD_KEY) is None


def test_only_the_newest_epochs_are_kept(tmp_path: Path) -> None:
    c = Chain(tmp_path)
    for n in range(KEEP_ELITE_EPOCHS + 2):
        c.chain.merge({0: c.island(0, _scores(10.0 - n))}, term=1)
    newest = KEEP_ELITE_EPOCHS + 2
    assert c.epochs() == [elite_key(e) for e in range(newest - KEEP_ELITE_EPOCHS + 1,
                                                      newest + 1)]
    assert c.deleted == [elite_key(1), elite_key(2)]


def test_a_new_term_loads_the_newest_readable_epoch(tmp_path: Path) -> None:
    """The next leader's chain falls back past a corrupt newest epoch, so the global best
    survives it."""
    c = Chain(tmp_path)
    c.chain.merge({0: c.island(0, _scores(1.0))}, term=1)
    c.chain.merge({0: c.island(0, _scores(0.5), offset=0.25)}, term=1)
    c.store.put(elite_key(2), b"not an elite")  # the newest, named by HEAD, is corrupt
    nxt = c.new()
    nxt.merge({1: c.island(1, _scores(1.5))}, term=2)
    head = read_elite_head(c.store)[0]
    assert (head.epoch, head.term, head.best) == (3, 2, 1.0)
    assert read_elite(c.store, head.key, spec=c.spec)[1].tolist() == [1.0, 1.5, 2.0, 2.5]


def test_a_garbage_head_is_replaced_by_a_new_chain_after_the_newest_epoch(
        tmp_path: Path) -> None:
    c = Chain(tmp_path)
    heads = {0: c.island(0, _scores(1.0))}
    c.chain.merge(heads, term=1)
    c.store.put(ELITE_HEAD_KEY, b"\x00garbage")
    nxt = c.new()
    nxt.merge(heads, term=1)  # nothing moved, yet HEAD is written again
    head = read_elite_head(c.store)[0]
    assert head.epoch == 2 and head.best == 1.0


def test_a_head_changed_under_us_drops_our_epoch_and_reloads(tmp_path: Path) -> None:
    """Another writer moves elite/HEAD.json between the chain's stat and its CAS: the CAS
    fails, and the epoch just written, which no HEAD names, is deleted."""
    c = Chain(tmp_path)
    c.chain.merge({0: c.island(0, _scores(5.0))}, term=1)

    def another_writer() -> None:
        head, gen = read_elite_head(c.store)
        write_record(c.store, ELITE_HEAD_KEY, stamp(head), if_generation=gen)

    c.before_head_write = another_writer
    c.chain.merge({0: c.island(0, _scores(1.0), offset=0.5)}, term=1)
    assert c.deleted == [elite_key(2)] and c.store.stat(elite_key(2)) is None
    assert read_elite_head(c.store)[0].epoch == 1
    assert not c.chain.loaded  # read again next cycle
