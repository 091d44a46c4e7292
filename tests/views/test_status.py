"""``islandsync status`` on a bucket full of garbage: no exception, unreadable records shown as
such, and no bucket string reaches the terminal with a control or bidi character in it."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest

from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    head_key,
    heartbeat_key,
)
from islandsync.bucket.run import init_run
from islandsync.views.status import collect_status, format_status, printable
from islandsync.store import LocalStore
from islandsync.testing.cluster import cluster_spec

ESC = "\x1b"
# JSON-escaped, so the records parse and the strings inside them reach the status as they are
NASTY = "\\u001b[2J\\u001b]0;owned\\u0007\\u202eevil\\u200b\\u0085\\u2028"

GARBAGE: dict[str, bytes] = {
    heartbeat_key("rate-text"): b'{"state": "running", "rate": "fast"}',
    heartbeat_key("rate-huge"): b'{"state": "running", "rate": 18446744073709551616}',
    heartbeat_key("brackets"): b"[" * 200_000,
    heartbeat_key("binary"): b"\xff\xfe\x1b[2J\x00",
    heartbeat_key("raw-escape"): b'{"state": "running", "platform": "\x1b[31mred"}',
    heartbeat_key("nasty"): ('{"state": "running", "rate": 3, "platform": "%s", "device": "%s",'
                             ' "islands": %s}' % (NASTY, NASTY, list(range(5000)))).encode(),
    head_key(0): b'{"island": 0, "checkpoint": "../x", "generation": 3}',
    head_key(1): b'{"island": 1, "generation": Infinity}',
    head_key(2): b"[" * 200_000,
    LEASE_KEY: b'{"holder": "c", "term": "1", "lease_s": 3}',
    FINISHED_KEY: ('{"reason": "%s"}' % NASTY).encode(),
    ELITE_HEAD_KEY: b'{"epoch": 1, "key": "../x", "term": 1, "size": -1}',
    ASSIGNMENT_KEY: b'{"term": 1, "epoch": 1, "leader": "c", "islands": {"0": "../w"}}',
}


def _hidden(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
            and c != "\n"]


@pytest.fixture
def garbage(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec(islands=4))
    for key, data in GARBAGE.items():
        store.put(key, data)
    return store


def test_status_of_a_bucket_full_of_garbage(garbage: LocalStore) -> None:
    st = collect_status(garbage)
    text = format_status(st)
    assert ESC not in text and "\u202e" not in text and not _hidden(text), _hidden(text)
    lines = text.splitlines()
    for island in (0, 1, 2):
        assert any(line.lstrip().startswith(f"{island} ") and "not a valid Head" in line
                   for line in lines), (island, text)
    assert "leader: lease unreadable" in text
    assert "elite unreadable" in text and "assignment unreadable" in text
    for worker in ("rate-text", "rate-huge", "brackets", "binary", "raw-escape"):
        assert any(line.split()[:1] == [worker] and "unreadable heartbeat" in line
                   for line in lines), (worker, text)
    nasty = next(line for line in lines if line.split()[:1] == ["nasty"])
    assert "?[2J" in nasty and "islands 0-4999" in nasty and len(nasty) < 400, nasty
    # The JSON form escapes what it holds: nothing raw reaches the terminal either.
    as_json = json.dumps(st, indent=2, default=str)
    assert ESC not in as_json and "\u202e" not in as_json


def test_format_status_shows_whatever_values_it_gets() -> None:
    """The JSON form is an interface: a status dict from elsewhere, with values of the wrong
    types, is shown rather than crashing the formatter."""
    st = {
        "run": {"url": "gs://b/r", "problem": "p", "genome": {}, "algorithm": "ga", "pop": 4,
                "islands": 1},
        "finished": None, "leader": {"holder": "c", "term": 1, "age_s": None},
        "evaluations": "many", "best": None,
        "islands": [{"id": 0, "generation": "g", "best": "b\x1b", "owner": None,
                     "head_age_s": "old", "evals": 0, "released": False}],
        "workers": [{"id": "w", "platform": None, "device": None, "rate": "fast",
                     "islands": [], "age_s": None, "alive": True, "state": "running"}],
        "elite": None, "assignment": None,
    }
    text = format_status(st)
    assert "fast/s" in text and "b?" in text and ESC not in text


@pytest.mark.parametrize("raw, shown", [
    ("plain", "plain"), ("tab\there", "tab?here"), ("\x1b[2J", "?[2J"), ("a\x9bb", "a?b"),
    ("\u202eevil", "?evil"), ("zero\u200bwidth", "zero?width"), ("line\u2028sep", "line?sep"),
    ("héllo wörld ✓", "héllo wörld ✓"),
])
def test_printable(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_status_reads_each_head_once_and_lists_instead_of_stat(tmp_path: Path) -> None:
    """One listing of islands/ gives every HEAD's age; each HEAD is read once (concurrently),
    never stat'ed: a status of K islands is not 2 K sequential round trips."""
    from islandsync.bucket.records import Head, write_head
    from islandsync.store.base import Blob, BlobInfo

    class Calls(LocalStore):
        def __init__(self, root: Path) -> None:
            super().__init__(root)
            self.calls: list[tuple[str, str]] = []

        def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
            self.calls.append(("get", key))
            return super().get(key, start=start, end=end)

        def stat(self, key: str) -> BlobInfo | None:
            self.calls.append(("stat", key))
            return super().stat(key)

    store = Calls(tmp_path / "run")
    init_run(store, cluster_spec(islands=12))
    for i in range(12):
        write_head(store, Head(island=i, generation=3, evals=30, owner="w"), if_generation=0)
    store.calls.clear()
    st = collect_status(store)
    assert st["evaluations"] == 360 and all(i["head_age_s"] is not None for i in st["islands"])
    heads = [c for c in store.calls if c[1].startswith("islands/")]
    assert sorted(heads) == sorted(("get", head_key(i)) for i in range(12))


