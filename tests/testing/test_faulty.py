"""FaultyStore: each fault does what it says, on a real LocalStore, and a seed replays it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from islandsync.bucket import codec
from islandsync.bucket.layout import ASSIGNMENT_KEY
from islandsync.bucket.records import (
    MAX_RECORD_BYTES,
    MAX_TERM,
    Assignment,
    Head,
    parse_record,
    read_assignment,
    read_head,
    write_assignment,
    write_head,
)
from islandsync.errors import (
    CheckpointError,
    ConfigError,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from islandsync.store import LocalStore
from islandsync.testing.faulty import (
    ISZ_GARBAGE,
    JSON_GARBAGE,
    Byzantine,
    ErrorBefore,
    FaultyStore,
    Latency,
    LostReply,
    Outage,
)

HEAD = Head(island=2, checkpoint="islands/2/000000000012-w.isz", generation=12, best=1.5,
            owner="w", previous=["islands/2/000000000010-w.isz"])


@pytest.fixture
def inner(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _island_blob(island: int = 2) -> bytes:
    scores = np.arange(8, dtype=np.float32)
    return codec.encode({"island": island, "generation": 12, "evals": 96},
                        {"elite.scores": scores[:2], "genomes": np.zeros((8, 3), np.float32),
                         "scores": scores, "ids": np.arange(8, dtype=np.int64)})


def test_error_before_means_nothing_was_written(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=1, rules=[ErrorBefore(ops=("put",), calls=(1,))])
    with pytest.raises(StoreError, match="not done"):
        store.put("a", b"one")
    with pytest.raises(NotFound):
        inner.get("a")
    store.put("a", b"two")  # only the first matching call was scheduled
    assert inner.get("a").data == b"two"
    assert store.counts() == {"error_before": 1}


def test_a_lost_reply_means_the_write_landed_yet_the_caller_saw_an_error(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=1, rules=[LostReply(ops=("put", "delete"), calls=(1, 3))])
    with pytest.raises(StoreError, match="reply lost"):
        store.put("a", b"one", if_generation=0)
    blob = inner.get("a")
    assert blob.data == b"one"  # it IS written
    # A retry of the same conditional write now fails its own precondition: the case a
    # writer must resolve by reading its nonce back.
    with pytest.raises(PreconditionFailed):
        store.put("a", b"one", if_generation=0)  # matching call 2: not scheduled
    with pytest.raises(StoreError, match="reply lost"):
        store.delete("a")
    assert inner.stat("a") is None  # the delete happened too
    assert store.counts() == {"lost_reply": 2}


def test_a_lost_reply_on_a_head_cas(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=3, rules=[LostReply(keys="islands/*/HEAD.json", calls=(1,))])
    with pytest.raises(StoreError):
        write_head(store, HEAD, if_generation=0)
    assert read_head(inner, 2)[0].checkpoint == HEAD.checkpoint


def test_rules_match_operations_and_keys_by_fnmatch_or_regex(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=0, rules=[
        ErrorBefore(ops=("get",), keys="islands/*/HEAD.json", rate=1.0),
        ErrorBefore(ops=("put",), keys=r"re:^workers/w\d+\.json$", rate=1.0),
    ])
    store.put("islands/1/HEAD.json", b"{}")  # a put: the first rule is for reads
    store.put("workers/wx.json", b"{}")  # not the regex
    with pytest.raises(StoreError):
        store.get("islands/1/HEAD.json")
    with pytest.raises(StoreError):
        store.put("workers/w12.json", b"{}")
    assert store.get("workers/wx.json").data == b"{}"
    assert store.counts() == {"error_before": 2}


def test_latency_slows_only_matching_calls(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=0, rules=[Latency(ops=("get",), keys="slow", seconds=0.3,
                                                      rate=1.0)])
    store.put("slow", b"x")
    store.put("fast", b"x")
    t0 = time.monotonic()
    store.get("fast")
    fast = time.monotonic() - t0
    t0 = time.monotonic()
    store.get("slow")
    assert time.monotonic() - t0 >= 0.3 > fast
    assert store.counts() == {"latency": 1}


def test_an_outage_window_by_calls_fails_every_call_in_it(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=0, rules=[Outage(start=3, length=2, every=10, unit="calls")])
    failed = []
    for n in range(1, 25):
        try:
            store.put(f"k{n}", b"x")
        except StoreError:
            failed.append(n)
    assert failed == [3, 4, 13, 14, 23, 24]
    assert inner.stat("k3") is None and inner.stat("k5") is not None
    assert store.counts() == {"outage": 6}


def test_an_outage_window_by_seconds_and_by_hand(inner: LocalStore) -> None:
    t = {"now": 0.0}
    store = FaultyStore(inner, seed=0, rules=[Outage(start=5.0, length=2.0)],
                        clock=lambda: t["now"])
    store.put("a", b"x")
    t["now"] = 6.0
    with pytest.raises(StoreError, match="unreachable"):
        store.stat("a")
    t["now"] = 7.5
    assert store.stat("a") is not None
    store.start_outage()
    for call in (lambda: store.get("a"), lambda: store.list(""), lambda: store.delete("a")):
        with pytest.raises(StoreError, match="unreachable"):
            call()
    store.end_outage()
    store.delete("a")
    assert store.counts() == {"outage": 4}


@pytest.mark.parametrize("kind", sorted(set(JSON_GARBAGE) - {"forged_term", "term_at_cap"}))
def test_byzantine_json_garbage_of_each_kind_is_refused_by_the_read_boundary(
        inner: LocalStore, kind: str) -> None:
    store = FaultyStore(inner, seed=5, rules=[Byzantine(keys="*.json", kinds=(kind,), rate=1.0)])
    gen = write_head(store, HEAD, if_generation=0)
    after = inner.stat("islands/2/HEAD.json")
    assert after.generation > gen  # replaced in the inner store, as another party would
    data = inner.get("islands/2/HEAD.json").data
    assert store.counts() == {f"byzantine.{kind}": 1}
    assert store.corrupted() == {"islands/2/HEAD.json": kind}
    if kind == "nested":
        assert data == b"[" * 200_000
    if kind in ("non_finite", "bad_key"):
        assert any(s.encode() in data for s in ("Infinity", "NaN", "1e999", str(2**64), "../x"))
    if kind == "oversized":
        assert len(data) > MAX_RECORD_BYTES and json.loads(data)["island"] == 2
    with pytest.raises(CheckpointError):
        read_head(inner, 2)


def test_byzantine_forged_terms(inner: LocalStore) -> None:
    """A term far above the lease's, still a valid record (garbage only by the rule that a
    term is trusted as far as the lease vouches for it), and terms at and past the cap."""
    record = Assignment(term=3, epoch=4, leader="c", islands={0: "w"}, workers=["w"])
    store = FaultyStore(inner, seed=5, rules=[Byzantine(kinds=("forged_term",), rate=1.0)])
    write_assignment(store, record, if_generation=0)
    forged = read_assignment(inner)[0]
    assert 1000 < forged.term - 3 < MAX_TERM and forged.islands == record.islands
    seen = set()
    for seed in range(12):
        store = FaultyStore(inner, seed=seed, rules=[Byzantine(kinds=("term_at_cap",),
                                                               rate=1.0)])
        write_assignment(store, record, if_generation=inner.stat(ASSIGNMENT_KEY).generation)
        term = json.loads(inner.get(ASSIGNMENT_KEY).data)["term"]
        seen.add(term)
        if term >= MAX_TERM:
            with pytest.raises(CheckpointError, match="term"):
                read_assignment(inner)
        else:  # just below the cap: valid, and vouched for by no lease
            assert read_assignment(inner)[0].term == MAX_TERM - 1
    assert {MAX_TERM - 1, MAX_TERM, 2**62} <= seen


def test_byzantine_other_island_is_a_valid_record_of_another_island(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=5, rules=[Byzantine(kinds=("other_island",), rate=1.0)])
    write_head(store, HEAD, if_generation=0)
    other = parse_record(inner.get("islands/2/HEAD.json").data, Head, name="h")
    assert other.island != 2 and other.checkpoint.startswith(f"islands/{other.island}/")


@pytest.mark.parametrize("kind", sorted(ISZ_GARBAGE))
def test_byzantine_checkpoint_garbage_of_each_kind(inner: LocalStore, kind: str) -> None:
    key = "islands/2/000000000012-w.isz"
    store = FaultyStore(inner, seed=9, rules=[Byzantine(keys="*.isz", kinds=(kind,), rate=1.0,
                                                        codec=codec)])
    store.put(key, _island_blob())
    data = inner.get(key).data
    assert store.corrupted() == {key: kind}
    if kind in ("truncated", "random"):
        with pytest.raises(CheckpointError):
            codec.decode(data, name=key)
        return
    if kind == "padded":  # the honest blob, then junk: only a cap on stored sizes tells
        assert data.startswith(_island_blob()) and len(data) >= len(_island_blob()) + (1 << 20)
        return
    if kind == "bomb":  # a few KiB stored that expand to 64 MiB, consistent in shape
        _, infos = codec.read_header(data, name=key, blob_size=len(data))
        assert len(data) < 1 << 20 and sum(i.raw_length for i in infos) >= 60 << 20
        rows = {i.name: i.shape[0] for i in infos}
        assert rows["genomes"] == rows["scores"] == rows["ids"] > 10**6 == 10**6 * rows[
            "elite.scores"] // 2
        return
    meta, frames = codec.decode(data, name=key)  # a valid format, wrong content
    if kind == "wrong_shape":
        assert frames["scores"].shape != frames["ids"].shape
    elif kind == "non_finite":
        assert 2**64 in meta.values()
    elif kind == "wrong_type":
        assert "12" in meta.values()
    else:
        assert meta["island"] != 2


def test_byzantine_reencoded_kinds_need_the_codec(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=9, rules=[Byzantine(kinds=("wrong_shape",), rate=1.0)])
    store.put("islands/2/000000000012-w.isz", _island_blob())
    assert store.counts() == {}  # nothing fit: the blob is left alone
    assert inner.get("islands/2/000000000012-w.isz").data == _island_blob()


def _run(seed: int, root: Path) -> tuple[list[str], dict, dict, list[bytes]]:
    store = FaultyStore(LocalStore(root), seed=seed, rules=[
        ErrorBefore(rate=0.2), LostReply(rate=0.2), Latency(rate=0.1, seconds=0.0),
        Byzantine(keys="*.json", rate=0.3),
    ])
    outcomes = []
    for n in range(60):
        try:
            store.put(f"r/{n % 7}.json", json.dumps({"island": n % 7, "generation": n}).encode())
            outcomes.append("ok")
        except StoreError as err:
            outcomes.append(str(err).split(":")[-1])
    blobs = [store.inner.get(f"r/{k}.json").data for k in range(7) if store.inner.stat(f"r/{k}.json")]
    return outcomes, store.counts(), store.corrupted(), blobs


def test_the_same_seed_and_calls_inject_the_same_faults(tmp_path: Path) -> None:
    a, b, c = (_run(seed, tmp_path / name) for seed, name in ((7, "a"), (7, "b"), (8, "c")))
    assert a == b
    assert a[1] != c[1] or a[0] != c[0]
    assert {"error_before", "lost_reply", "latency"} <= set(a[1])
    assert any(k.startswith("byzantine.") for k in a[1])


def test_counts_are_exact_under_threads(inner: LocalStore) -> None:
    store = FaultyStore(inner, seed=2, rules=[ErrorBefore(ops=("stat",), rate=0.5)])
    failures = []

    def hammer() -> None:
        n = 0
        for _ in range(200):
            try:
                store.stat("x")
            except StoreError:
                n += 1
        failures.append(n)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counts() == {"error_before": sum(failures)}
    assert 200 < sum(failures) < 600


def test_bad_rules_fail_when_made() -> None:
    for make in (lambda: ErrorBefore(ops=("read",)), lambda: LostReply(rate=2.0),
                 lambda: Outage(unit="hours"), lambda: Byzantine(ops=("list",)),
                 lambda: Byzantine(kinds=("poison",)), lambda: Latency(keys="re:(")):
        with pytest.raises(ConfigError):
            make()
