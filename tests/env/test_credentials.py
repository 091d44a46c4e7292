"""GCS credential discovery: each source, their order, the error, and no secret leaking.

Only the Kaggle and Colab runtime modules are fakes (written as real packages in a temporary
folder on sys.path); google.auth, google.oauth2 and the key handling are the real libraries.
Keys are generated per test session and never written to the repository.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.oauth2 import service_account

from islandsync.env.credentials import SCOPE, find_credentials
from islandsync.errors import ConfigError
from tests.conftest import EMAIL, MARKER, PLATFORM_VARS



@pytest.fixture(scope="session")
def private_key() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


@pytest.fixture
def sa_info(private_key: str) -> dict[str, str]:
    """A valid service account whose key and key id both carry the marker (PEM loaders skip
    text before the BEGIN line)."""
    return {
        "type": "service_account", "project_id": "islandsync-test",
        "private_key_id": f"{MARKER}-id", "private_key": f"{MARKER}\n{private_key}",
        "client_email": EMAIL, "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A process environment with no credentials anywhere; the returned dict is what the
    tests pass as ``environ`` (google.auth itself reads os.environ)."""
    for var in ["GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST", *PLATFORM_VARS]:
        monkeypatch.delenv(var, raising=False)
    gcloud = tmp_path / "gcloud"
    gcloud.mkdir()
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(gcloud))  # where ADC files live
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # no metadata-server probe
    monkeypatch.setenv("HOME", str(tmp_path))
    return {}


def write_adc(info: dict[str, Any]) -> None:
    import os

    path = Path(os.environ["CLOUDSDK_CONFIG"]) / "application_default_credentials.json"
    path.write_text(json.dumps(info))


FAKE_KAGGLE = '''
SECRETS = {}
FAIL_WITH = None

class BackendError(Exception):
    pass

class UserSecretsClient:
    def get_secret(self, label):
        if FAIL_WITH is not None:
            raise FAIL_WITH
        if label not in SECRETS:
            raise BackendError("Unexpected response from the service. Response: "
                               "{'errors': ['No user secrets exist for kernel id 1 and label %s']}"
                               % label)
        return SECRETS[label]
'''

FAKE_USERDATA = '''
SECRETS = {}
ACCESS = True

class SecretNotFoundError(Exception):
    pass

class NotebookAccessError(Exception):
    pass

def get(key):
    if not ACCESS:
        raise NotebookAccessError(key)
    if key not in SECRETS:
        raise SecretNotFoundError(key)
    return SECRETS[key]
'''

FAKE_AUTH = '''
import json, os
CALLS = []
ADC = None       # what the login writes as application default credentials
FAIL = None

def authenticate_user():
    CALLS.append(1)
    if FAIL is not None:
        raise FAIL
    if ADC is not None:
        path = os.path.join(os.environ["CLOUDSDK_CONFIG"], "application_default_credentials.json")
        with open(path, "w") as f:
            json.dump(ADC, f)
'''


