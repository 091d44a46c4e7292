"""GCSStore specifics on fake-gcs-server: the nonce rule for ambiguous 412s, credentials."""

from __future__ import annotations

import json

import pytest
import requests

from islandsync.errors import ConfigError, PreconditionFailed, StoreError
from islandsync.store import open_store
from islandsync.store.gcs import NONCE_FIELD, GCSStore
from islandsync.testing.processes import free_port

pytestmark = pytest.mark.gcs


def _lose_first_response(store: GCSStore, method: str = "POST") -> list[str]:
    """Make the first upload request reach the server but lose its response, as a dropped
    connection would; the library's own retry then sends it again."""
    transport = store._client._http
    real = transport.request
    seen: list[str] = []

    def request(*args, **kwargs):  # type: ignore[no-untyped-def]
        response = real(*args, **kwargs)
        verb = kwargs.get("method", args[0] if args else None)
        url = kwargs.get("url", args[1] if len(args) > 1 else "")
        if verb == method and "upload" in url:
            seen.append(url)
            if len(seen) == 1:
                raise requests.exceptions.ConnectionError("response lost (injected)")
        return response

    transport.request = request
    return seen


def test_retried_create_that_landed_is_a_success(gcs_url: str) -> None:
    store = open_store(gcs_url)
    attempts = _lose_first_response(store)
    gen = store.put("lease.json", b"mine", if_generation=0)
    assert len(attempts) == 2, "the library should have retried the conditional write"
    blob = store.get("lease.json")
    assert (blob.data, blob.generation) == (b"mine", gen)
    info = store._bucket().get_blob(store._name("lease.json"))
    assert NONCE_FIELD in (info.metadata or {})


def test_retried_cas_that_landed_is_a_success(gcs_url: str) -> None:
    store = open_store(gcs_url)
    g1 = store.put("HEAD.json", b"v1", if_generation=0)
    attempts = _lose_first_response(store)
    g2 = store.put("HEAD.json", b"v2", if_generation=g1)
    assert len(attempts) == 2
    assert g2 > g1 and store.get("HEAD.json").data == b"v2"


def test_real_conflict_still_fails(gcs_url: str) -> None:
    a, b = open_store(gcs_url), open_store(gcs_url)
    g1 = a.put("HEAD.json", b"v1", if_generation=0)
    b.put("HEAD.json", b"theirs", if_generation=g1)
    with pytest.raises(PreconditionFailed):
        a.put("HEAD.json", b"mine", if_generation=g1)
    assert a.get("HEAD.json").data == b"theirs"


def test_unconditional_write_is_not_retried(gcs_url: str) -> None:
    store = open_store(gcs_url)
    attempts = _lose_first_response(store)
    with pytest.raises(StoreError, match="response lost"):
        store.put("workers/w1.json", b"hb")
    assert len(attempts) == 1


def test_bucket_root_without_prefix(fake_gcs: str) -> None:
    from tests.conftest import TEST_BUCKET

    store = open_store(f"gs://{TEST_BUCKET}")
    store.put("root-level-key", b"x")
    assert "root-level-key" in [i.key for i in store.list("root-level")]
    store.delete("root-level-key")


SECRET = "-----BEGIN PRIVATE KEY-----\nSECRET-MARKER-5f2a\n-----END PRIVATE KEY-----\n"


def _all_text(err: BaseException) -> str:
    parts = []
    while err is not None:
        parts.append(f"{type(err).__name__}: {err} {err.args!r}")
        err = err.__cause__ or err.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("form", ["content", "path", "bad-json"])
def test_bad_credentials_never_echo_the_secret(tmp_path, fake_gcs: str, form: str) -> None:
    info = {"type": "service_account", "private_key": SECRET, "client_email": "x@y"}
    text = json.dumps(info)
    if form == "bad-json":
        text = text[:-1]
    arg = text
    if form == "path":
        path = tmp_path / "sa.json"
        path.write_text(text)
        arg = str(path)
    with pytest.raises(ConfigError) as caught:
        open_store("gs://islandsync-test/run", credentials=arg)
    assert "SECRET-MARKER" not in _all_text(caught.value)


