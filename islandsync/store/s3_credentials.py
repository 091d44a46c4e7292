"""Finding S3 credentials, endpoint and region the way S3 users expect.

Order (the first source that names an access key wins; endpoint and region come from the same
source when it names them, else from the environment):

1. ``credentials=``: a dict, or the path of a small JSON or INI file, with the keys
   ``aws_access_key_id``, ``aws_secret_access_key`` and optionally ``aws_session_token``,
   ``endpoint_url``, ``region``. An INI file uses its ``[default]`` section, or its only one
   (an ``~/.aws/credentials``-style file works).
2. The standard boto3 chain when the environment points at it: ``AWS_ACCESS_KEY_ID`` /
   ``AWS_SECRET_ACCESS_KEY`` (``AWS_SESSION_TOKEN``), or ``AWS_PROFILE``.
3. Kaggle secrets, then Colab secrets, named like the variables: ``AWS_ACCESS_KEY_ID``,
   ``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``, ``AWS_ENDPOINT_URL``,
   ``AWS_REGION``.
4. Otherwise boto3's own default chain (``~/.aws/credentials``, container or instance roles).

Endpoint: ``endpoint_url=``, else the source's, else ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (R2: ``https://<account>.r2.cloudflarestorage.com``; MinIO: its URL).
Region: ``region=``, else the source's, else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else the
profile's, else ``us-east-1``.

Secret values never reach a message, a log record, an exception or a repr: failures name the
source and the field, never its content.
"""

from __future__ import annotations

import configparser
import json
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
#: Field name in a credentials file or dict -> the variable / secret name of the same value.
FIELDS = {
    "aws_access_key_id": "AWS_ACCESS_KEY_ID",
    "aws_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "aws_session_token": "AWS_SESSION_TOKEN",
    "endpoint_url": "AWS_ENDPOINT_URL",
    "region": "AWS_REGION",
}
_MAX_FILE_BYTES = 64 * 1024
_NAME = re.compile(r"[a-z_]{1,40}")


@dataclass(frozen=True)
class S3Settings:
    """What an S3 client needs. Key fields are excluded from repr; ``where`` says, without
    any secret, where the credentials came from."""

    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    where: str = "boto3 default chain"

    def session_kwargs(self) -> dict[str, Any]:
        """Arguments for ``boto3.session.Session``: explicit keys, or a profile, or none."""
        out: dict[str, Any] = {}
        if self.access_key_id:
            out["aws_access_key_id"] = self.access_key_id
            out["aws_secret_access_key"] = self.secret_access_key
            if self.session_token:
                out["aws_session_token"] = self.session_token
        elif self.profile:
            out["profile_name"] = self.profile
        if self.region:
            out["region_name"] = self.region
        return out

    def secrets(self) -> tuple[str, ...]:
        """The values a message must never contain (for redaction)."""
        return tuple(v for v in (self.access_key_id, self.secret_access_key,
                                 self.session_token) if v)


class _Failed(Exception):
    """A source did not work; the message is safe to show."""


def _clean(value: Any, name: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Failed(f"{where}: {name} must be a string, got a {type(value).__name__}")
    value = value.strip()
    return value or None


def _from_mapping(info: Mapping[str, Any], where: str) -> S3Settings:
    unknown = sorted(str(k) for k in info if k not in FIELDS)
    if unknown:
        # Only names that look like field names are shown: anything else could be a secret
        # pasted in the wrong place.
        shown = [k if _NAME.fullmatch(k) else "(a field that is not a name)" for k in unknown]
        raise _Failed(f"{where}: unknown field(s) {', '.join(shown)}; "
                      f"expected {', '.join(FIELDS)}")
    values = {k: _clean(info.get(k), k, where) for k in FIELDS}
    if not values["aws_access_key_id"] or not values["aws_secret_access_key"]:
        missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not values[k]]
        raise _Failed(f"{where}: missing {', '.join(missing)}")
    return S3Settings(values["aws_access_key_id"], values["aws_secret_access_key"],
                      values["aws_session_token"], values["endpoint_url"], values["region"],
                      where=where)


def _shown(path: str) -> str:
    """The path quoted when it looks like one, else only its length (a secret pasted where a
    path belongs must not be echoed)."""
    if len(path) < 512 and not any(c.isspace() for c in path) and "{" not in path and (
            os.sep in path or path.endswith((".json", ".ini", ".cfg", ".conf"))):
        return repr(path)
    return f"(a {len(path)}-character value that is not a path)"