@pytest.fixture
def fake_runtimes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Importable ``kaggle_secrets`` and ``google.colab`` (userdata, auth) packages; the
    ``google.colab`` folder joins the real ``google`` namespace package."""
    root = tmp_path / "runtimes"
    (root / "google" / "colab").mkdir(parents=True)
    (root / "kaggle_secrets.py").write_text(textwrap.dedent(FAKE_KAGGLE))
    (root / "google" / "colab" / "__init__.py").write_text("")
    (root / "google" / "colab" / "userdata.py").write_text(textwrap.dedent(FAKE_USERDATA))
    (root / "google" / "colab" / "auth.py").write_text(textwrap.dedent(FAKE_AUTH))
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    try:
        import google.auth  # still the real one
        import kaggle_secrets
        from google.colab import auth, userdata

        assert "site-packages" in google.auth.__file__
        yield {"kaggle": kaggle_secrets, "userdata": userdata, "auth": auth}
    finally:
        for name in ["kaggle_secrets", "google.colab", "google.colab.userdata",
                     "google.colab.auth"]:
            sys.modules.pop(name, None)
        importlib.invalidate_caches()


def assert_clean(*texts: Any) -> None:
    for text in texts:
        text = str(text)
        assert MARKER not in text
        assert "PRIVATE KEY" not in text


def error_texts(err: BaseException) -> list[str]:
    """The error and everything chained to it, as a traceback would show them."""
    out: list[str] = []
    seen: BaseException | None = err
    while seen is not None:
        out += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return out


def assert_sa(creds: Any) -> None:
    assert isinstance(creds, service_account.Credentials)
    assert creds.service_account_email == EMAIL
    assert SCOPE in (creds.scopes or [])


# -- each source -------------------------------------------------------------------------

def test_explicit_credentials_object_is_returned_as_is(env: dict) -> None:
    given = AnonymousCredentials()
    creds, where = find_credentials(given, platform="local", environ=env)
    assert creds is given and where == "credentials= argument (AnonymousCredentials)"


@pytest.mark.parametrize("form", ["dict", "str", "bytes", "path", "pathlike"])
def test_explicit_service_account(form: str, env: dict, sa_info: dict, tmp_path: Path,
                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sa_info))
    given = {"dict": sa_info, "str": json.dumps(sa_info), "bytes": json.dumps(sa_info).encode(),
             "path": str(key_file), "pathlike": key_file}[form]
    creds, where = find_credentials(given, platform="kaggle", environ=env)
    assert_sa(creds)
    assert where.startswith("credentials= argument (service account")
    if form in ("path", "pathlike"):
        assert str(key_file) in where
    assert_clean(where, repr(where), caplog.text)


def test_explicit_failure_does_not_fall_through(env: dict, sa_info: dict, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # A credentials= the caller chose must not be silently replaced by something else.
    write_adc(sa_info)
    with pytest.raises(ConfigError) as err:
        find_credentials(str(tmp_path / "nope.json"), platform="local", environ=env)
    assert f"'{tmp_path / 'nope.json'}' does not exist" in str(err.value)
    with pytest.raises(ConfigError, match="expected a google.auth credentials object"):
        find_credentials(42, platform="local", environ=env)


def test_emulator_gives_anonymous(env: dict, sa_info: dict, tmp_path: Path) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sa_info))
    env = {"STORAGE_EMULATOR_HOST": "http://127.0.0.1:9", "GOOGLE_APPLICATION_CREDENTIALS":
           str(key_file)}
    creds, where = find_credentials(platform="local", environ=env)
    assert isinstance(creds, AnonymousCredentials)
    assert where == "anonymous (STORAGE_EMULATOR_HOST)"
    # As in GCSStore, an explicit credentials= still wins over the emulator.
    creds, _ = find_credentials(sa_info, platform="local", environ=env)
    assert_sa(creds)


def test_google_application_credentials(env: dict, sa_info: dict, tmp_path: Path) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sa_info))
    creds, where = find_credentials(platform="paperspace",
                                    environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)})
    assert_sa(creds)
    assert where == f"GOOGLE_APPLICATION_CREDENTIALS (service account from '{key_file}')"


def test_kaggle_secret(env: dict, sa_info: dict, fake_runtimes: dict) -> None:
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    creds, where = find_credentials(platform="kaggle", environ=env)
    assert_sa(creds)
    assert where == "Kaggle secret GCS_SERVICE_ACCOUNT (service account)"
    fake_runtimes["kaggle"].SECRETS["MY_KEY"] = json.dumps(sa_info)
    _, where = find_credentials(platform="kaggle", secret_name="MY_KEY", environ=env)
    assert where == "Kaggle secret MY_KEY (service account)"


def test_colab_secret(env: dict, sa_info: dict, fake_runtimes: dict) -> None:
    fake_runtimes["userdata"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    creds, where = find_credentials(platform="colab", environ=env, interactive=True)
    assert_sa(creds)
    assert where == "Colab secret GCS_SERVICE_ACCOUNT (service account)"
    assert fake_runtimes["auth"].CALLS == []  # the secret came first: no login popup


def test_colab_login_when_interactive(env: dict, sa_info: dict, fake_runtimes: dict) -> None:
    fake_runtimes["auth"].ADC = sa_info
    creds, where = find_credentials(platform="colab", environ=env, interactive=True)
    assert creds is None  # GCSStore resolves Google default credentials itself
    assert where.startswith("Colab login (google.colab.auth")
    assert fake_runtimes["auth"].CALLS == [1]


def test_colab_no_login_when_not_interactive(env: dict, fake_runtimes: dict) -> None:
    fake_runtimes["auth"].ADC = {"never": "used"}
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="colab", environ=env, interactive=False)
    assert fake_runtimes["auth"].CALLS == []
    assert "Colab login: skipped: not in an interactive notebook" in str(err.value)
    # Outside a notebook kernel (pytest), interactive defaults to off.
    with pytest.raises(ConfigError):
        find_credentials(platform="colab", environ=env)
    assert fake_runtimes["auth"].CALLS == []


def test_google_default_credentials(env: dict, sa_info: dict) -> None:
    write_adc(sa_info)
    creds, where = find_credentials(platform="local", environ=env)
    assert creds is None
    assert where == "Google default credentials (google.oauth2.service_account.Credentials)"


def test_detected_platform_is_used(env: dict, sa_info: dict, fake_runtimes: dict) -> None:
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    _, where = find_credentials(environ={"KAGGLE_KERNEL_RUN_TYPE": "Batch"})
    assert where.startswith("Kaggle secret")


def test_unknown_platform(env: dict) -> None:
    with pytest.raises(ConfigError, match="unknown platform 'atari'"):
        find_credentials(platform="atari", environ=env)


# -- precedence --------------------------------------------------------------------------

def test_precedence_on_kaggle(env: dict, sa_info: dict, private_key: str, tmp_path: Path,
                              fake_runtimes: dict) -> None:
    other = {**sa_info, "client_email": "other@islandsync-test.iam.gserviceaccount.com"}
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(sa_info))
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(other)
    write_adc(other)
    full = {"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)}

    # explicit > GOOGLE_APPLICATION_CREDENTIALS > Kaggle secret > default
    creds, where = find_credentials(other, platform="kaggle", environ=full)
    assert where.startswith("credentials= argument")
    creds, where = find_credentials(platform="kaggle", environ=full)
    assert where.startswith("GOOGLE_APPLICATION_CREDENTIALS") and creds.service_account_email == EMAIL
    creds, where = find_credentials(platform="kaggle", environ=env)
    assert where.startswith("Kaggle secret")
    assert creds.service_account_email == other["client_email"]
    fake_runtimes["kaggle"].SECRETS.clear()
    creds, where = find_credentials(platform="kaggle", environ=env)
    assert creds is None and where.startswith("Google default credentials")


def test_missing_env_file_falls_through(env: dict, sa_info: dict, fake_runtimes: dict,
                                        tmp_path: Path) -> None:
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    missing = {"GOOGLE_APPLICATION_CREDENTIALS": str(tmp_path / "x.json")}
    creds, where = find_credentials(platform="kaggle", environ=missing)
    assert_sa(creds)
    assert where.startswith("Kaggle secret")


def test_precedence_on_colab(env: dict, sa_info: dict, fake_runtimes: dict) -> None:
    fake_runtimes["auth"].ADC = sa_info
    fake_runtimes["userdata"].ACCESS = False
    _, where = find_credentials(platform="colab", environ=env, interactive=True)
    assert where.startswith("Colab login")
    fake_runtimes["userdata"].ACCESS = True
    fake_runtimes["userdata"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    _, where = find_credentials(platform="colab", environ=env, interactive=True)
    assert where.startswith("Colab secret")
    assert fake_runtimes["auth"].CALLS == [1]


def test_secret_stores_are_not_used_elsewhere(env: dict, sa_info: dict,
                                              fake_runtimes: dict) -> None:
    # A laptop that happens to have kaggle_secrets installed must not use it.
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    fake_runtimes["userdata"].SECRETS["GCS_SERVICE_ACCOUNT"] = json.dumps(sa_info)
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="local", environ=env)
    assert "secret" not in str(err.value).split("to fix")[0].lower()


# -- the error ---------------------------------------------------------------------------

def test_error_lists_every_attempt_on_kaggle(env: dict, tmp_path: Path,
                                             fake_runtimes: dict) -> None:
    missing = str(tmp_path / "x.json")
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="kaggle",
                         environ={"GOOGLE_APPLICATION_CREDENTIALS": missing})
    lines = str(err.value).splitlines()
    assert lines[0] == "no usable GCS credentials on platform kaggle; tried:"
    assert lines[1:5] == [
        "  - credentials= argument: not given",
        f"  - GOOGLE_APPLICATION_CREDENTIALS: '{missing}' does not exist",
        ("  - Kaggle secret GCS_SERVICE_ACCOUNT: not set or not attached to this notebook "
         "(Add-ons → Secrets; BackendError)"),
        "  - Google default credentials: not available (DefaultCredentialsError)",
    ]
    assert lines[5] == "to fix, do one of:"
    fixes = "\n".join(lines[6:])
    assert "credentials=" in fixes and "GOOGLE_APPLICATION_CREDENTIALS" in fixes
    assert "Add-ons → Secrets → add GCS_SERVICE_ACCOUNT" in fixes
    assert err.value.__cause__ is None and err.value.__context__ is None


def test_error_lists_every_attempt_on_colab(env: dict, fake_runtimes: dict) -> None:
    fake_runtimes["auth"].FAIL = RuntimeError("popup closed")
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="colab", environ=env, interactive=True)
    text = str(err.value)
    assert "  - GOOGLE_APPLICATION_CREDENTIALS: not set" in text
    assert "  - Colab secret GCS_SERVICE_ACCOUNT: not set (🔑 Secrets" in text
    assert "  - Colab login: authenticate_user() failed (RuntimeError)" in text
    assert "  - Google default credentials: not available" in text
    assert "google.colab.auth.authenticate_user()" in text


def test_error_off_platform(env: dict) -> None:
    # On "kaggle"/"colab" without their runtime modules: the reason says so.
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="kaggle", environ=env)
    assert "kaggle_secrets is not importable (not on Kaggle)" in str(err.value)
    with pytest.raises(ConfigError) as err:
        find_credentials(platform="colab", environ=env, interactive=True)
    assert "google.colab.userdata is not importable" in str(err.value)
    assert "google.colab.auth is not importable" in str(err.value)


# -- secrets never leak ------------------------------------------------------------------

def bad_contents(private_key: str) -> dict[str, str | None]:
    return {
        "not json": f"{MARKER} this is not JSON",
        "broken json": '{"type": "service_account", "private_key": "' + MARKER + '", ',
        "json list": f'["{MARKER}"]',
        "missing fields": json.dumps({"type": "service_account", "private_key": MARKER}),
        "malformed key": json.dumps({
            "type": "service_account", "client_email": EMAIL, "private_key_id": MARKER,
            "private_key": f"-----BEGIN PRIVATE KEY-----\n{MARKER}\n-----END PRIVATE KEY-----\n",
            "token_uri": "https://oauth2.googleapis.com/token"}),
        "key of another format": json.dumps({
            "type": "service_account", "client_email": EMAIL, "token_uri": "https://x",
            "private_key": private_key.replace("PRIVATE KEY", "RSA PRIVATE KEY") + MARKER}),
        "wrong type": json.dumps({"type": "authorized_user", "client_secret": MARKER}),
        "empty": "",
        "none": None,
    }


def check_failure(call: Any, caplog: pytest.LogCaptureFixture, *reason: str) -> str:
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as err:
        call()
    texts = error_texts(err.value)
    assert_clean(*texts, caplog.text, *(r.getMessage() for r in caplog.records),
                 *(repr(r.args) for r in caplog.records))
    assert all(word in texts[0] for word in reason), texts[0]
    return texts[0]


@pytest.mark.parametrize("case", list(bad_contents("k")))
def test_no_leak_from_kaggle_secret(case: str, env: dict, private_key: str,
                                    fake_runtimes: dict, caplog: pytest.LogCaptureFixture) -> None:
    value = bad_contents(private_key)[case]
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = value
    text = check_failure(lambda: find_credentials(platform="kaggle", environ=env), caplog,
                         "Kaggle secret GCS_SERVICE_ACCOUNT:")
    if value:
        assert f"({len(value)} characters" in text or "is a " in text


@pytest.mark.parametrize("case", list(bad_contents("k")))
def test_no_leak_from_colab_secret(case: str, env: dict, private_key: str,
                                   fake_runtimes: dict, caplog: pytest.LogCaptureFixture) -> None:
    fake_runtimes["userdata"].SECRETS["GCS_SERVICE_ACCOUNT"] = bad_contents(private_key)[case]
    check_failure(lambda: find_credentials(platform="colab", environ=env, interactive=False),
                  caplog, "Colab secret GCS_SERVICE_ACCOUNT:")


@pytest.mark.parametrize("case", [c for c in bad_contents("k") if c != "none"])
def test_no_leak_from_env_file(case: str, env: dict, private_key: str, tmp_path: Path,
                               caplog: pytest.LogCaptureFixture) -> None:
    key_file = tmp_path / "key.json"
    key_file.write_text(bad_contents(private_key)[case] or "")
    check_failure(lambda: find_credentials(
        platform="local", environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)}),
        caplog, f"GOOGLE_APPLICATION_CREDENTIALS: '{key_file}'")


@pytest.mark.parametrize("case", [c for c in bad_contents("k") if c not in ("none", "empty")])
def test_no_leak_from_explicit(case: str, env: dict, private_key: str,
                               caplog: pytest.LogCaptureFixture) -> None:
    value = bad_contents(private_key)[case]
    assert value is not None
    for given in (value, value.encode()):
        check_failure(lambda g=given: find_credentials(g, platform="local", environ=env),
                      caplog, "credentials= argument")
    if value.startswith("{"):
        try:
            info = json.loads(value)
        except json.JSONDecodeError:
            return
        check_failure(lambda: find_credentials(info, platform="local", environ=env),
                      caplog, "credentials= argument")


def test_no_leak_of_json_content_in_env_var(env: dict, sa_info: dict,
                                            caplog: pytest.LogCaptureFixture) -> None:
    # JSON pasted into GOOGLE_APPLICATION_CREDENTIALS instead of a path.
    text = check_failure(lambda: find_credentials(
        platform="local", environ={"GOOGLE_APPLICATION_CREDENTIALS": json.dumps(sa_info)}),
        caplog, "holds JSON content, not a path")
    assert "GOOGLE_APPLICATION_CREDENTIALS" in text


def test_no_leak_of_pasted_secret_as_path(env: dict, caplog: pytest.LogCaptureFixture) -> None:
    secret = f"ya29.{MARKER}AbCdEf0123456789"
    text = check_failure(lambda: find_credentials(secret, platform="local", environ=env),
                         caplog, "not a path")
    assert f"{len(secret)}-character" in text


def test_no_leak_from_secret_store_errors(env: dict, fake_runtimes: dict,
                                          caplog: pytest.LogCaptureFixture) -> None:
    # Whatever a secret store's exception says stays out of our messages.
    fake_runtimes["kaggle"].FAIL_WITH = RuntimeError(f"backend echoed {MARKER}")
    check_failure(lambda: find_credentials(platform="kaggle", environ=env), caplog,
                  "(Add-ons → Secrets; RuntimeError)")


@pytest.mark.parametrize("source", ["kaggle", "colab", "env", "explicit"])
def test_no_leak_on_success(source: str, env: dict, sa_info: dict, tmp_path: Path,
                            fake_runtimes: dict, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    content = json.dumps(sa_info)
    fake_runtimes["kaggle"].SECRETS["GCS_SERVICE_ACCOUNT"] = content
    fake_runtimes["userdata"].SECRETS["GCS_SERVICE_ACCOUNT"] = content
    key_file = tmp_path / "key.json"
    key_file.write_text(content)
    creds, where = {
        "kaggle": lambda: find_credentials(platform="kaggle", environ=env),
        "colab": lambda: find_credentials(platform="colab", environ=env),
        "env": lambda: find_credentials(
            platform="local", environ={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)}),
        "explicit": lambda: find_credentials(content, platform="local", environ=env),
    }[source]()
    assert_sa(creds)
    assert_clean(where, repr(where), caplog.text)
    assert any(where in r.getMessage() for r in caplog.records)


# -- credential types --------------------------------------------------------------------

def test_authorized_user_json_is_accepted(env: dict) -> None:
    from google.oauth2 import credentials as user_credentials

    info = {"type": "authorized_user", "client_id": "id.apps.googleusercontent.com",
            "client_secret": MARKER, "refresh_token": f"1//{MARKER}"}
    creds, where = find_credentials(json.dumps(info), platform="local", environ=env)
    assert isinstance(creds, user_credentials.Credentials)
    assert where == "credentials= argument (user credentials JSON)"
    assert_clean(where)


def test_external_account_json_is_refused(env: dict, caplog: pytest.LogCaptureFixture) -> None:
    # Such configs can name a command to run: never accepted from a secret or a string.
    info = {"type": "external_account", "audience": MARKER,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"executable": {"command": f"/bin/echo {MARKER}"}}}
    text = check_failure(lambda: find_credentials(info, platform="local", environ=env),
                         caplog, "unsupported credential type")
    assert "executable" not in text


# -- external accounts are refused on every path, google.auth.default included ------------

def external_account(marker_file: Path) -> dict[str, Any]:
    """An external account whose token source runs a command that would leave a file."""
    return {"type": "external_account", "audience": MARKER,
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": "https://sts.googleapis.com/v1/token",
            "credential_source": {"executable": {"command": f"/usr/bin/touch {marker_file}",
                                                 "timeout_millis": 5000}}}


@pytest.mark.parametrize("where", ["GOOGLE_APPLICATION_CREDENTIALS", "gcloud ADC file"])
def test_default_credentials_refuse_an_external_account(
        where: str, env: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The `default` source: google.auth.default would build an external account from the
    file GOOGLE_APPLICATION_CREDENTIALS names (or gcloud's ADC file), whose token source runs
    a command. The file is read first and refused; google.auth never sees it."""
    ran = tmp_path / "the-command-ran"
    monkeypatch.setenv("GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES", "1")
    if where == "gcloud ADC file":
        write_adc(external_account(ran))
    else:
        path = tmp_path / "ext.json"
        path.write_text(json.dumps(external_account(ran)))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    # environ={} keeps the GOOGLE_APPLICATION_CREDENTIALS source out: only `default` reads it
    text = check_failure(lambda: find_credentials(platform="local", environ={}), caplog,
                         "Google default credentials: refused", "unsupported credential type")
    assert "executable" not in text and not ran.exists()


