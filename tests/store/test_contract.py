"""One contract suite for every BlobStore: LocalStore, GCSStore on fake-gcs-server and S3Store on
moto. Versions are compared only for equality, as the contract promises; only stores whose
versions are integers (LocalStore, GCSStore) are also held to their order."""

from __future__ import annotations

import os
import threading

import pytest

from islandsync.errors import (
    ConfigError,
    IslandSyncError,
    NotFound,
    PreconditionFailed,
    StoreError,
)
from islandsync.store import SCHEMES, BlobStore, LocalStore, open_store
from islandsync.store.base import ABSENT, Version

from ..conftest import STORE_KINDS, store_kind_url
from .race import cas_increments, race_rounds


def is_gcs(store: BlobStore) -> bool:
    return store.url.startswith("gs://")


def assert_new_version(old: Version, new: Version) -> None:
    """``new`` is another version than ``old``; integer versions (LocalStore, GCS
    generations) must also have grown, as those stores promise."""
    assert new != old
    assert new != ABSENT
    if isinstance(old, int) and isinstance(new, int):
        assert new > old


def test_every_store_scheme_is_a_store_kind_of_the_suites() -> None:
    # A scheme registered without a kind in STORE_KINDS would run in no suite at all.
    assert {entry[1] for entry in STORE_KINDS.values() if entry} == set(SCHEMES)


@pytest.fixture
def azure_lookalike_url() -> str:
    return "file:///not-azure"


