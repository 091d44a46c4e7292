"""GCSStore: the BlobStore contract on Google Cloud Storage (google-cloud-storage >= 2.19)."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import (
    ConfigError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    PreconditionFailed,
    Refused,
    StoreError,
)
from .base import Blob, BlobInfo, BlobStore
from .key_syntax import check_key, check_range

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
            raise ConfigError("gs:// stores need google-cloud-storage: "
                              "pip install 'google-cloud-storage>=2.19'")
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
        except gexc.ClientError as err:  # a 4xx: the request was not applied
            outcome = OutcomeUnknown if err.code == 408 else Refused
            raise outcome(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
        except auth_exc.GoogleAuthError as err:  # no token: nothing was sent
            raise NotSent(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
        except (gexc.GoogleAPIError, OSError, ValueError) as err:  # 5xx, timeouts, resets
            raise OutcomeUnknown(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
        except Exception as err:  # requests/urllib3 errors have no common base we import
            if type(err).__module__.split(".")[0] in ("requests", "urllib3", "google"):
                raise OutcomeUnknown(f"{self.url}: {op} {key!r} failed: {_brief(err)}") from err
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

    def signed_url(self, key: str, *, expires_s: float) -> str:
        """A V4 signed GET URL of ``key``, signed locally with the service account's private
        key (no request is sent). A user sign-in (gcloud, Colab's) has no key to sign with:
        ConfigError, saying what works instead. Under STORAGE_EMULATOR_HOST the URL points at
        the emulator."""
        import datetime as dt

        from google.auth.credentials import Signing

        if not isinstance(self._credentials, Signing):
            kind = f"{type(self._credentials).__module__}.{type(self._credentials).__name__}"
            raise ConfigError(
                f"store {self.url}: these credentials ({kind}) cannot sign a URL: that needs "
                f"a service account's private key, which a user sign-in (gcloud's, Colab's) "
                f"does not hold; pass --credentials with a service-account JSON key (e.g. the "
                f"one the notebooks' GCS_SERVICE_ACCOUNT secret holds)")
        blob = self._bucket().blob(self._name(key))
        return self._call("sign", key, lambda: blob.generate_signed_url(
            version="v4", method="GET", expiration=dt.timedelta(seconds=expires_s),
            credentials=self._credentials))

    def close(self) -> None:
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


def _brief(err: BaseException) -> str:
    """One line of an error, without response bodies that may echo request headers."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


#: The credential JSON types a store accepts. Others (external_account and its kin,
#: impersonated_service_account, ...) may name a command to run or a URL to fetch: a pasted
#: string, a secret store or a file a notebook found lying around is no place to trust one from.
ACCEPTED_TYPES = ("service_account", "authorized_user")
_SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
_MAX_CREDENTIALS_FILE = 1 << 20


def shown_path(path: str) -> str:
    """``path`` quoted when it looks like a path, else only its length: a secret pasted where
    a path belongs must not be echoed back."""
    if len(path) < 512 and not any(c.isspace() or not c.isprintable() for c in path) \
            and "{" not in path and (os.sep in path or "/" in path or path.endswith(".json")):
        return repr(path)
    return f"(a {len(path)}-character value that is not a path)"


def credential_refusal(info: dict[str, Any]) -> str | None:
    """Why credential JSON ``info`` is refused, or None when it may be used. Says only field
    names and types, never a value."""
    kind = info.get("type", "service_account")  # a key without "type" is a service account
    if kind not in ACCEPTED_TYPES:
        return ("unsupported credential type (use a service-account key, or user "
                "credentials from gcloud auth application-default login)")
    if "credential_source" in info:  # where external accounts name a command or a URL
        return "it names a credential_source (a command or URL to get tokens from)"
    return None


def _default_file(environ: Any) -> str | None:
    """The credentials file google.auth.default would load, if any: the one
    GOOGLE_APPLICATION_CREDENTIALS names, else gcloud's application-default file."""
    named = environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if named:
        return named
    config = environ.get("CLOUDSDK_CONFIG")
    if not config:
        if os.name == "nt":
            config = os.path.join(environ.get("APPDATA", ""), "gcloud")
        else:
            config = os.path.join(os.path.expanduser("~"), ".config", "gcloud")
    path = os.path.join(config, "application_default_credentials.json")
    return path if os.path.isfile(path) else None


def default_credentials_refusal(environ: Any = None) -> str | None:
    """Why Google default credentials must not be loaded, or None. Reads the file that
    google.auth.default would (GOOGLE_APPLICATION_CREDENTIALS, else gcloud's ADC file) before
    google.auth does, and refuses what :func:`credential_refusal` refuses: google.auth would
    build an external account from it, whose token source may run a command."""
    environ = os.environ if environ is None else environ
    path = _default_file(environ)
    if path is None:
        return None
    where = shown_path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_CREDENTIALS_FILE + 1)
    except OSError as err:
        return f"{where} cannot be read ({type(err).__name__})"
    if len(data) > _MAX_CREDENTIALS_FILE:
        return f"{where} is larger than {_MAX_CREDENTIALS_FILE} bytes"
    try:
        info = json.loads(data.decode("utf-8"))
    except Exception:  # noqa: BLE001 - its message may quote the file: never show it
        return f"{where} is not valid JSON ({len(data)} bytes)"
    if not isinstance(info, dict):
        return f"{where} is not a JSON object"
    why = credential_refusal(info)
    return None if why is None else f"{where}: {why}"


