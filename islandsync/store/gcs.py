"""GCSStore: the BlobStore contract on Google Cloud Storage (google-cloud-storage >= 3)."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigError, NotFound, PreconditionFailed, StoreError
from .base import Blob, BlobInfo, BlobStore
from .keys import check_key, check_range

try:
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc
    from google.cloud import storage
    from google.cloud.storage.retry import DEFAULT_RETRY
except ImportError:  # pragma: no cover - google-cloud-storage is a core dependency
    storage = None  # type: ignore[assignment]

T = TypeVar("T")

#: Custom-metadata field that carries the nonce of a conditional write.
NONCE_FIELD = "islandsync-nonce"


class GCSStore(BlobStore):
    """A :class:`BlobStore` on ``gs://bucket/prefix``.

    Retry rule (one place, passed explicitly at every call because the library's defaults
    changed in 3.0):

    * Reads, stats and lists retry transient errors (429, 5xx, connection resets, timeouts)
      with exponential backoff for up to ``retry_deadline`` seconds.
    * A write or delete retries only when it carries a generation precondition: the
      precondition makes a repeated request harmless. An unconditional write is sent once;
      its caller (heartbeat, immutable checkpoint) simply tries again later.
    * Every conditional write stores a fresh random nonce in the object's custom metadata
      (``x-goog-meta-islandsync-nonce``). If a retried write gets 412, our first attempt may
      have landed before its response was lost; the store reads the object's metadata back and,
      when the nonce is ours, returns that generation as a success instead of raising
      :class:`PreconditionFailed`. Callers above the store never see that ambiguity.

    Credentials, in order: ``credentials`` (a ``google.auth`` credentials object, a path to a
    service-account JSON file, or the JSON content itself); anonymous when
    ``STORAGE_EMULATOR_HOST`` is set (fake-gcs-server); otherwise Google default credentials.
    Credential contents never appear in errors or logs.

    fake-gcs-server enforces ``ifGenerationMatch`` on multipart uploads (blobs up to 8 MiB) but
    not on resumable uploads or deletes; keep conditional blobs small.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        credentials: Any = None,
        project: str | None = None,
        retry_deadline: float = 60.0,
        timeout: float = 60.0,
        check_bucket: bool = True,
    ) -> None:
        if storage is None:  # pragma: no cover
            raise ConfigError("gs:// stores need google-cloud-storage: pip install islandsync")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}" if self.prefix else f"gs://{bucket}"
        self._timeout = timeout
        self._read_retry = DEFAULT_RETRY.with_timeout(retry_deadline)
        self._project, self._credentials = _resolve_credentials(credentials, project, self.url)
        self._local = threading.local()
        if check_bucket:
            self._check_bucket()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def _client(self) -> storage.Client:
        # One client per thread: the library does not promise a shared one is thread-safe,
        # and the background uploader runs beside the worker loop.
        client = getattr(self._local, "client", None)
        if client is None:
            client = storage.Client(project=self._project, credentials=self._credentials)
            self._local.client = client
        return client

    def _bucket(self) -> storage.Bucket:
        return self._client.bucket(self.bucket_name)

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        """Run one client call, converting library errors at the boundary."""
        try:
            return fn()
        except gexc.NotFound as err:
            raise NotFound(f"{self.url}: no blob {key!r}") from err
        except gexc.PreconditionFailed as err:
            raise PreconditionFailed(
                f"{self.url}: {op} {key!r}: generation precondition failed"
            ) from err
        except (gexc.GoogleAPIError, auth_exc.GoogleAuthError, OSError, ValueError) as err:
            raise StoreError(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
        except Exception as err:  # requests/urllib3 errors have no common base we import
            if type(err).__module__.split(".")[0] in ("requests", "urllib3", "google"):
                raise StoreError(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
            raise

    def _check_bucket(self) -> None:
        # A one-object list needs only storage.objects.list, which object-level service
        # accounts have; buckets.get would need more than a run should ask for.
        def probe() -> None:
            for _ in self._client.list_blobs(
                self.bucket_name, prefix=self.prefix, max_results=1,
                timeout=self._timeout, retry=self._read_retry,
            ):
                break

        try:
            self._call("open", "", probe)
        except NotFound as err:
            raise ConfigError(f"store {self.url}: bucket {self.bucket_name!r} not found") from err
        except StoreError as err:
            raise ConfigError(f"store {self.url}: cannot reach the bucket ({err})") from err

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        name = self._name(key)
        lo, hi = check_range(start, end)
        if hi is not None and hi <= lo:
            info = self.stat(key)
            if info is None:
                raise NotFound(f"{self.url}: no blob {key!r}")
            return Blob(b"", info.generation)
        blob = self._bucket().blob(name)

        def download() -> bytes:
            try:
                return blob.download_as_bytes(
                    start=lo or None,
                    end=None if hi is None else hi - 1,  # GCS ranges are inclusive
                    raw_download=True,
                    timeout=self._timeout,
                    retry=self._read_retry,
                )
            except gexc.RequestRangeNotSatisfiable:
                blob.reload(timeout=self._timeout, retry=self._read_retry)
                return b""

        data = self._call("read", key, download)
        return Blob(data, int(blob.generation))

    def stat(self, key: str) -> BlobInfo | None:
        name = self._name(key)
        blob = self._call(
            "stat", key,
            lambda: self._bucket().get_blob(name, timeout=self._timeout, retry=self._read_retry),
        )
        return None if blob is None else self._info(blob)

    def _info(self, blob: Any) -> BlobInfo:
        key = blob.name[len(self.prefix) + 1 :] if self.prefix else blob.name
        return BlobInfo(key, int(blob.generation), int(blob.size or 0), blob.updated)

    def list(self, prefix: str = "") -> list[BlobInfo]:
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix

        def listing() -> list[BlobInfo]:
            return [
                self._info(b)
                for b in self._client.list_blobs(
                    self.bucket_name, prefix=full, timeout=self._timeout, retry=self._read_retry
                )
            ]

        return sorted(self._call("list", prefix, listing), key=lambda i: i.key)

    # -- writing -------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        name = self._name(key)
        blob = self._bucket().blob(name)
        nonce = None
        if if_generation is not None:
            nonce = secrets.token_hex(16)
            blob.metadata = {NONCE_FIELD: nonce}

        def upload() -> int:
            blob.upload_from_string(
                bytes(data),
                content_type="application/octet-stream",
                if_generation_match=if_generation,
                timeout=self._timeout,
                retry=self._read_retry if if_generation is not None else None,
            )
            return int(blob.generation)

        try:
            return self._call("write", key, upload)
        except PreconditionFailed:
            landed = self._landed(key, nonce)
            if landed is not None:
                return landed
            raise

    def _landed(self, key: str, nonce: str | None) -> int | None:
        """The generation our own write created, if the blob now carries our nonce."""
        if nonce is None:
            return None
        name = self._name(key)
        blob = self._call(
            "stat", key,
            lambda: self._bucket().get_blob(name, timeout=self._timeout, retry=self._read_retry),
        )
        if blob is not None and (blob.metadata or {}).get(NONCE_FIELD) == nonce:
            return int(blob.generation)
        return None

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        name = self._name(key)
        blob = self._bucket().blob(name)
        self._call(
            "delete", key,
            lambda: blob.delete(
                if_generation_match=if_generation,
                timeout=self._timeout,
                retry=self._read_retry if if_generation is not None else None,
            ),
        )

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def _brief(err: BaseException) -> str:
    """One line of an error, without response bodies that may echo request headers."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def _resolve_credentials(credentials: Any, project: str | None, url: str) -> tuple[Any, Any]:
    """(project, credentials) for storage.Client; never echoes credential contents."""
    if credentials is not None and not isinstance(credentials, (str, bytes, os.PathLike, dict)):
        return project, credentials  # already a google.auth credentials object
    if credentials is not None:
        from google.oauth2 import service_account

        info = _service_account_info(credentials, url)
        try:
            creds = service_account.Credentials.from_service_account_info(
                info, scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
            )
        except (ValueError, KeyError) as err:
            raise ConfigError(
                f"store {url}: the service-account JSON is not valid "
                f"(missing or bad field: {type(err).__name__})"
            ) from None
        return project or info.get("project_id"), creds
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return project or "islandsync-emulator", AnonymousCredentials()
    try:
        import google.auth

        creds, default_project = google.auth.default(
            scopes=["https://www.googleapis.com/auth/devstorage.read_write"]
        )
    except auth_exc.DefaultCredentialsError as err:
        raise ConfigError(
            f"store {url}: no Google credentials found; pass credentials= (a service-account "
            "JSON path or content) or set GOOGLE_APPLICATION_CREDENTIALS"
        ) from err
    return project or default_project, creds


def _service_account_info(credentials: str | bytes | os.PathLike[str] | dict, url: str) -> dict:
    if isinstance(credentials, dict):
        return credentials
    text = credentials.decode() if isinstance(credentials, bytes) else os.fspath(credentials)
    if text.lstrip().startswith("{"):
        try:
            info = json.loads(text)
        except json.JSONDecodeError:
            # Deliberately no excerpt: the text is a secret.
            raise ConfigError(f"store {url}: credentials look like JSON but do not parse") from None
    else:
        try:
            with open(text, encoding="utf-8") as f:
                info = json.load(f)
        except OSError as err:
            raise ConfigError(
                f"store {url}: cannot read credentials file {text!r}: {err.strerror}"
            ) from None
        except json.JSONDecodeError:
            raise ConfigError(
                f"store {url}: credentials file {text!r} is not valid JSON"
            ) from None
    if not isinstance(info, dict):
        raise ConfigError(f"store {url}: credentials JSON must be an object")
    return info