def _from_file(path: str) -> S3Settings:
    shown = _shown(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _Failed(f"credentials file {shown} does not exist") from None
    except OSError as err:
        raise _Failed(f"credentials file {shown} cannot be read ({type(err).__name__})") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise _Failed(f"credentials file {shown} is larger than {_MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Failed(f"credentials file {shown} is not UTF-8") from None
    return _from_text(text, f"credentials file {shown}")


def _from_text(text: str, where: str) -> S3Settings:
    if text.lstrip().startswith("{"):
        try:
            info = json.loads(text)
        except Exception:  # noqa: BLE001 - the parser's message may quote the secret
            raise _Failed(f"{where} is not valid JSON ({len(text)} characters)") from None
        if not isinstance(info, dict):
            raise _Failed(f"{where} must hold a JSON object")
        return _from_mapping(info, where)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        # Only the type: configparser quotes the offending line.
        raise _Failed(f"{where} is neither JSON nor INI ({len(text)} characters)") from None
    sections = parser.sections()
    if "default" in sections:
        section = "default"
    elif len(sections) == 1:
        section = sections[0]
    else:
        raise _Failed(f"{where}: INI needs a [default] section or exactly one section "
                      f"(found {len(sections)})")
    return _from_mapping(dict(parser[section]), f"{where} [{section}]")


def _explicit(credentials: Any) -> S3Settings:
    if isinstance(credentials, Mapping):
        return _from_mapping(credentials, "credentials= argument")
    if isinstance(credentials, os.PathLike):
        credentials = os.fspath(credentials)
    if isinstance(credentials, bytes):
        credentials = credentials.decode("utf-8", "replace")
    if isinstance(credentials, str):
        if credentials.lstrip().startswith("{"):
            return _from_text(credentials, "credentials= argument (JSON)")
        return _from_file(credentials)
    raise _Failed(f"credentials= is a {type(credentials).__name__}; expected a dict or the "
                  "path of a JSON or INI file")


def _kaggle_reader() -> Callable[[str], str | None] | None:
    try:
        from kaggle_secrets import UserSecretsClient
    except Exception:  # noqa: BLE001 - platform modules fail in many ways off-platform
        return None
    client = UserSecretsClient()

    def read(name: str) -> str | None:
        try:
            return client.get_secret(name)
        except Exception:  # noqa: BLE001 - no documented error type for a missing secret
            return None

    return read


def _colab_reader() -> Callable[[str], str | None] | None:
    try:
        from google.colab import userdata
    except Exception:  # noqa: BLE001 - platform modules fail in many ways off-platform
        return None

    def read(name: str) -> str | None:
        try:
            return userdata.get(name)
        except Exception:  # noqa: BLE001 - SecretNotFoundError, NotebookAccessError, ...
            return None

    return read


#: Secret stores tried in order, by label; a reader returns None for a missing secret.
SECRET_STORES: tuple[tuple[str, Callable[[], Callable[[str], str | None] | None]], ...] = (
    ("Kaggle secrets", _kaggle_reader),
    ("Colab secrets", _colab_reader),
)


def _from_secrets() -> S3Settings | None:
    for label, reader_factory in SECRET_STORES:
        try:
            read = reader_factory()
        except Exception as err:  # noqa: BLE001 - a platform client that will not start
            log.debug("S3 credentials: %s unavailable (%s)", label, type(err).__name__)
            continue
        if read is None:
            continue
        key_id = read(FIELDS["aws_access_key_id"])
        if not key_id:
            continue
        info = {field_: read(name) for field_, name in FIELDS.items()}
        return _from_mapping({k: v for k, v in info.items() if v is not None},
                             f"{label} ({', '.join(n for f, n in FIELDS.items() if info[f])})")
    return None


def resolve_s3_settings(credentials: Any = None, *, endpoint_url: str | None = None,
                        region: str | None = None,
                        environ: Mapping[str, str] | None = None) -> S3Settings:
    """Credentials, endpoint and region for an S3 client (see the module docstring for the
    order). Raises ConfigError naming the source and field that failed, never a value."""
    env = os.environ if environ is None else environ
    try:
        if credentials is not None:
            found = _explicit(credentials)
        elif env.get("AWS_ACCESS_KEY_ID"):
            found = S3Settings(where="environment (AWS_ACCESS_KEY_ID)")
        elif env.get("AWS_PROFILE"):
            found = S3Settings(profile=env["AWS_PROFILE"],
                               where=f"AWS_PROFILE profile {env['AWS_PROFILE']!r}")
        else:
            found = _from_secrets() or S3Settings()
    except _Failed as err:
        reason = str(err)
    else:
        reason = ""
    if reason:
        # Raised outside the except block: no exception context can carry secret text along.
        raise ConfigError(f"S3 credentials: {reason}")
    endpoint = (endpoint_url or found.endpoint_url or env.get("AWS_ENDPOINT_URL_S3")
                or env.get("AWS_ENDPOINT_URL") or None)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"S3 endpoint {endpoint!r} must start with http:// or https://")
    chosen_region = (region or found.region or env.get("AWS_REGION")
                     or env.get("AWS_DEFAULT_REGION") or None)
    settings = S3Settings(found.access_key_id, found.secret_access_key, found.session_token,
                          endpoint, chosen_region, found.profile, found.where)
    log.info("S3 credentials: %s; endpoint %s", settings.where, endpoint or "AWS default")
    return settings


__all__ = ["DEFAULT_REGION", "FIELDS", "S3Settings", "resolve_s3_settings"]
