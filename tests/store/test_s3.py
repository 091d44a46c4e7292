"""S3Store specifics on a moto S3 server: the retry rule, lost replies, ETags as versions,
listing, credentials and what never leaks.

Faults are injected at botocore's ``before-send`` hook, below the store's retry rule: a
handler either answers in the server's place (a 409, a 503) or sends the request for real and
then loses the reply, as a dropped connection would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError

from islandsync.bucket.records import Heartbeat, landed, read_record, stamp, write_record
from islandsync.errors import (
    ConfigError,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    Refused,
    StoreError,
    maybe_applied,
)
from islandsync.store import open_store
from islandsync.store.base import ABSENT
from islandsync.store.s3 import S3Store
from islandsync.store.s3_credentials import resolve_s3_settings

pytestmark = pytest.mark.s3

MARKER = "SECRET-MARKER-s3-7c1e"


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any):  # type: ignore[no-untyped-def]
        yield self._body

    def read(self, *_: Any) -> bytes:
        body, self._body = self._body, b""
        return body

    def close(self) -> None:
        pass


def _error(status: int, code: str) -> AWSResponse:
    body = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
            f"<Message>injected {code}</Message></Error>").encode()
    return AWSResponse("http://injected", status, {"Content-Type": "application/xml"}, _Raw(body))


class Faults:
    """Counts the requests of one operation that reach the wire, and injects ``plan``: a list
    of actions for the first sends, each ``("answer", AWSResponse)``, ``("lose", None)``
    (send for real, then raise as if the reply was lost) or ``("land", AWSResponse)`` (send
    for real, then answer this instead); later sends pass through."""

    def __init__(self, store: S3Store, operation: str, plan: list[tuple[str, Any]]) -> None:
        self.store, self.plan, self.sent = store, list(plan), 0
        store._client.meta.events.register(f"before-send.s3.{operation}", self)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        self.sent += 1
        if not self.plan:
            return None
        action, response = self.plan.pop(0)
        if action == "answer":
            return response
        self.store._client._endpoint.http_session.send(request)  # it lands ...
        if action == "land":
            return response  # ... and a proxy answers in its place (a 503, say)
        raise ReadTimeoutError(endpoint_url=request.url)  # ... and the reply is lost


@pytest.fixture
def store(s3_url: str) -> S3Store:
    s = open_store(s3_url, backoff_s=0.001, max_backoff_s=0.01)
    assert isinstance(s, S3Store)
    return s


# -- lost replies and the retry rule -------------------------------------------------------


def test_lost_reply_on_conditional_create_is_not_retried(store: S3Store) -> None:
    """A create that landed but whose reply was lost must not be resent: the resend would get
    412 and the caller would believe it lost a race it won. The store says "unknown" and the
    record's nonce tells the caller it won."""
    record = stamp(Heartbeat(worker="w1", generations=1))
    faults = Faults(store, "PutObject", [("lose", None)])
    with pytest.raises(StoreError, match="read the key back") as info:
        write_record(store, "workers/w1.json", record, if_generation=ABSENT)
    assert not isinstance(info.value, PreconditionFailed)
    assert faults.sent == 1
    found = landed(store, "workers/w1.json", record, Heartbeat)
    assert found is not None and found == store.stat("workers/w1.json").generation


def test_lost_reply_on_conditional_swap_is_not_retried(store: S3Store) -> None:
    g1 = store.put("HEAD.json", b"v1", if_generation=ABSENT)
    faults = Faults(store, "PutObject", [("lose", None)])
    with pytest.raises(StoreError) as info:
        store.put("HEAD.json", b"v2", if_generation=g1)
    assert not isinstance(info.value, PreconditionFailed)
    assert faults.sent == 1
    assert store.get("HEAD.json").data == b"v2"  # it had landed


def test_lost_reply_on_unconditional_write_is_retried(store: S3Store) -> None:
    faults = Faults(store, "PutObject", [("lose", None)])
    gen = store.put("islands/0/1.isz", b"blob")
    assert faults.sent == 2
    assert store.get("islands/0/1.isz").generation == gen


