"""Finding Google Cloud Storage credentials on each platform.

``find_credentials`` walks the sources a platform's profile lists (``credentials`` in
``env/profiles/<name>.toml``) and returns the first that works, with a description of where
it came from. ``None`` as the credentials means "Google default credentials": ``GCSStore``
resolves those itself, project included.

Secrets never appear in a message, log record or exception: not their values, not the JSON,
not the text of an exception raised while parsing them (``json`` errors and key loaders may
quote their input). Failures are reported by field names, lengths and exception type names.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from islandsync.errors import ConfigError
from islandsync.env.platforms import load_profile, resolve_platform
from islandsync.store.gcs import (
    credential_refusal,
    default_credentials_refusal,
    refused_credentials,
    shown_path,
)

log = logging.getLogger(__name__)

SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
_SA_FIELDS = ("client_email", "private_key", "token_uri")


class _Failed(Exception):
    """One source did not work; the message is safe to show (it never holds secret text)."""


def _bad_json(size: str, detail: str = "") -> _Failed:
    return _Failed(f"is not valid service-account JSON ({size}{detail})")


def _from_info(info: Any, size: str) -> tuple[Any, str]:
    """Credentials from parsed JSON; ``size`` ("N characters") is for messages only."""
    if not isinstance(info, dict):
        raise _bad_json(size, "; not a JSON object")
    if (why := credential_refusal(info)) is not None:
        # external_account and its kin may name a command to run or a URL to fetch: a
        # secret store or a pasted string is no place to trust one from.
        raise _bad_json(size, f"; {why}")
    kind = info.get("type", "service_account")
    try:
        if kind == "service_account":
            missing = [f for f in _SA_FIELDS if not isinstance(info.get(f), str) or not info[f]]
            if missing:
                raise _bad_json(size, f"; missing {', '.join(missing)}")
            from google.oauth2 import service_account

            creds = service_account.Credentials.from_service_account_info(info, scopes=[SCOPE])
            return creds, "service account"
        if kind == "authorized_user":  # what `gcloud auth application-default login` writes
            from google.oauth2 import credentials as user_credentials

            creds = user_credentials.Credentials.from_authorized_user_info(info, scopes=[SCOPE])
            return creds, "user credentials"
        raise _bad_json(size, "; unsupported credential type")  # credential_refusal's job
    except _Failed:
        raise
    except Exception as err:  # noqa: BLE001 - any failure means the same to the user
        # Only the type: key loaders' messages are not ours to vet for secret text.
        raise _bad_json(size, f"; google-auth rejected it: {type(err).__name__}") from None


def _from_text(text: Any) -> tuple[Any, str]:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad_json(f"{len(text)} bytes", "; not UTF-8") from None
    if text is None or (isinstance(text, str) and not text.strip()):
        raise _Failed("is empty")
    if not isinstance(text, str):
        raise _Failed(f"is a {type(text).__name__}, expected service-account JSON text")
    try:
        info = json.loads(text)
    except Exception:  # noqa: BLE001 - the message may quote the document: never show it
        raise _bad_json(f"{len(text)} characters") from None
    return _from_info(info, f"{len(text)} characters")


def _from_file(path: str) -> tuple[Any, str]:
    shown = shown_path(path)
    if path.lstrip().startswith("{"):
        raise _Failed("holds JSON content, not a path: put it in a file, or pass it as "
                      "credentials=")
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        raise _Failed(f"{shown} does not exist") from None
    except OSError as err:
        raise _Failed(f"{shown} cannot be read ({type(err).__name__})") from None
    try:
        creds, kind = _from_text(data)
    except _Failed as err:
        raise _Failed(f"{shown} {err}") from None
    return creds, f"{kind} from {shown}"


def _explicit(explicit: Any) -> tuple[Any, str]:
    if isinstance(explicit, dict):
        creds, kind = _from_info(explicit, f"a dict of {len(explicit)} fields")
        return creds, f"credentials= argument ({kind})"
    if isinstance(explicit, os.PathLike):
        explicit = os.fspath(explicit)
    if isinstance(explicit, (str, bytes)):
        text = explicit.decode("utf-8", "replace") if isinstance(explicit, bytes) else explicit
        if text.lstrip().startswith("{"):
            creds, kind = _from_text(explicit)
            return creds, f"credentials= argument ({kind} JSON)"
        creds, where = _from_file(text)
        return creds, f"credentials= argument ({where})"
    from google.auth.credentials import Credentials

    if isinstance(explicit, Credentials):
        return explicit, f"credentials= argument ({type(explicit).__name__})"
    raise _Failed(f"is a {type(explicit).__name__}; expected a google.auth credentials object, "
                  "a service-account JSON path, or its content")


def _env_file(env: Mapping[str, str], **_: Any) -> tuple[Any, str]:
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if not path:
        raise _Failed("not set")
    creds, where = _from_file(path)
    return creds, f"GOOGLE_APPLICATION_CREDENTIALS ({where})"


def _kaggle_secret(env: Mapping[str, str], *, name: str, **_: Any) -> tuple[Any, str]:
    try:
        from kaggle_secrets import UserSecretsClient
    except Exception:  # noqa: BLE001 - platform modules fail in many ways off-platform
        raise _Failed("kaggle_secrets is not importable (not on Kaggle)") from None
    try:
        value = UserSecretsClient().get_secret(name)
    except Exception as err:  # noqa: BLE001 - its errors have no documented type
        raise _Failed(f"not set or not attached to this notebook (Add-ons → Secrets; "
                      f"{type(err).__name__})") from None
    creds, kind = _from_text(value)
    return creds, f"Kaggle secret {name} ({kind})"


_COLAB_SECRET_ERRORS = {
    "SecretNotFoundError": "not set (🔑 Secrets in Colab's left sidebar)",
    "NotebookAccessError": "notebook access is off (switch it on in 🔑 Secrets)",
}


def _colab_secret(env: Mapping[str, str], *, name: str, **_: Any) -> tuple[Any, str]:
    try:
        from google.colab import userdata
    except Exception:  # noqa: BLE001 - platform modules fail in many ways off-platform
        raise _Failed("google.colab.userdata is not importable (not on Colab)") from None
    try:
        value = userdata.get(name)
    except Exception as err:  # noqa: BLE001 - matched by name below
        why = _COLAB_SECRET_ERRORS.get(type(err).__name__,
                                       f"cannot be read ({type(err).__name__})")
        raise _Failed(why) from None
    creds, kind = _from_text(value)
    return creds, f"Colab secret {name} ({kind})"


def _google_default() -> str:
    # google.auth.default reads the process environment, and would build an external
    # account (whose token source may run a command) from the file it finds: read that file
    # first, and refuse such a one before google.auth sees it.
    if (why := default_credentials_refusal(os.environ)) is not None:
        raise _Failed(f"refused: {why}")
    import google.auth

    try:
        creds, _ = google.auth.default(scopes=[SCOPE])
    except Exception as err:  # noqa: BLE001 - metadata probes can fail in transport
        raise _Failed(f"not available ({type(err).__name__})") from None
    if refused_credentials(creds):
        raise _Failed(f"refused: {type(creds).__name__} is an external account")
    return f"{type(creds).__module__}.{type(creds).__qualname__}"


def _colab_auth(env: Mapping[str, str], *, interactive: bool, **_: Any) -> tuple[Any, str]:
    if not interactive:
        raise _Failed("skipped: not in an interactive notebook (pass interactive=True)")
    try:
        from google.colab import auth
    except Exception:  # noqa: BLE001 - platform modules fail in many ways off-platform
        raise _Failed("google.colab.auth is not importable (not on Colab)") from None
    try:
        auth.authenticate_user()
    except Exception as err:  # noqa: BLE001 - a closed popup, a timeout, ...
        raise _Failed(f"authenticate_user() failed ({type(err).__name__})") from None
    kind = _google_default()
    return None, f"Colab login (google.colab.auth, Google default credentials: {kind})"


def _default(env: Mapping[str, str], **_: Any) -> tuple[Any, str]:
    return None, f"Google default credentials ({_google_default()})"


_SOURCES: dict[str, tuple[str, Callable[..., tuple[Any, str]], str]] = {
    # source: (label in messages, how to try it, what to do about it)
    "GOOGLE_APPLICATION_CREDENTIALS": (
        "GOOGLE_APPLICATION_CREDENTIALS", _env_file,
        "set GOOGLE_APPLICATION_CREDENTIALS to the path of a service-account JSON file"),
    "kaggle_secret": (
        "Kaggle secret {name}", _kaggle_secret,
        ("Kaggle: Add-ons → Secrets → add {name} holding the service-account JSON, and "
         "attach it to this notebook")),
    "colab_secret": (
        "Colab secret {name}", _colab_secret,
        "Colab: 🔑 Secrets → add {name} holding the service-account JSON, with notebook access"),
    "colab_auth": (
        "Colab login", _colab_auth,
        "Colab: run google.colab.auth.authenticate_user() in a cell"),
    "default": (
        "Google default credentials", _default,
        "on your own machine: gcloud auth application-default login"),
}


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:  # noqa: BLE001 - a guess; never a reason to fail
        return False
    return getattr(shell, "kernel", None) is not None


def find_credentials(explicit: Any = None, *, platform: str | None = None,
                     secret_name: str | None = None,
                     environ: Mapping[str, str] | None = None,
                     interactive: bool | None = None) -> tuple[Any, str]:
    """``(credentials, where_found)`` for ``open_store(url, credentials=...)``.

    Order: ``explicit`` (a google.auth credentials object, a service-account JSON path, its
    content, or a dict); anonymous when ``STORAGE_EMULATOR_HOST`` is set (as GCSStore does);
    then the sources the platform's profile lists (``platform`` or the detected one).
    ``secret_name`` defaults to the profile's (``GCS_SERVICE_ACCOUNT``). ``interactive``
    allows Colab's login popup; by default it is on inside a notebook kernel. The
    ``default`` source reads the process environment, as google.auth does.

    Raises ConfigError listing every source tried and why it failed; it never contains
    secret material.
    """
    env = os.environ if environ is None else environ
    if explicit is not None:
        try:
            creds, where = _explicit(explicit)
        except _Failed as err:
            reason = str(err)
        else:
            log.info("GCS credentials: %s", where)
            return creds, where
        # Outside the except block: no exception context can carry secret text along.
        raise ConfigError(f"GCS credentials: credentials= argument {reason}")
    if env.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        log.info("GCS credentials: anonymous (STORAGE_EMULATOR_HOST)")
        return AnonymousCredentials(), "anonymous (STORAGE_EMULATOR_HOST)"
    profile = load_profile(platform) if platform is not None else resolve_platform(environ=env)
    name = secret_name or profile.secret_name
    if interactive is None:
        interactive = _in_notebook()
    tried: list[str] = []
    hints: list[str] = ["pass credentials= (a service-account JSON path or its content)"]
    for source in profile.credentials:
        if source == "argument":
            tried.append("credentials= argument: not given")
            continue
        label, attempt, hint = _SOURCES[source]
        label, hint = label.format(name=name), hint.format(name=name)
        try:
            creds, where = attempt(env, name=name, interactive=interactive)
        except _Failed as err:
            tried.append(f"{label}: {err}")
            hints.append(hint)
            log.debug("GCS credentials: %s: %s", label, err)
            continue
        log.info("GCS credentials: %s", where)
        return creds, where
    lines = "\n".join(f"  - {t}" for t in tried)
    todo = "\n".join(f"  - {h}" for h in hints)
    raise ConfigError(f"no usable GCS credentials on platform {profile.name}; tried:\n{lines}\n"
                      f"to fix, do one of:\n{todo}")


__all__ = ["SCOPE", "find_credentials"]