def refused_credentials(creds: Any) -> bool:
    """Whether google.auth built credentials of a kind we refuse (a last check, should the
    file check ever miss a way google.auth.default finds an external account)."""
    module = type(creds).__module__
    return module.startswith("google.auth.") and module.rsplit(".", 1)[-1] in (
        "external_account", "identity_pool", "aws", "pluggable",
        "external_account_authorized_user", "impersonated_credentials")


def _resolve_credentials(credentials: Any, project: str | None, url: str) -> tuple[Any, Any]:
    """(project, credentials) for storage.Client; never echoes credential contents."""
    if credentials is not None and not isinstance(credentials, (str, bytes, os.PathLike, dict)):
        return project, credentials  # already a google.auth credentials object
    if credentials is not None:
        info = _credential_info(credentials, url)
        if (why := credential_refusal(info)) is not None:
            raise ConfigError(f"store {url}: credentials refused: {why}")
        creds, failed = None, ""
        try:
            if info.get("type", "service_account") == "service_account":
                from google.oauth2 import service_account

                creds = service_account.Credentials.from_service_account_info(
                    info, scopes=_SCOPES)
            else:
                from google.oauth2 import credentials as user_credentials

                creds = user_credentials.Credentials.from_authorized_user_info(
                    info, scopes=_SCOPES)
        except Exception as err:  # noqa: BLE001 - key loaders' messages are not ours to vet
            failed = type(err).__name__
        if failed:  # raised outside the except block: no context to carry secret text along
            raise ConfigError(f"store {url}: the credentials JSON is not valid (missing or bad "
                              f"field: {failed})")
        return project or info.get("project_id") or info.get("quota_project_id"), creds
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return project or "islandsync-emulator", AnonymousCredentials()
    if (why := default_credentials_refusal()) is not None:
        raise ConfigError(f"store {url}: Google default credentials refused: {why}")
    failed = ""
    try:
        import google.auth

        creds, default_project = google.auth.default(scopes=_SCOPES)
    except Exception as err:  # noqa: BLE001 - its messages may quote a path that is a secret
        failed = type(err).__name__
    if failed:
        raise ConfigError(
            f"store {url}: no usable Google credentials ({failed}); pass credentials= (a "
            "service-account JSON path or content) or set GOOGLE_APPLICATION_CREDENTIALS")
    if refused_credentials(creds):
        raise ConfigError(f"store {url}: Google default credentials refused: "
                          f"{type(creds).__name__} (an external account)")
    return project or default_project, creds


def _credential_info(credentials: str | bytes | os.PathLike[str] | dict, url: str
                     ) -> dict[str, Any]:
    """The credential JSON given as a dict, its text, or a path to it. Errors name a path
    only when it looks like one and never quote content; each is raised outside the except
    block that caught the cause, so no chained exception carries the text along either."""
    if isinstance(credentials, dict):
        return credentials
    text = _text(credentials)
    if text is None:
        raise ConfigError(f"store {url}: credentials are not UTF-8 text")
    source = "credentials"
    if not text.lstrip().startswith("{"):
        source = f"credentials file {shown_path(text)}"
        raw, why = _read_file(text)
        if why:
            raise ConfigError(f"store {url}: cannot read {source}: {why}")
        text = _text(raw)
        if text is None:
            raise ConfigError(f"store {url}: {source} is not UTF-8")
    info = _json(text)
    if info is None:
        raise ConfigError(f"store {url}: {source} is not valid JSON")  # no excerpt: a secret
    if not isinstance(info, dict):
        raise ConfigError(f"store {url}: {source} must hold a JSON object")
    return info


def _text(value: str | bytes | os.PathLike[str]) -> str | None:
    if not isinstance(value, bytes):
        return os.fspath(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:  # its args hold the bytes: let it go here
        return None


def _read_file(path: str) -> tuple[bytes, str]:
    """(content, "") or (b"", why): why names only the kind of failure."""
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_CREDENTIALS_FILE + 1)
    except OSError as err:  # its args hold the path, which may be a pasted secret
        return b"", err.strerror or type(err).__name__
    if len(raw) > _MAX_CREDENTIALS_FILE:
        return b"", f"larger than {_MAX_CREDENTIALS_FILE} bytes"
    return raw, ""


def _json(text: str) -> Any:
    """Parsed JSON, or None (its error messages quote the document)."""
    try:
        return json.loads(text)
    except Exception:  # noqa: BLE001
        return None