def test_conflict_409_is_retried_for_a_conditional_write(store: S3Store) -> None:
    """409 ConditionalRequestConflict: S3 refused the write without applying it; AWS asks
    clients to retry, and the retry then decides the race."""
    faults = Faults(store, "PutObject", [("answer", _error(409, "ConditionalRequestConflict"))])
    gen = store.put("lease.json", b"mine", if_generation=ABSENT)
    assert faults.sent == 2
    assert store.get("lease.json").generation == gen


def test_throttling_is_retried_then_bounded(store: S3Store) -> None:
    store.put("k", b"data")
    faults = Faults(store, "GetObject", [("answer", _error(503, "SlowDown")),
                                         ("answer", _error(429, "TooManyRequests"))])
    assert store.get("k").data == b"data"
    assert faults.sent == 3
    always = Faults(store, "HeadObject", [("answer", _error(503, "SlowDown"))] * 100)
    with pytest.raises(StoreError, match="after 6 attempts") as info:
        store.stat("k")
    assert always.sent == 6
    assert not isinstance(info.value, NotFound)


def test_internal_error_on_a_conditional_write_is_not_retried(store: S3Store) -> None:
    faults = Faults(store, "PutObject", [("answer", _error(500, "InternalError"))])
    with pytest.raises(StoreError, match="InternalError") as info:
        store.put("lease.json", b"x", if_generation=ABSENT)
    assert not isinstance(info.value, PreconditionFailed)
    assert faults.sent == 1


@pytest.mark.parametrize("status, code", [(503, "ServiceUnavailable"), (503, "SlowDown"),
                                          (502, "BadGateway")])
def test_a_5xx_on_a_conditional_write_is_an_unknown_outcome_never_resent(
        store: S3Store, status: int, code: str) -> None:
    """N9: a 503 was taken for "refused", so a conditional write that had landed (a proxy's
    503, say) was resent, met its own 412, and its writer believed it had lost the race."""
    record = stamp(Heartbeat(worker="w1", generations=1))
    faults = Faults(store, "PutObject", [("land", _error(status, code))])
    with pytest.raises(OutcomeUnknown, match="read the key back"):
        write_record(store, "workers/w1.json", record, if_generation=ABSENT)
    assert faults.sent == 1
    assert landed(store, "workers/w1.json", record, Heartbeat) is not None


def test_failures_are_classified_by_outcome(store: S3Store) -> None:
    store.put("k", b"data")
    Faults(store, "HeadObject", [("answer", _error(403, "AccessDenied"))])
    with pytest.raises(Refused):
        store.stat("k")
    Faults(store, "PutObject", [("answer", _error(409, "ConditionalRequestConflict"))] * 9)
    with pytest.raises(Refused, match="after 6 attempts"):
        store.put("k", b"x", if_generation=store.stat("k").generation)
    assert not maybe_applied(Refused("x")) and maybe_applied(OutcomeUnknown("x"))
    assert maybe_applied(StoreError("x")) and not maybe_applied(PreconditionFailed("x"))


def test_errors_are_islandsync_errors(store: S3Store, moto_s3: str) -> None:
    with pytest.raises(NotFound):
        store.get("nope")
    with pytest.raises(NotFound):
        store.delete("nope", if_generation="0123")
    with pytest.raises(ConfigError, match="no-such-bucket.*not found"):
        open_store("s3://no-such-bucket/run")
    orphan = S3Store("no-such-bucket", "run", check_bucket=False, max_attempts=1)
    with pytest.raises(StoreError, match="NoSuchBucket") as info:
        orphan.put("k", b"x")
    assert not isinstance(info.value, NotFound)  # a missing bucket is not a missing key


# -- versions are ETags ----------------------------------------------------------------------