# -- issue 17: live numbers from heartbeats, no Python reprs ------------------------------


def test_status_shows_live_numbers_between_checkpoints(tmp_path: Path) -> None:
    """25 s into a run, status said generation 0 and no best on every island: it read only
    the HEADs, which move once a checkpoint (every 30 s by default). Heartbeats carry each
    hosted island's numbers every few seconds."""
    import threading

    from islandsync.bucket.records import read_head
    from islandsync.testing import wait_for
    from islandsync.worker.worker import Worker

    store = LocalStore(tmp_path / "run")
    # No checkpoint within the test: whatever status shows past generation 0 is live.
    init_run(store, cluster_spec(islands=3).model_copy(update={"checkpoint_interval_s": 3600.0}))
    worker = Worker(store, solo=True, progress=False, device="cpu", check_id=False,
                    worker_id="w-live")
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: all(i["generation"] > 0 for i in collect_status(store)["islands"]),
                 60, "every island's generation moving in status")
        st = collect_status(store)
        assert all(read_head(store, i)[0].generation == 0 for i in range(3))  # no checkpoint
        assert st["evaluations"] > 0 and st["best"] is not None
        assert {i["source"] for i in st["islands"]} == {"heartbeat"}
        assert {i["owner"] for i in st["islands"]} == {"w-live"}
        assert all(i["evals"] > 0 and i["best"] is not None for i in st["islands"])
        text = format_status(st)
        assert " live" in text and f"{st['islands'][0]['generation']:,}" in text
        # The worker's device and the genomes' dtype it picked ("auto": float64 on a CPU).
        assert cluster_spec().dtype == "auto"
        assert [w["device"] for w in st["workers"]] == ["cpu float64"]
        assert "cpu float64" in text
    finally:
        worker.request_stop("test over")
        thread.join(60)


def _beat(store: LocalStore, worker: str, **fields) -> None:
    from islandsync.bucket.records import Heartbeat, write_record

    write_record(store, heartbeat_key(worker), Heartbeat(worker=worker, **fields))


def test_status_takes_only_live_workers_numbers_and_only_when_ahead(tmp_path: Path) -> None:
    from islandsync.bucket.records import Head, write_head

    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec(islands=4))
    for i in range(4):
        write_head(store, Head(island=i, generation=20, evals=200, best=5.0, owner="w-old"),
                   if_generation=0)
    _beat(store, "w-now", islands=[0, 1], live={0: {"generation": 50, "evals": 500,
                                                      "best": 1.0},
                                                  1: {"generation": 10, "evals": 100,
                                                      "best": 9.0}})
    # An exited worker's numbers are of a lineage another worker may have resumed from
    # an older checkpoint: not shown.
    _beat(store, "w-gone", state="exited", islands=[2],
          live={2: {"generation": 99, "evals": 990, "best": 0.5}})
    # A heartbeat of an older islandsync (no live numbers) reads as it always did.
    store.put(heartbeat_key("w-older"), b'{"state": "running", "islands": [3], "rate": 7}')
    st = collect_status(store)
    rows = {i["id"]: i for i in st["islands"]}
    assert (rows[0]["generation"], rows[0]["source"], rows[0]["owner"]) == (50, "heartbeat",
                                                                            "w-now")
    assert (rows[1]["generation"], rows[1]["source"]) == (20, "checkpoint")  # HEAD is ahead
    assert (rows[2]["generation"], rows[2]["source"]) == (20, "checkpoint")
    assert (rows[3]["generation"], rows[3]["source"]) == (20, "checkpoint")
    assert st["evaluations"] == 500 + 3 * 200 and st["best"] == 1.0
    assert {w["id"] for w in st["workers"]} == {"w-now", "w-gone", "w-older"}


def test_human_status_has_no_python_reprs(tmp_path: Path) -> None:
    from islandsync.demo import _progress_line

    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec(islands=4))
    _beat(store, "w1", islands=[0, 1, 2], rate=10.0)
    _beat(store, "w2", islands=[3], rate=10.0)
    text = format_status(collect_status(store))
    assert "real dim 10 in [-5.12, 5.12]" in text and "islands 0-2" in text
    line, _ = _progress_line(store, 5.0)
    assert "islands per worker w1 3, w2 1" in line
    for shown in (text, line):
        assert "{'" not in shown and "['" not in shown and "'kind'" not in shown, shown


@pytest.mark.parametrize("ids, shown", [
    ([], "none"), ([3], "3"), ([0, 1, 2, 5, 7, 8], "0-2, 5, 7-8"),
    (list(range(0, 100, 2)), ", ".join(str(i) for i in range(0, 64, 2)) + ", ... 18 more"),
])
def test_islands_text(ids: list[int], shown: str) -> None:
    from islandsync.views.status import islands_text

    assert islands_text(ids) == shown


def test_genome_text_of_per_gene_bounds_and_integer_genes() -> None:
    from islandsync.views.status import genome_text

    text = genome_text({"kind": "real", "dim": 3, "lower": [-5.0, -1.0, 0.0], "upper": 5.0,
                        "integer": [0, "1:3"]})
    assert text == "real dim 3 in [-5..0, 5], integer genes 0, 1:3"