def test_credential_source_is_refused_whatever_the_type(
        env: dict, sa_info: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ran = tmp_path / "the-command-ran"
    info = {**sa_info, "credential_source": external_account(ran)["credential_source"]}
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    for call in (lambda: find_credentials(info, platform="local", environ=env),
                 lambda: find_credentials(json.dumps(info), platform="local", environ=env),
                 lambda: find_credentials(platform="local", environ={
                     "GOOGLE_APPLICATION_CREDENTIALS": str(key_file)})):
        check_failure(call, caplog, "credential_source")
    assert not ran.exists()


@pytest.mark.parametrize("kind", ["impersonated_service_account", "gdch_service_account",
                                  "external_account_authorized_user", None])
def test_only_service_accounts_and_user_credentials_are_accepted(
        kind: str | None, env: dict, sa_info: dict, caplog: pytest.LogCaptureFixture) -> None:
    info = {**sa_info, "type": kind}
    check_failure(lambda: find_credentials(info, platform="local", environ=env), caplog,
                  "unsupported credential type")


def test_default_credentials_named_by_a_pasted_secret_are_not_echoed(
        env: dict, private_key: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", f"{MARKER} {private_key}")
    check_failure(lambda: find_credentials(platform="local", environ={}), caplog,
                  "Google default credentials: refused", "not a path")
