"""The one read boundary for JSON records: every kind of garbage becomes one CheckpointError
naming the blob, and every valid record reads back as written."""

from __future__ import annotations

import json

import pytest

from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    head_key,
    heartbeat_key,
)
from islandsync.bucket.records import (
    MAX_RECORD_BYTES,
    Assignment,
    EliteHead,
    Finished,
    Head,
    Heartbeat,
    LeaseRecord,
    landed,
    parse_record,
    read_elite_head,
    read_head,
    read_record,
    stamp,
    write_head,
    write_record,
)
from islandsync.errors import CheckpointError, StoreError
from islandsync.store import LocalStore

VALID: dict[type, dict] = {
    LeaseRecord: {"holder": "w-1", "term": 3, "lease_s": 15.0},
    Heartbeat: {"worker": "w-1", "rate": 12.5, "islands": [0, 2], "state": "running"},
    Assignment: {"term": 2, "epoch": 7, "leader": "c-1", "islands": {"0": "w-1"},
                 "workers": ["w-1"]},
    Head: {"island": 4, "checkpoint": "islands/4/000000000012-w-1.isz", "generation": 12,
           "best": 1.5, "owner": "w-1",
           "previous": ["islands/4/000000000010-w-1.isz"]},
    EliteHead: {"epoch": 9, "key": "elite/000000000009.isz", "term": 2, "size": 64},
    Finished: {"reason": "target", "by": "w-1", "evals": 100, "best": 0.5},
}

# What a hostile or broken writer puts where a number, a key or a record belongs.
GARBAGE: dict[str, bytes] = {
    "bad utf-8": b'{"holder": "\xff\xfe"}',
    "bad json": b'{"holder": ',
    "not an object": b"[1, 2, 3]",
    "nested brackets": b"[" * 200_000,
    "nested in a string is fine but this is not": b'{"a": ' + b"{" * 5000,
    "empty": b"",
}
NUMBERS = ["Infinity", "-Infinity", "NaN", "1e999", str(2 ** 64), "\"12\"", "true", "[]"]


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
def test_valid_records_round_trip(tmp_path, model) -> None:
    store = LocalStore(tmp_path)
    record = model.model_validate(VALID[model])
    gen = write_record(store, "r.json", record)
    back, generation = read_record(store, "r.json", model)
    assert generation == gen
    assert back.model_dump(exclude={"nonce", "written_at"}) == \
        record.model_dump(exclude={"nonce", "written_at"})
    assert back.nonce and back.written_at > 0  # stamped by the one writer


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_is_one_checkpoint_error_naming_the_blob(tmp_path, model, kind) -> None:
    store = LocalStore(tmp_path)
    store.put("bad/r.json", GARBAGE[kind])
    with pytest.raises(CheckpointError, match="bad/r.json"):
        read_record(store, "bad/r.json", model)