def test_equal_bytes_give_equal_etags_and_nonces_tell_writes_apart(store: S3Store) -> None:
    """Why every conditional record carries a nonce: rewriting equal bytes leaves the ETag
    unchanged, so a stale CAS still succeeds. Records written by write_record never repeat."""
    g1 = store.put("k", b"same")
    assert store.put("k", b"same") == g1
    store.put("k", b"same", if_generation=g1)  # an ABA nobody can see: allowed
    hb = Heartbeat(worker="w1", generations=1)
    v1 = write_record(store, "workers/w1.json", hb)
    v2 = write_record(store, "workers/w1.json", hb)
    assert v1 != v2
    with pytest.raises(PreconditionFailed):
        write_record(store, "workers/w1.json", hb, if_generation=v1)
    assert read_record(store, "workers/w1.json", Heartbeat)[1] == v2


def test_versions_are_strings_without_quotes(store: S3Store) -> None:
    gen = store.put("k", b"x")
    assert isinstance(gen, str) and '"' not in gen
    assert store.put("k", b"y", if_generation=f'"{gen}"') != gen  # quoted also accepted


def test_missing_key_with_if_match_is_a_precondition_failure(store: S3Store) -> None:
    gen = store.put("k", b"x")
    store.delete("k")
    with pytest.raises(PreconditionFailed):
        store.put("k", b"y", if_generation=gen)


# -- listing, ranges, deletes --------------------------------------------------------------


def test_listing_pages_and_relative_keys(s3_url: str) -> None:
    store = open_store(s3_url, list_page_size=2)
    keys = [f"islands/{i}/HEAD.json" for i in range(7)] + ["run.json"]
    for k in reversed(keys):
        store.put(k, k.encode())
    listed = store.list("islands/")
    assert [i.key for i in listed] == sorted(keys[:-1])
    assert all(i.size == len(i.key) for i in listed)
    assert [i.key for i in store.list()] == sorted(keys)
    other = open_store(s3_url + "-other")  # a sibling prefix is not part of this run
    other.put("run.json", b"other")
    assert [i.key for i in store.list("run")] == ["run.json"]


def test_server_ignoring_range_is_an_error(store: S3Store) -> None:
    store.put("k", b"0123456789")
    whole = AWSResponse("http://injected", 200, {"ETag": '"abc"', "Content-Length": "10"},
                        _Raw(b"0123456789"))
    Faults(store, "GetObject", [("answer", whole)])
    with pytest.raises(StoreError, match="ignored the Range"):
        store.get("k", start=2, end=4)


def test_conditional_delete_without_server_support(s3_url: str) -> None:
    """conditional_delete=False (R2): compare, then delete, with the contract's errors."""
    store = open_store(s3_url, conditional_delete=False)
    assert not store.enforces_conditional_delete
    g1 = store.put("k", b"1")
    g2 = store.put("k", b"2")
    with pytest.raises(PreconditionFailed):
        store.delete("k", if_generation=g1)
    store.delete("k", if_generation=g2)
    with pytest.raises(NotFound):
        store.delete("k", if_generation=g2)


def test_r2_endpoints_default_to_checked_deletes(moto_s3: str) -> None:
    r2 = S3Store("bucket", "p", endpoint_url="https://acct.r2.cloudflarestorage.com",
                 check_bucket=False)
    aws = S3Store("bucket", "p", endpoint_url=moto_s3, check_bucket=False)
    assert (r2.enforces_conditional_delete, aws.enforces_conditional_delete) == (False, True)


# -- credentials -----------------------------------------------------------------------------


def _secret_file(tmp_path: Path, endpoint: str, kind: str) -> Path:
    if kind == "json":
        path = tmp_path / "s3.json"
        path.write_text(json.dumps({"aws_access_key_id": f"{MARKER}-id",
                                    "aws_secret_access_key": f"{MARKER}-secret",
                                    "endpoint_url": endpoint, "region": "eu-west-1"}))
    else:
        path = tmp_path / "s3.ini"
        path.write_text(f"[default]\naws_access_key_id = {MARKER}-id\n"
                        f"aws_secret_access_key = {MARKER}-secret\nendpoint_url = {endpoint}\n")
    return path


