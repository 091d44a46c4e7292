"""The fencing probe: refuses a store that ignores preconditions, passes the real ones
(LocalStore, GCSStore on fake-gcs-server, S3Store on moto), and cleans up after itself."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from islandsync.errors import ConfigError, StoreError
from islandsync.store import BlobStore, LocalStore, open_store
from islandsync.store.base import Blob, BlobInfo, Version
from islandsync.store.counting import CountingStore
from islandsync.store.probe import PROBE_PREFIX, check_fencing


class Lax(BlobStore):
    """A LocalStore behind a server that ignores some of what it is asked, as an
    S3-compatible server without conditional writes would."""

    def __init__(self, inner: BlobStore, ignores: str) -> None:
        self.inner, self.ignores, self.url = inner, ignores, inner.url

    def _condition(self, what: str, if_generation: Version | None) -> Version | None:
        if if_generation is None:
            return None
        absent = if_generation == 0
        if (what == "create" and absent) or (what == "swap" and not absent) or \
                what == "delete":
            return None  # dropped on the floor
        return if_generation

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        if self.ignores == "range":
            return self.inner.get(key)
        return self.inner.get(key, start=start, end=end)

    def put(self, key: str, data: bytes, *, if_generation: Version | None = None) -> Version:
        if self.ignores == "version":  # one token for every write: a CAS cannot tell
            info = self.inner.stat(key)
            if if_generation == "v" and info is not None:
                if_generation = info.generation
            self.inner.put(key, data, if_generation=if_generation)
            return "v"
        what = "create" if if_generation == 0 else "swap"
        cond = self._condition(what, if_generation) if self.ignores == what else if_generation
        return self.inner.put(key, data, if_generation=cond)

    def stat(self, key: str) -> BlobInfo | None:
        return self.inner.stat(key)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        return self.inner.list(prefix)

    def delete(self, key: str, *, if_generation: Version | None = None) -> None:
        cond = None if self.ignores == "delete" else if_generation
        self.inner.delete(key, if_generation=cond)


@pytest.mark.parametrize(("ignores", "message"), [
    ("create", "accepted a create-only write over an existing object"),
    ("swap", "accepted a compare-and-swap on a stale version"),
    ("delete", "deleted an object on a stale version"),
    ("range", r"returned 4096 bytes for the ranged read \[100, 164\)"),
    ("version", "returned the same version for a write of different bytes"),
])
def test_a_store_that_ignores_preconditions_is_refused(tmp_path: Path, ignores: str,
                                                       message: str) -> None:
    inner = LocalStore(tmp_path / "run")
    with pytest.raises(ConfigError, match=message) as info:
        check_fencing(Lax(inner, ignores))
    assert "islandsync cannot fence on it" in str(info.value)
    assert str(tmp_path / "run") in str(info.value)
    assert inner.list() == []  # cleaned up, also after a refusal


def test_an_outage_is_not_a_verdict(tmp_path: Path) -> None:
    class Down(Lax):
        def put(self, key: str, data: bytes, *, if_generation: Version | None = None) -> Version:
            raise StoreError("bucket unreachable")

    with pytest.raises(StoreError, match="unreachable") as info:
        check_fencing(Down(LocalStore(tmp_path / "run"), "nothing"))
    assert not isinstance(info.value, ConfigError)


def _assert_passes(store: BlobStore) -> None:
    before = [i.key for i in store.list()]
    check_fencing(store)
    after = [i.key for i in store.list()]
    assert after == before
    assert not [k for k in after if k.startswith(PROBE_PREFIX)]


def test_local_store_passes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "run")
    store.put("run.json", b"{}")  # a live run's records are left alone
    _assert_passes(store)


@pytest.mark.gcs
def test_gcs_passes_with_a_note_on_deletes(gcs_url: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="islandsync")
    _assert_passes(open_store(gcs_url))
    assert "ignored a conditional delete" in caplog.text  # fake-gcs-server does not enforce it


@pytest.mark.s3
def test_s3_passes(s3_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="islandsync")
    _assert_passes(open_store(s3_url))
    assert caplog.text == ""


@pytest.mark.s3
def test_s3_without_conditional_deletes_passes_with_a_warning(
        s3_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="islandsync")
    _assert_passes(CountingStore(open_store(s3_url, conditional_delete=False)))
    assert "does not enforce conditional deletes" in caplog.text