@pytest.mark.parametrize("model", list(VALID), ids=lambda m: m.__name__)
@pytest.mark.parametrize("number", NUMBERS)
def test_every_numeric_field_refuses_non_numbers_and_overflow(model, number) -> None:
    numeric = [k for k, v in VALID[model].items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert numeric
    for field in numeric:
        if field == "best" and number == str(2 ** 64):
            continue  # a fitness may well be 1.8e19
        text = json.dumps(VALID[model]).replace(
            f'"{field}": {json.dumps(VALID[model][field])}', f'"{field}": {number}')
        assert number in text
        with pytest.raises(CheckpointError, match=f"blob-{field}"):
            parse_record(text.encode(), model, name=f"blob-{field}")


@pytest.mark.parametrize("bad", ["../x", "islands/4/../../x.isz", "/etc/passwd",
                                 "islands/4/HEAD.json", "islands/4/12.isz", "x" * 2000])
def test_keys_in_records_must_be_of_their_shape(bad) -> None:
    head = dict(VALID[Head], checkpoint=bad)
    with pytest.raises(CheckpointError):
        parse_record(json.dumps(head).encode(), Head, name="h")
    previous = dict(VALID[Head], previous=[bad])
    with pytest.raises(CheckpointError):
        parse_record(json.dumps(previous).encode(), Head, name="h")


def test_worker_ids_in_records_must_be_of_their_shape() -> None:
    for bad in ["", "a/b", "../x", "w\x1b[2J", "x" * 129]:
        with pytest.raises(CheckpointError):
            parse_record(json.dumps(dict(VALID[LeaseRecord], holder=bad)).encode(),
                         LeaseRecord, name="lease")
        with pytest.raises(CheckpointError):
            parse_record(json.dumps(dict(VALID[Assignment], islands={"0": bad})).encode(),
                         Assignment, name="assignment")


def test_a_head_naming_another_islands_checkpoint_is_refused(tmp_path) -> None:
    store = LocalStore(tmp_path)
    write_record(store, head_key(5), Head.model_validate(VALID[Head]))  # says island 4
    with pytest.raises(CheckpointError, match="HEAD.json"):
        read_head(store, 5)
    crafted = dict(VALID[Head], island=5, checkpoint="islands/4/000000000012-w-1.isz")
    write_record(store, head_key(5), Head.model_validate(crafted))
    with pytest.raises(CheckpointError, match="another island"):
        read_head(store, 5)


def test_an_elite_head_must_name_its_own_epoch(tmp_path) -> None:
    store = LocalStore(tmp_path)
    write_record(store, ELITE_HEAD_KEY, EliteHead.model_validate(
        dict(VALID[EliteHead], key="elite/000000000008.isz")))
    with pytest.raises(CheckpointError, match="epoch 9"):
        read_elite_head(store)
    write_record(store, ELITE_HEAD_KEY, EliteHead.model_validate(dict(VALID[EliteHead],
                                                                      key="../x")))
    with pytest.raises(CheckpointError):
        read_elite_head(store)


class CountingGets(LocalStore):
    def __init__(self, root) -> None:
        super().__init__(root)
        self.fetched: list[int] = []

    def get(self, key, *, start=None, end=None):
        blob = super().get(key, start=start, end=end)
        self.fetched.append(len(blob.data))
        return blob


def test_a_huge_record_is_never_downloaded_whole(tmp_path) -> None:
    store = CountingGets(tmp_path)
    store.put(LEASE_KEY, b" " * (8 * MAX_RECORD_BYTES))
    with pytest.raises(CheckpointError, match="larger than"):
        read_record(store, LEASE_KEY, LeaseRecord)
    assert store.fetched == [MAX_RECORD_BYTES + 1]


def test_unknown_fields_are_ignored_for_newer_writers() -> None:
    body = dict(VALID[Heartbeat], some_future_field={"a": 1})
    assert parse_record(json.dumps(body).encode(), Heartbeat, name="hb").rate == 12.5


def test_missing_records_read_as_none(tmp_path) -> None:
    store = LocalStore(tmp_path)
    for key, model in [(LEASE_KEY, LeaseRecord), (ASSIGNMENT_KEY, Assignment),
                       (FINISHED_KEY, Finished), (heartbeat_key("w"), Heartbeat)]:
        assert read_record(store, key, model) is None


class LostReply(LocalStore):
    """Writes land, but the first conditional write's reply is lost."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.lose = 1

    def put(self, key, data, *, if_generation=None):
        gen = super().put(key, data, if_generation=if_generation)
        if self.lose and if_generation is not None:
            self.lose -= 1
            raise StoreError("connection reset (the write landed)")
        return gen


def test_landed_tells_our_write_from_anothers(tmp_path) -> None:
    store = LostReply(tmp_path)
    ours = stamp(Head.model_validate(VALID[Head]))
    with pytest.raises(StoreError):
        write_head(store, ours, if_generation=0)
    # The retry of the same write now fails its precondition: it landed the first time.
    assert landed(store, head_key(4), ours, Head) == store.stat(head_key(4)).generation
    theirs = stamp(Head.model_validate(VALID[Head]))
    assert theirs.nonce != ours.nonce
    assert landed(store, head_key(4), theirs, Head) is None


def test_a_heartbeats_live_numbers_are_bounded_and_checked() -> None:
    """Issue 17: heartbeats carry each hosted island's numbers for status. Older heartbeats
    (none) read as empty; every number is checked like any other, and their count capped."""
    from islandsync.bucket.records import MAX_LIVE_ISLANDS

    def beat(live: object) -> bytes:
        return json.dumps({"worker": "w-1", "live": live}).encode()

    good = parse_record(beat({"3": {"generation": 7, "evals": 70, "best": -1.5}}), Heartbeat,
                        name="hb")
    assert good.live[3].generation == 7 and good.live[3].best == -1.5
    assert parse_record(b'{"worker": "w-1"}', Heartbeat, name="hb").live == {}
    for bad in ({"-1": {"generation": 1}}, {"x": {}}, {"0": {"generation": "7"}},
                {"0": {"evals": 2 ** 64}}, {"0": []},
                {str(i): {} for i in range(MAX_LIVE_ISLANDS + 1)}):
        with pytest.raises(CheckpointError, match="hb"):
            parse_record(beat(bad), Heartbeat, name="hb")
    text = beat({"0": {"best": "BEST"}}).replace(b'"BEST"', b"Infinity")
    with pytest.raises(CheckpointError, match="hb"):
        parse_record(text, Heartbeat, name="hb")
    # The largest heartbeat a worker writes fits a record with room to spare.
    full = {i: {"generation": 2 ** 40, "evals": 2 ** 50, "best": -1.2345678901234567e-300}
            for i in range(MAX_LIVE_ISLANDS)}
    body = Heartbeat(worker="w-1", islands=list(range(MAX_LIVE_ISLANDS)),
                     live=full).model_dump_json().encode()
    assert len(body) < MAX_RECORD_BYTES // 2