def test_an_unknown_store_kind_fails_loudly(tmp_path, request: pytest.FixtureRequest,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind added to a suite's list but not to STORE_KINDS, or one whose fixture gives
    another scheme's URL, raises: it never quietly runs on fake GCS (issue 19)."""
    with pytest.raises(LookupError, match="'azure' is not in tests/conftest.py STORE_KINDS"):
        store_kind_url("azure", tmp_path, request)
    monkeypatch.setitem(STORE_KINDS, "azure", ("azure_lookalike_url", "az"))
    with pytest.raises(LookupError, match=r"gave file:///not-azure, not a az:// URL"):
        store_kind_url("azure", tmp_path, request)


def test_errors_share_one_root() -> None:
    for err in (NotFound, PreconditionFailed, StoreError, ConfigError):
        assert issubclass(err, IslandSyncError)


def test_missing_key(store: BlobStore) -> None:
    with pytest.raises(NotFound):
        store.get("islands/0/HEAD.json")
    with pytest.raises(NotFound):
        store.get("islands/0/HEAD.json", start=0, end=4)
    assert store.stat("islands/0/HEAD.json") is None
    with pytest.raises(NotFound):
        store.delete("islands/0/HEAD.json")
    assert store.list("islands/") == []


def test_create_only(store: BlobStore) -> None:
    gen = store.put("run.json", b'{"a": 1}', if_generation=ABSENT)
    assert gen != ABSENT and gen is not None
    with pytest.raises(PreconditionFailed):
        store.put("run.json", b'{"a": 2}', if_generation=0)
    blob = store.get("run.json")
    assert blob.data == b'{"a": 1}'
    assert blob.generation == gen


def test_compare_and_swap(store: BlobStore) -> None:
    g1 = store.put("lease.json", b"one", if_generation=0)
    g2 = store.put("lease.json", b"two", if_generation=g1)
    assert_new_version(g1, g2)
    with pytest.raises(PreconditionFailed):
        store.put("lease.json", b"stale", if_generation=g1)
    assert store.get("lease.json").data == b"two"
    g3 = store.put("lease.json", b"three")  # unconditional
    assert_new_version(g2, g3)
    info = store.stat("lease.json")
    assert info is not None
    assert (info.key, info.generation, info.size) == ("lease.json", g3, 5)
    assert info.updated.tzinfo is not None


def test_new_version_across_delete(store: BlobStore) -> None:
    """Different bytes after a delete and re-create get a version the key never had, so a
    CAS on the old one fails."""
    g1 = store.put("k", b"x")
    store.delete("k")
    assert store.stat("k") is None
    g2 = store.put("k", b"y", if_generation=ABSENT)
    assert_new_version(g1, g2)
    with pytest.raises(PreconditionFailed):
        store.put("k", b"z", if_generation=g1)


def test_cas_on_missing_key_fails(store: BlobStore) -> None:
    g1 = store.put("k", b"x")
    store.delete("k")
    with pytest.raises(PreconditionFailed):
        store.put("k", b"y", if_generation=g1)
    assert store.stat("k") is None


def test_versions_agree_across_calls(store: BlobStore) -> None:
    """put, get, stat and list report one blob's version as the same (equal) token."""
    gen = store.put("islands/0/HEAD.json", b"head", if_generation=ABSENT)
    assert store.get("islands/0/HEAD.json").generation == gen
    assert store.get("islands/0/HEAD.json", start=1, end=3).generation == gen
    assert store.stat("islands/0/HEAD.json").generation == gen
    assert [i.generation for i in store.list("islands/")] == [gen]


def test_ranged_reads(store: BlobStore) -> None:
    data = bytes(range(256)) * 4
    gen = store.put("islands/1/10.isz", data)
    cases = [(None, None), (0, 16), (16, 48), (1000, 1024), (1000, 5000), (5, None), (None, 7)]
    for start, end in cases:
        blob = store.get("islands/1/10.isz", start=start, end=end)
        assert blob.data == data[start:end], (start, end)
        assert blob.generation == gen
    assert store.get("islands/1/10.isz", start=2000).data == b""
    assert store.get("islands/1/10.isz", start=30, end=30).data == b""
    with pytest.raises(ConfigError):
        store.get("islands/1/10.isz", start=-1)


def test_listing(store: BlobStore) -> None:
    keys = ["islands/1/HEAD.json", "islands/1/20.isz", "islands/10/HEAD.json",
            "islands/2/HEAD.json", "workers/w1.json", "run.json"]
    for k in keys:
        store.put(k, k.encode())
    assert [i.key for i in store.list("islands/")] == sorted(k for k in keys if k.startswith("islands/"))
    assert [i.key for i in store.list("islands/1")] == [
        "islands/1/20.isz", "islands/1/HEAD.json", "islands/10/HEAD.json"]
    assert [i.key for i in store.list("islands/1/")] == ["islands/1/20.isz", "islands/1/HEAD.json"]
    assert [i.key for i in store.list()] == sorted(keys)
    assert store.list("nothing/") == []
    sizes = {i.key: i.size for i in store.list("workers/")}
    assert sizes == {"workers/w1.json": len(b"workers/w1.json")}


def test_delete(store: BlobStore, request: pytest.FixtureRequest) -> None:
    gen = store.put("workers/w1.json", b"hb")
    store.delete("workers/w1.json", if_generation=gen)
    assert store.stat("workers/w1.json") is None
    with pytest.raises(NotFound):
        store.delete("workers/w1.json")
    gen = store.put("workers/w2.json", b"hb")
    store.delete("workers/w2.json")
    assert store.list("workers/") == []


def test_conditional_delete_mismatch(store: BlobStore, request: pytest.FixtureRequest) -> None:
    if is_gcs(store):
        request.applymarker(pytest.mark.xfail(
            reason="fake-gcs-server does not enforce ifGenerationMatch on deletes "
                   "(real GCS does; GCSStore sends it)", strict=True))
    stale = store.put("workers/w3.json", b"hb")
    store.put("workers/w3.json", b"hb2")
    with pytest.raises(PreconditionFailed):
        store.delete("workers/w3.json", if_generation=stale)
    assert store.get("workers/w3.json").data == b"hb2"


def test_large_round_trip(store: BlobStore) -> None:
    data = os.urandom(20 * 1024 * 1024)
    gen = store.put("islands/0/1.isz", data, if_generation=0)
    blob = store.get("islands/0/1.isz")
    assert blob.generation == gen
    assert blob.data == data
    tail = store.get("islands/0/1.isz", start=len(data) - 100, end=len(data) + 100)
    assert tail.data == data[-100:]


@pytest.mark.parametrize("key", ["with space/a b.json", "ünïcødé/島/🐟.isz", "a/b%20c?d#e.json"])
def test_unusual_keys(store: BlobStore, key: str) -> None:
    store.put(key, b"payload", if_generation=0)
    assert store.get(key).data == b"payload"
    assert [i.key for i in store.list(key.split("/")[0] + "/")] == [key]


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/./b", "../x", "a\x00b", "a/\n"])
def test_bad_keys(store: BlobStore, key: str) -> None:
    with pytest.raises(ConfigError, match="store key"):
        store.put(key, b"x")


def test_threads_race_one_store(store: BlobStore) -> None:
    winners: list[int] = []
    # Every racer writes bytes the key never held: with equal bytes an S3 ETag would not
    # change, and a second CAS on it would rightly succeed (see BlobStore's contract).
    gen = store.put("lease.json", b"start", if_generation=0)
    barrier = threading.Barrier(6)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            store.put("lease.json", str(i).encode(), if_generation=gen)
            winners.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    assert store.get("lease.json").data == str(winners[0]).encode()


def test_processes_race_cas(store_url: str) -> None:
    """8 processes race a CAS on one key, round after round: exactly one wins each round."""
    rounds = 12
    results = race_rounds(store_url, "lease.json", processes=8, rounds=rounds)
    for r in range(rounds):
        winners = [pid for (rnd, pid, won) in results if rnd == r and won]
        assert len(winners) == 1, f"round {r}: winners {winners}"
    with open_store(store_url) as s:
        last = [pid for (rnd, pid, won) in results if rnd == rounds - 1 and won][0]
        assert s.get("lease.json").data == f"{rounds - 1}:{last}".encode()


def test_processes_cas_counter(store_url: str) -> None:
    """Read-modify-write with CAS loses no increment across processes."""
    procs, each = 4, 8
    cas_increments(store_url, "counter", processes=procs, increments=each)
    with open_store(store_url) as s:
        assert int(s.get("counter").data) == procs * each


def test_open_store_errors(tmp_path, fake_gcs: str) -> None:
    with pytest.raises(ConfigError, match="ftp://bucket/x"):
        open_store("ftp://bucket/x")
    with pytest.raises(ConfigError, match="no bucket"):
        open_store("s3:///run")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(ConfigError, match="not writable") as info:
        open_store(str(not_a_dir / "run"))
    assert str(not_a_dir / "run") in str(info.value)
    with pytest.raises(ConfigError, match="gs://no-such-bucket/run"):
        open_store("gs://no-such-bucket/run")
    with pytest.raises(ConfigError, match="no bucket"):
        open_store("gs:///run")
    with pytest.raises(ConfigError):
        open_store("")


def test_file_url_and_plain_path_agree(tmp_path) -> None:
    with open_store(f"file://{tmp_path}/run") as a:
        a.put("run.json", b"spec", if_generation=0)
    with open_store(str(tmp_path / "run")) as b:
        assert b.get("run.json").data == b"spec"


@pytest.mark.parametrize("url", ["plain", "file"])
def test_a_local_store_opened_not_to_create_writes_nothing_until_a_write(tmp_path,
                                                                         url: str) -> None:
    """What `islandsync status` on a mistyped path relies on (issue 17): reading creates no
    folder; the first write creates what it needs."""
    root = tmp_path / "nosuchrun"
    store = open_store(str(root) if url == "plain" else f"file://{root}", create=False)
    assert store.stat("run.json") is None and store.list("") == []
    with pytest.raises(NotFound):
        store.get("run.json")
    assert not root.exists()
    store.put("run.json", b"spec", if_generation=0)
    assert store.get("run.json").data == b"spec" and (root / ".islandsync").is_dir()


# -- issue 19: a store is one file plus one scheme entry -------------------------------------

#: Where the throwaway ``dir://`` scheme keeps its buckets (set by the test using it).
DIR_ROOT: list[str] = []


class DirStore(LocalStore):
    """A throwaway bucket kind: ``dir://bucket/prefix`` as a directory; records what it was
    given as credentials."""

    def __init__(self, bucket: str, prefix: str = "", *, credentials: object = None) -> None:
        self.credentials = credentials
        super().__init__(os.path.join(DIR_ROOT[0], bucket, prefix.strip("/")),
                         url=f"dir://{bucket}/{prefix.strip('/')}")


def find_dir_credentials(explicit: object, *, platform: str) -> tuple[object, str]:
    return f"found({explicit}, {platform})", "the test's finder"


def test_a_scheme_registered_at_run_time_opens_with_its_credentials(tmp_path) -> None:
    from islandsync.env.opening import open_run
    from islandsync.store import Scheme, register_scheme, unregister_scheme

    DIR_ROOT[:] = [str(tmp_path)]
    with pytest.raises(ConfigError, match=r"unknown scheme 'dir' \(expected gs://, s3://"):
        open_store("dir://b/run")
    register_scheme(Scheme("dir", f"{__name__}:DirStore", "a directory per bucket",
                           "anything", find_credentials=f"{__name__}:find_dir_credentials"))
    try:
        store = open_store("dir://b/run", credentials="given")
        assert isinstance(store, DirStore) and store.credentials == "given"
        store.put("k", b"v")
        assert store.get("k").data == b"v" and (tmp_path / "b" / "run" / "k").exists()
        # open_run finds its credentials through the scheme's finder, for this platform
        store, _ = open_run("dir://b/run", credentials="key.json", platform="local")
        assert store.credentials == "found(key.json, local)"
        with pytest.raises(ConfigError, match="no bucket name"):
            open_store("dir:///run")
        with pytest.raises(ConfigError, match="already registered"):
            register_scheme(Scheme("dir", f"{__name__}:DirStore", "again", "anything"))
    finally:
        unregister_scheme("dir")