@pytest.mark.parametrize("kind", ["json", "ini"])
def test_credentials_file(tmp_path: Path, moto_s3: str, s3_url: str, kind: str,
                          monkeypatch: pytest.MonkeyPatch,
                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # the file's endpoint must be the one used
    path = _secret_file(tmp_path, moto_s3, kind)
    # islandsync's own records at every level (botocore's DEBUG output is the library's: it
    # names the access key id in the signed request it logs, never the secret).
    caplog.set_level("DEBUG", logger="islandsync")
    store = open_store(s3_url, credentials=str(path), max_attempts=1)
    store.put("k", b"x", if_generation=ABSENT)
    assert store.endpoint_url == moto_s3
    orphan = S3Store("no-such-bucket", credentials=str(path), check_bucket=False,
                     max_attempts=1)
    with pytest.raises(StoreError) as info:
        orphan.put("k", b"x")
    shown = [repr(store), str(info.value), repr(info.value), caplog.text,
             repr(resolve_s3_settings(str(path)))]
    assert not [s for s in shown if MARKER in s]


def test_bad_credentials_never_echo_secrets(tmp_path: Path) -> None:
    broken = tmp_path / "s3.json"
    broken.write_text('{"aws_access_key_id": "' + MARKER + '", "aws_secret_access_key": ')
    missing = tmp_path / "partial.json"
    missing.write_text(json.dumps({"aws_access_key_id": MARKER}))
    pasted = tmp_path / "pasted.json"
    pasted.write_text(json.dumps({MARKER: "x", "aws_access_key_id": "a",
                                  "aws_secret_access_key": "b"}))
    for creds, why in [(str(broken), "not valid JSON"), (str(missing), "aws_secret_access_key"),
                       (str(pasted), "not a name"), (f"{MARKER} pasted as a path", "does not"),
                       ({"aws_access_key_id": MARKER}, "missing")]:
        with pytest.raises(ConfigError, match=why) as info:
            S3Store("bucket", credentials=creds, check_bucket=False)
        assert MARKER not in str(info.value)
        assert info.value.__context__ is None and info.value.__cause__ is None


def test_kaggle_and_colab_secrets(moto_s3: str, s3_url: str,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets named like the variables, from Kaggle's client or Colab's userdata."""
    values = {"AWS_ACCESS_KEY_ID": f"{MARKER}-id", "AWS_SECRET_ACCESS_KEY": f"{MARKER}-secret",
              "AWS_ENDPOINT_URL": moto_s3}

    class UserSecretsClient:
        def get_secret(self, name: str) -> str:
            if name not in values:
                raise KeyError("no such secret")
            return values[name]

    kaggle = type(sys)("kaggle_secrets")
    kaggle.UserSecretsClient = UserSecretsClient  # type: ignore[attr-defined]
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var)
    monkeypatch.setitem(sys.modules, "kaggle_secrets", kaggle)
    settings = resolve_s3_settings()
    assert settings.where.startswith("Kaggle secrets")
    assert (settings.access_key_id, settings.endpoint_url) == (f"{MARKER}-id", moto_s3)
    assert MARKER not in repr(settings)
    store = open_store(s3_url)
    store.put("k", b"x")

    monkeypatch.delitem(sys.modules, "kaggle_secrets")
    monkeypatch.setitem(sys.modules, "kaggle_secrets", None)  # not on Kaggle
    userdata = type(sys)("google.colab.userdata")
    userdata.get = lambda name: values[name]  # type: ignore[attr-defined]
    colab = type(sys)("google.colab")
    colab.userdata = userdata  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab.userdata", userdata)
    assert resolve_s3_settings().where.startswith("Colab secrets")


def test_environment_wins_over_secrets(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> None:
    monkeypatch.setitem(sys.modules, "kaggle_secrets", None)
    settings = resolve_s3_settings()
    assert settings.where == "environment (AWS_ACCESS_KEY_ID)"
    assert settings.endpoint_url == moto_s3 and settings.region == "us-east-1"
    assert settings.session_kwargs() == {"region_name": "us-east-1"}  # boto3 reads the keys


def test_missing_boto3_names_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 itself, never islandsync from a package index (issue 17: the project does not
    hold that name there)."""
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'boto3>=1\.36'") as err:
        open_store("s3://bucket/run")
    assert "pip install 'islandsync" not in str(err.value)
