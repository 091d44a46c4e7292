"""Which leader a worker follows (``worker/terms.py``): only records of the current lease's
term; a higher term is garbage and never raises the term followed, a lower one is a deposed
leader's; a missing or garbage lease keeps the last term; the lease is read again with each
new assignment, not with every poll."""

from __future__ import annotations

from pathlib import Path

from islandsync.bucket.layout import ASSIGNMENT_KEY, LEASE_KEY
from islandsync.bucket.records import (
    Assignment,
    LeaseRecord,
    read_assignment,
    write_assignment,
    write_record,
)
from islandsync.store import LocalStore
from islandsync.store.base import Blob
from islandsync.worker.terms import LeaseTerms


def _terms(tmp_path: Path, term: int | None = 3) -> tuple[LocalStore, LeaseTerms, list[str]]:
    store = LocalStore(tmp_path / "run")
    if term is not None:
        write_record(store, LEASE_KEY, LeaseRecord(holder="c0", term=term, lease_s=3.0))
    warned: list[str] = []
    return store, LeaseTerms(store, lambda message, about: warned.append(about)), warned


def _assign(store: LocalStore, term: int, epoch: int, islands: dict[int, str]) -> None:
    found = read_assignment(store)
    write_assignment(store, Assignment(term=term, epoch=epoch, leader="c", islands=islands,
                                       workers=sorted(set(islands.values()))),
                     if_generation=found[1] if found else 0)


def test_only_the_lease_terms_records_are_current(tmp_path: Path) -> None:
    _, terms, warned = _terms(tmp_path, term=3)
    assert terms.current(3, "elite HEAD")
    assert terms.term == 3
    assert not terms.current(2, "elite HEAD")  # a deposed leader's: stale, said nothing
    assert warned == []
    assert not terms.current(10**9, "elite HEAD")  # vouched for by no lease: garbage
    assert terms.term == 3 and warned == ["elite HEAD"]


def test_a_missing_or_garbage_lease_keeps_the_last_term(tmp_path: Path) -> None:
    store, terms, warned = _terms(tmp_path, term=4)
    terms.refresh()
    store.delete(LEASE_KEY)
    terms.refresh()
    assert terms.term == 4
    store.put(LEASE_KEY, b'{"holder": "c0", "term": "5"}')
    terms.refresh()
    assert terms.term == 4 and warned == ["lease"]


def test_a_lease_that_moved_on_is_read_before_a_record_is_judged(tmp_path: Path) -> None:
    store, terms, _ = _terms(tmp_path, term=3)
    terms.refresh()
    write_record(store, LEASE_KEY, LeaseRecord(holder="c1", term=4, lease_s=3.0))
    assert terms.current(4, "assignment")  # read the lease again: term 4 is vouched for now
    assert not terms.current(3, "assignment")


def test_an_assignment_is_followed_only_in_the_current_term(tmp_path: Path) -> None:
    store, terms, warned = _terms(tmp_path, term=3)
    assert terms.assignment() is None  # none yet
    _assign(store, 10**9, 1, {0: "w"})
    assert terms.assignment() is None and warned == ["assignment"]
    _assign(store, 3, 2, {0: "w", 1: "w"})
    followed = terms.assignment()
    assert followed is not None and followed.epoch == 2 and followed.of("w") == {0, 1}
    store.put(ASSIGNMENT_KEY, b"\x00 garbage")
    assert terms.assignment() is None


class LeaseReads(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lease_reads = 0

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        self.lease_reads += key == LEASE_KEY
        return super().get(key, start=start, end=end)


def test_the_lease_is_read_with_each_new_assignment_not_each_poll(tmp_path: Path) -> None:
    inner, _, _ = _terms(tmp_path, term=3)
    _assign(inner, 3, 1, {0: "w"})
    store = LeaseReads(tmp_path / "run")
    terms = LeaseTerms(store, lambda message, about: None)

    def lease_reads() -> int:
        return store.lease_reads

    assert terms.assignment() is not None and lease_reads() == 1
    assert terms.assignment() is not None and lease_reads() == 1  # unchanged: no second look
    _assign(inner, 3, 2, {0: "w"})
    assert terms.assignment() is not None and lease_reads() == 2