def test_missing_credentials_file_is_named(tmp_path, fake_gcs: str) -> None:
    with pytest.raises(ConfigError, match="nope.json"):
        open_store("gs://islandsync-test/run", credentials=str(tmp_path / "nope.json"))


def test_unreachable_server_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # a port nobody listens on
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    store = GCSStore("b", "run", check_bucket=False, retry_deadline=0.5, timeout=1)
    with pytest.raises(StoreError):
        store.get("run.json")
    with pytest.raises(StoreError):
        store.put("run.json", b"x", if_generation=0)
    with pytest.raises(ConfigError, match="gs://b/run"):
        GCSStore("b", "run", retry_deadline=0.5, timeout=1)


# -- credentials: nothing echoed, external accounts refused on every path -----------------

EXTERNAL = {"type": "external_account", "audience": "SECRET-MARKER-5f2a",
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"executable": {"command": "/usr/bin/touch {ran}"}}}


@pytest.fixture
def no_default(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """No emulator and no credentials anywhere but where a test puts them."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    return tmp_path


@pytest.mark.parametrize("given", ["pem", "pem-bytes", "not-utf8"])
def test_a_pasted_secret_that_is_not_json_is_never_echoed(given: str) -> None:
    """A credential string that does not start with "{" is taken for a path: the error must
    not quote it (it used to: "cannot read credentials file '-----BEGIN PRIVATE KEY...'")."""
    arg = {"pem": SECRET, "pem-bytes": SECRET.encode(),
           "not-utf8": b"\xff" + SECRET.encode()}[given]
    with pytest.raises(ConfigError) as caught:
        GCSStore("b", "run", credentials=arg, check_bucket=False)
    assert "SECRET-MARKER" not in _all_text(caught.value)
    assert "PRIVATE KEY" not in _all_text(caught.value)


def _external(tmp_path) -> tuple[dict, object]:
    ran = tmp_path / "the-command-ran"
    info = json.loads(json.dumps(EXTERNAL).replace("{ran}", str(ran)))
    return info, ran


@pytest.mark.parametrize("form", ["dict", "content", "path"])
def test_an_external_account_given_as_credentials_is_refused(tmp_path, no_default,
                                                             form: str) -> None:
    info, ran = _external(tmp_path)
    path = tmp_path / "ext.json"
    path.write_text(json.dumps(info))
    arg = {"dict": info, "content": json.dumps(info), "path": str(path)}[form]
    with pytest.raises(ConfigError, match="refused: unsupported credential type") as caught:
        GCSStore("b", "run", credentials=arg, check_bucket=False)
    assert "SECRET-MARKER" not in _all_text(caught.value) and not ran.exists()


@pytest.mark.parametrize("where", ["GOOGLE_APPLICATION_CREDENTIALS", "gcloud ADC file"])
def test_default_credentials_refuse_an_external_account(
        tmp_path, no_default, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """google.auth.default would build an external account (a command as its token source)
    from the file; the store reads that file first and refuses it."""
    info, ran = _external(tmp_path)
    if where == "gcloud ADC file":
        (tmp_path / "gcloud").mkdir()
        path = tmp_path / "gcloud" / "application_default_credentials.json"
    else:
        path = tmp_path / "ext.json"
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="Google default credentials refused") as caught:
        GCSStore("b", "run", check_bucket=False)
    assert "SECRET-MARKER" not in _all_text(caught.value) and not ran.exists()


def test_default_credentials_named_by_a_pasted_secret_are_not_echoed(
        no_default, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", SECRET)
    with pytest.raises(ConfigError, match="not a path") as caught:
        GCSStore("b", "run", check_bucket=False)
    assert "SECRET-MARKER" not in _all_text(caught.value)
