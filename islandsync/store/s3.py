"""S3Store: the BlobStore contract on S3 and S3-compatible buckets (AWS S3, Cloudflare R2, MinIO).

Fencing needs only what S3 has offered since 2024: ``If-None-Match: *`` (create only) and
``If-Match: <etag>`` (compare-and-swap) on PutObject, 412 when the condition fails. Versions are
the objects' ETags (without their quotes), compared only for equality; see
:class:`~islandsync.store.base.BlobStore` for why equal content gives an equal ETag and why
records carry a nonce. boto3 is imported only when an ``s3://`` store is opened
(``pip install 'islandsync[s3]'``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from ..errors import (
    ConfigError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    PreconditionFailed,
    Refused,
    StoreError,
)
from .base import ABSENT, Blob, BlobInfo, BlobStore, Version
from .key_syntax import check_key, check_range
from .s3_credentials import DEFAULT_REGION, resolve_s3_settings

T = TypeVar("T")

#: Answers that say the request was refused before it changed anything, and that S3 asks
#: clients to send again (also a conditional write): 409 ConditionalRequestConflict is S3's
#: answer to two conditional writes racing on one key; 429 and the throttling codes of a 4xx.
#: A 5xx is never among them, whatever its code (503 SlowDown included): a server, or a proxy
#: in front of it, may answer 5xx for a request it applied, so its outcome is unknown.
_RETRY_REFUSED_CODES = frozenset({
    "ConditionalRequestConflict", "OperationAborted", "SlowDown", "Throttling",
    "ThrottlingException", "TooManyRequests", "RequestLimitExceeded", "RequestThrottled",
})
_RETRY_REFUSED_STATUS = frozenset({409, 429})
#: 4xx answers whose request may still have been applied: the server timed out reading it.
_UNKNOWN_4XX_CODES = frozenset({"RequestTimeout"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})

#: Hosts whose S3 API documents conditional PutObject but not conditional DeleteObject.
_NO_CONDITIONAL_DELETE_HOSTS = (".r2.cloudflarestorage.com",)


def _import_boto3() -> tuple[Any, Any, Any]:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        raise ConfigError(
            "s3:// stores need boto3 1.36 or newer, which the core install leaves out: "
            "pip install 'boto3>=1.36' (the install line `islandsync publish` prints for an "
            "s3:// run brings it)"
        ) from None
    return boto3, botocore.config, botocore.exceptions


def _token(etag: Any) -> str:
    """An ETag as a version token: without quotes or a weak prefix, so that the forms listings,
    HEAD and PUT responses use all compare equal."""
    if not isinstance(etag, str) or not etag.strip('" '):
        raise StoreError("the S3 server returned no ETag: islandsync cannot fence without one")
    text = etag.strip()
    if text.startswith("W/"):
        text = text[2:]
    return text.strip('"')


def _quoted(version: Version) -> str:
    return f'"{version}"'


class S3Store(BlobStore):
    """A :class:`BlobStore` on ``s3://bucket/prefix``.

    Credentials, endpoint and region: :mod:`islandsync.store.s3_credentials` (the boto3 chain,
    Kaggle and Colab secrets, or ``credentials=`` a JSON/INI file path or dict).

    Retry rule (one place, :meth:`_call`; boto3's own retries are off so that nothing resends
    a request behind this rule's back):

    * Each failure is classified once, by outcome: :class:`~islandsync.errors.NotSent` (the
      connection never opened), :class:`~islandsync.errors.Refused` (a 4xx: nothing applied),
      :class:`~islandsync.errors.OutcomeUnknown` (any 5xx, 503 SlowDown included, a timeout,
      a reset connection: a server or a proxy may answer so for a request it applied).
    * Every request is resent, with exponential backoff and jitter, at most ``max_attempts``
      times and within ``retry_deadline`` seconds, when it was not sent, or refused with an
      answer S3 asks clients to retry: 409 ConditionalRequestConflict, 429, throttling.
    * Reads, stats, lists and unconditional writes are also resent after failures whose
      outcome is unknown: repeating them is harmless.
    * A conditional write or delete is never resent after such a failure. It may have landed,
      and a resent ``If-None-Match`` create that had landed would get 412 and look like a lost
      race. It raises :class:`~islandsync.errors.OutcomeUnknown` at once; records carry a
      nonce, so the caller reads the key back (``islandsync.bucket.records.landed``) to learn
      whether it won.

    ``conditional_delete`` (default: auto, False for Cloudflare R2 endpoints, whose S3 API does
    not document ``If-Match`` on DeleteObject): when False, ``delete(if_generation=)`` checks the
    ETag with a HEAD, then deletes; a write landing between the two is not caught. AWS S3 has
    enforced conditional deletes since 2025 (they need ``s3:GetObject`` as well as
    ``s3:DeleteObject``).

    Permissions: ``s3:ListBucket`` (without it S3 answers 403 rather than 404 for a missing
    key), ``s3:GetObject``, ``s3:PutObject``, ``s3:DeleteObject`` on the prefix.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        credentials: Any = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        conditional_delete: bool | None = None,
        max_attempts: int = 6,
        backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
        retry_deadline: float = 60.0,
        timeout: float = 60.0,
        list_page_size: int = 1000,
        check_bucket: bool = True,
    ) -> None:
        boto3, bconfig, self._exc = _import_boto3()
        if not bucket:
            raise ConfigError("S3Store needs a bucket name (s3://bucket/prefix)")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts!r}")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        settings = resolve_s3_settings(credentials, endpoint_url=endpoint_url, region=region)
        self.endpoint_url = settings.endpoint_url
        self._secrets = settings.secrets()
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._retry_deadline = retry_deadline
        self._page_size = list_page_size
        if conditional_delete is None:
            host = (urlsplit(self.endpoint_url).hostname or "") if self.endpoint_url else ""
            conditional_delete = not host.endswith(_NO_CONDITIONAL_DELETE_HOSTS)
        self.enforces_conditional_delete = conditional_delete
        try:
            session = boto3.session.Session(**settings.session_kwargs())
        except self._exc.BotoCoreError as err:  # e.g. ProfileNotFound
            raise ConfigError(f"store {self.url}: {self._brief(err)}") from None
        config = bconfig.Config(
            # One attempt: retries follow the rule above, in _call.
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=timeout,
            read_timeout=timeout,
            max_pool_connections=16,
            # S3-compatible servers differ in which checksum headers they accept; the blobs
            # carry their own crc32c (the .isz codec), so send only what S3 requires.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # SigV4 also for presigned URLs, which botocore would sign V2 on a custom
            # endpoint: the one R2 and MinIO accept, and the one that expires (7 days at most).
            signature_version="s3v4",
        )
        # One client for all threads: boto3 documents low-level clients as thread-safe.
        self._client = session.client(
            "s3", endpoint_url=self.endpoint_url,
            region_name=session.region_name or DEFAULT_REGION, config=config,
        )
        self._where = settings.where
        if check_bucket:
            self._check_bucket()

    # -- plumbing ------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _key(self, name: str) -> str:
        return name[len(self.prefix) + 1:] if self.prefix else name

    def _brief(self, err: BaseException) -> str:
        """One line of an error with every known secret value masked; response bodies are
        never included (they may echo request headers)."""
        response = getattr(err, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            text = f"{error.get('Code') or type(err).__name__} (HTTP {status})"
            message = str(error.get("Message") or "").splitlines()
            if message:
                text += f": {message[0][:200]}"
        else:
            first = str(err).splitlines()[0] if str(err) else ""
            text = f"{type(err).__name__}: {first[:300]}" if first else type(err).__name__
        for secret in self._secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text

    def _status(self, err: Any) -> tuple[str, int | None]:
        response = err.response or {}
        code = str((response.get("Error") or {}).get("Code") or "")
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return code, status

    def _classify(self, code: str, status: int | None) -> tuple[type[StoreError], bool]:
        """(what is known of a failed request's outcome, whether S3 asks for it again)."""
        if status is not None and 400 <= status < 500 and code not in _UNKNOWN_4XX_CODES:
            return Refused, (status in _RETRY_REFUSED_STATUS or code in _RETRY_REFUSED_CODES)
        return OutcomeUnknown, True  # a 5xx, a timeout: maybe applied

    def _call(self, op: str, key: str, fn: Callable[[], T], *, conditional: bool = False) -> T:
        """Run one request under the retry rule, converting boto errors at the boundary into
        the one classification by outcome (errors.NotSent, Refused, OutcomeUnknown)."""
        exc = self._exc
        deadline = time.monotonic() + self._retry_deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except exc.ClientError as err:
                code, status = self._status(err)
                if code in _NOT_FOUND_CODES:
                    raise NotFound(f"{self.url}: no blob {key!r}") from None
                if status == 412 or code == "PreconditionFailed":
                    raise PreconditionFailed(
                        f"{self.url}: {op} {key!r}: version precondition failed") from None
                outcome, retry = self._classify(code, status)
                failure = self._brief(err)
            except (exc.EndpointConnectionError, exc.ConnectTimeoutError) as err:
                outcome, retry = NotSent, True  # the connection never opened
                failure = self._brief(err)
            except (exc.NoCredentialsError, exc.PartialCredentialsError) as err:
                raise NotSent(f"{self.url}: {op} {key!r}: no usable S3 credentials "
                              f"({type(err).__name__}; looked in: {self._where})") from None
            except exc.BotoCoreError as err:
                outcome, retry = OutcomeUnknown, True  # a timeout or a reset connection
                failure = self._brief(err)
            if conditional and outcome is OutcomeUnknown:
                # Never resent: a resent create that had landed would get 412 and look like
                # a lost race. The caller reads the record back (its nonce) to learn.
                raise OutcomeUnknown(
                    f"{self.url}: {op} {key!r}: the outcome is unknown ({failure}); the "
                    "conditional request may have been applied: read the key back before "
                    "deciding") from None
            delay = min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))
            delay *= 0.5 + random.random() / 2  # jitter: racing writers do not retry in step
            if not retry or attempt >= self._max_attempts or \
                    time.monotonic() + delay > deadline:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                # from None: botocore exceptions carry the request, which we do not show.
                raise outcome(f"{self.url}: {op} {key!r} failed{tries}: {failure}") from None
            time.sleep(delay)

    def _check_bucket(self) -> None:
        # A one-key list needs only s3:ListBucket, which a run needs anyway.
        prefix = f"{self.prefix}/" if self.prefix else ""
        try:
            self._call("open", "", lambda: self._client.list_objects_v2(
                Bucket=self.bucket_name, Prefix=prefix, MaxKeys=1))
        except StoreError as err:
            if "NoSuchBucket" in str(err):
                raise ConfigError(f"store {self.url}: bucket {self.bucket_name!r} not found"
                                  ) from None
            raise ConfigError(f"store {self.url}: cannot reach the bucket ({err}; "
                              f"credentials from {self._where})") from None

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        name = self._name(key)
        lo, hi = check_range(start, end)
        if hi is not None and hi <= lo:
            return self._empty(key)
        extra: dict[str, Any] = {}
        if lo > 0 or hi is not None:
            extra["Range"] = f"bytes={lo}-" + ("" if hi is None else str(hi - 1))

        def fetch() -> tuple[bytes, str] | None:
            try:
                resp = self._client.get_object(Bucket=self.bucket_name, Key=name, **extra)
            except self._exc.ClientError as err:
                if self._status(err)[1] == 416:  # start at or past the end
                    return None
                raise
            body = resp["Body"]
            try:
                status = (resp.get("ResponseMetadata") or {}).get("HTTPStatusCode")
                if extra and status == 200 and (lo > 0 or resp.get("ContentLength", 0) > hi):
                    # A server that ignores Range would hand a record reader a whole blob of
                    # any size, past its size cap.
                    raise StoreError(f"{self.url}: read {key!r}: the server ignored the Range "
                                     "header (HTTP 200 for a ranged GET)")
                return body.read(), _token(resp.get("ETag"))
            finally:
                body.close()

        got = self._call("read", key, fetch)
        if got is None:
            return self._empty(key)
        return Blob(got[0], got[1])

    def _empty(self, key: str) -> Blob:
        info = self.stat(key)
        if info is None:
            raise NotFound(f"{self.url}: no blob {key!r}")
        return Blob(b"", info.generation)

    def stat(self, key: str) -> BlobInfo | None:
        name = self._name(key)
        try:
            resp = self._call("stat", key, lambda: self._client.head_object(
                Bucket=self.bucket_name, Key=name))
        except NotFound:
            return None
        return BlobInfo(key, _token(resp.get("ETag")), int(resp.get("ContentLength") or 0),
                        resp["LastModified"])

    def list(self, prefix: str = "") -> list[BlobInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix

        def listing() -> list[BlobInfo]:
            out = []
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket_name, Prefix=full,
                                           PaginationConfig={"PageSize": self._page_size}):
                for obj in page.get("Contents", ()):
                    out.append(BlobInfo(self._key(obj["Key"]), _token(obj.get("ETag")),
                                        int(obj.get("Size") or 0), obj["LastModified"]))
            return out

        # A failed page restarts the whole listing: pages are not a snapshot to resume.
        return sorted(self._call("list", prefix, listing), key=lambda i: i.key)

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_generation: Version | None = None) -> Version:
        name = self._name(key)
        args: dict[str, Any] = {"Bucket": self.bucket_name, "Key": name, "Body": bytes(data),
                                "ContentType": "application/octet-stream"}
        if if_generation is not None:
            if if_generation == ABSENT and not isinstance(if_generation, str):
                args["IfNoneMatch"] = "*"
            else:
                args["IfMatch"] = _quoted(if_generation)
        try:
            resp = self._call("write", key, lambda: self._client.put_object(**args),
                              conditional=if_generation is not None)
        except NotFound:
            # If-Match on a key that does not exist: S3 answers 404, the contract 412.
            raise PreconditionFailed(
                f"{self.url}: write {key!r}: no blob at version {if_generation!r}") from None
        return _token(resp.get("ETag"))

    def signed_url(self, key: str, *, expires_s: float) -> str:
        """A presigned GET URL of ``key`` (SigV4, signed locally with this store's keys: no
        request is sent). Anyone holding it reads the blob until it expires; it carries no
        secret key, only a signature."""
        name = self._name(key)
        try:
            return self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket_name, "Key": name},
                ExpiresIn=int(expires_s))
        except self._exc.NoCredentialsError:
            raise ConfigError(f"store {self.url}: no S3 keys to sign a URL with; set "
                              f"AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or pass "
                              f"--credentials)") from None
        except self._exc.BotoCoreError as err:
            raise ConfigError(f"store {self.url}: cannot sign a URL of {key!r}: "
                              f"{self._brief(err)}") from None

    def delete(self, key: str, *, if_generation: Version | None = None) -> None:
        name = self._name(key)
        if if_generation is not None and self.enforces_conditional_delete:
            self._call("delete", key, lambda: self._client.delete_object(
                Bucket=self.bucket_name, Key=name, IfMatch=_quoted(if_generation)),
                conditional=True)
            return
        # S3 answers 204 for a missing key; the contract wants NotFound, so look first.
        info = self.stat(key)
        if info is None:
            raise NotFound(f"{self.url}: no blob {key!r}")
        if if_generation is not None and info.generation != if_generation:
            raise PreconditionFailed(
                f"{self.url}: {key!r} is at version {info.generation!r}, not {if_generation!r}")
        self._call("delete", key, lambda: self._client.delete_object(
            Bucket=self.bucket_name, Key=name))

    def close(self) -> None:
        self._client.close()


__all__ = ["S3Store"]
