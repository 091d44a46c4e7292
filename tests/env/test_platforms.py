"""Platform profiles, detection and session deadlines."""

from __future__ import annotations

import importlib
import importlib.machinery
import math
import re
import sys
import types
from pathlib import Path

import pytest

from islandsync.errors import ConfigError
from islandsync.env.platforms import (
    CREDENTIAL_SOURCES,
    SESSION_LIMIT_ENV,
    PlatformProfile,
    _parse_profile,
    detect_platform,
    known_platforms,
    load_profile,
    resolve_platform,
    session_deadline,
    session_limit,
)

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "islandsync" / "env" / "profiles"
PLATFORMS = ["colab", "kaggle", "local", "paperspace"]
SOURCED = ["session_limit_s", "idle_timeout_s", "default_max_islands", "gpu_quota_h_per_week",
           "workers_allowed", "drain_margin_s", "typical_device"]
#: How a sourced value was checked: the date, and whether against its source or from memory.
CHECKED = re.compile(r"^2026-\d\d \((search|memory)\b")


def NEVER(name: str) -> bool:
    """An ``importable`` that finds nothing, so tests do not depend on this machine."""
    return False


# -- profiles ----------------------------------------------------------------------------

def test_known_platforms() -> None:
    assert known_platforms() == PLATFORMS


@pytest.mark.parametrize("name", PLATFORMS)
def test_profiles_load(name: str) -> None:
    profile = load_profile(name)
    assert isinstance(profile, PlatformProfile)
    assert profile.name == name
    assert profile.default_max_islands >= 1
    assert profile.workers_allowed in ("yes", "paid-tier-only", "no")
    assert re.match(r"^\d{4}-\d\d$", profile.checked)
    assert profile.secret_name == "GCS_SERVICE_ACCOUNT"
    assert set(profile.credentials) <= CREDENTIAL_SOURCES
    assert profile.credentials[0] == "argument" and profile.credentials[-1] == "default"
    if profile.session_limit_s is not None:
        # Draining must leave most of a session for work.
        assert profile.drain_margin_s < profile.session_limit_s / 10


def test_profile_values() -> None:
    kaggle, colab = load_profile("kaggle"), load_profile("colab")
    paperspace, local = load_profile("paperspace"), load_profile("local")
    assert kaggle.session_limit_s == 12 * 3600 and kaggle.idle_timeout_s is None
    assert kaggle.typical_device == "2x T4 or P100"
    assert "kaggle_secret" in kaggle.credentials
    assert colab.session_limit_s == 12 * 3600 and colab.idle_timeout_s == 60 * 60
    assert colab.typical_device == "T4"
    assert colab.credentials.index("colab_secret") < colab.credentials.index("colab_auth")
    assert paperspace.session_limit_s == 6 * 3600
    assert paperspace.typical_device == "M4000/P5000 (free tier)"
    assert local.session_limit_s is None and local.idle_timeout_s is None
    # Colab's FAQ: no distributed computing workers without a paid balance (issue 14).
    assert colab.workers_allowed == "paid-tier-only" and "Pro" in colab.tier_needed
    assert kaggle.workers_allowed == paperspace.workers_allowed == "yes"
    assert kaggle.gpu_quota_h_per_week == 30 and colab.gpu_quota_h_per_week is None
    # Nothing read a profile's checkpoint interval: it is the run's choice now.
    assert not hasattr(kaggle, "checkpoint_interval_s")
    for notebook in (kaggle, colab, paperspace):
        assert notebook.drain_margin_s == 600


@pytest.mark.parametrize("name", PLATFORMS)
def test_every_value_has_a_source(name: str) -> None:
    data = tomllib.loads((PACKAGED / f"{name}.toml").read_text(encoding="utf-8"))
    sources = data["sources"]
    for field in SOURCED:
        if field not in data:
            continue
        source = sources.get(field)
        assert isinstance(source, dict), f"{name}.toml: no [sources.{field}]"
        assert source.get("kind") in {"documented", "observed", "choice"}, (name, field)
        assert isinstance(source.get("says"), str) and len(source["says"]) > 20, (name, field)
        if source["kind"] != "choice":
            assert str(source.get("url", "")).startswith("https://"), (name, field)
            assert CHECKED.match(str(source.get("checked", ""))), (name, field)
    assert set(sources) <= set(SOURCED), f"{name}.toml: a source for a field that is not there"


def test_each_profile_has_one_copy() -> None:
    packaged = sorted(p.name for p in PACKAGED.glob("*.toml"))
    assert packaged == [f"{n}.toml" for n in PLATFORMS]
    copies = [p for p in ROOT.rglob("*.toml") if p.name in packaged and p.parent != PACKAGED
              and ".venv" not in p.parts and ".git" not in p.parts]
    assert copies == [], "a second copy of a profile: docs/platforms.md points at the one"


@pytest.mark.parametrize("name", ["nosuch", "../pyproject", "", "kaggle.toml"])
def test_unknown_platform(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_profile(name)
    assert repr(name) in str(err.value)
    assert "colab, kaggle, local, paperspace" in str(err.value)


def _valid() -> dict:
    return {"name": "x", "session_limit_s": 3600, "typical_device": "cpu",
            "default_max_islands": 4, "drain_margin_s": 60, "workers_allowed": "yes",
            "checked": "2026-11", "credentials": ["argument", "default"]}


@pytest.mark.parametrize("change, words", [
    ({"sesion_limit_s": 1}, "sesion_limit_s: unknown field"),
    ({"credentials": ["argument", "vault"]}, "credentials.1: Input should be 'argument'"),
    ({"credentials": ["default", "default"]}, "credentials: a source is listed twice"),
    ({"credentials": []}, "credentials: Tuple should have at least 1 item"),
    ({"drain_margin_s": 3600}, "drain_margin_s: (3600) must be shorter than session_limit_s"),
    ({"default_max_islands": True}, "default_max_islands: Input should be a valid integer"),
    ({"default_max_islands": 0}, "default_max_islands: Input should be greater than or equal"),
    ({"checkpoint_interval_s": 60}, "checkpoint_interval_s: unknown field"),
    ({"workers_allowed": "maybe"}, "workers_allowed: Input should be 'yes', 'paid-tier-only'"),
    ({"workers_allowed": "paid-tier-only"}, "tier_needed: say which tier"),
    ({"checked": None}, "checked: Field required"),
    ({"checked": "  "}, "checked: String should have at least 1 character"),
    ({"gpu_quota_h_per_week": -1}, "gpu_quota_h_per_week: Input should be greater"),
    ({"session_limit_s": -1}, "session_limit_s: Input should be greater than or equal to 0"),
    ({"idle_timeout_s": "90m"}, "idle_timeout_s: Input should be a valid number"),
    ({"name": "y"}, "name: is 'y', expected 'x'"),
    ({"typical_device": None}, "typical_device: Field required"),
    ({"sources": {"session_limit_s": {"kind": "rumour", "says": "x"}}},
     "sources.session_limit_s.kind: Input should be"),
    ({"sources": {"colour": {"kind": "choice", "says": "x"}}},
     "sources.colour: a source for a field a profile does not have"),
])
def test_invalid_profile(change: dict, words: str) -> None:
    # Refused naming the file (the source) and the field, as a run spec is.
    data = {k: v for k, v in {**_valid(), **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=None) as err:
        _parse_profile(data, "x", "profile x (x.toml)")
    assert str(err.value).startswith(f"profile x (x.toml): {words}"), str(err.value)


def test_zero_limit_means_unlimited() -> None:
    assert _parse_profile({**_valid(), "session_limit_s": 0}, "x", "x").session_limit_s is None
    assert _parse_profile({k: v for k, v in _valid().items() if k != "session_limit_s"},
                          "x", "x").session_limit_s is None


# -- detection ---------------------------------------------------------------------------

@pytest.mark.parametrize("env, expected", [
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, "kaggle"),
    ({"KAGGLE_URL_BASE": "https://www.kaggle.com"}, "kaggle"),
    ({"COLAB_RELEASE_TAG": "release-colab_20250101-060101_RC00"}, "colab"),
    ({"PAPERSPACE_NOTEBOOK_REPO_ID": "abc"}, "paperspace"),
    ({"PAPERSPACE_CLUSTER_ID": "cls1"}, "paperspace"),
    ({}, "local"),
    ({"KAGGLE_KERNEL_RUN_TYPE": ""}, "local"),  # empty counts as unset
    ({"HOME": "/root", "PATH": "/usr/bin"}, "local"),
    # Kaggle images carry Google packages: Kaggle wins.
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch", "COLAB_RELEASE_TAG": "x"}, "kaggle"),
    ({"COLAB_RELEASE_TAG": "x", "PAPERSPACE_CLUSTER_ID": "y"}, "colab"),
])
def test_detect_from_environment(env: dict, expected: str) -> None:
    assert detect_platform(env, importable=NEVER) == expected


def test_detect_colab_by_import() -> None:
    asked: list[str] = []

    def importable(name: str) -> bool:
        asked.append(name)
        return name == "google.colab"

    assert detect_platform({}, importable=importable) == "colab"
    assert asked == ["google.colab"]
    assert detect_platform({"KAGGLE_URL_BASE": "u"}, importable=importable) == "kaggle"


def test_detect_default_importable_finds_a_real_google_colab(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A google/colab package on sys.path joins the real `google` namespace package.
    (tmp_path / "google" / "colab").mkdir(parents=True)
    (tmp_path / "google" / "colab" / "__init__.py").write_text("")
    assert detect_platform({}) == "local"
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        assert detect_platform({}) == "colab"
        import google.auth  # the namespace still resolves the real packages

        assert google.auth.__version__
    finally:
        sys.modules.pop("google.colab", None)
    monkeypatch.undo()
    importlib.invalidate_caches()
    assert detect_platform({}) == "local"


def test_detect_default_importable_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = types.ModuleType("google.colab")
    broken.__spec__ = None  # find_spec raises ValueError for such a module
    monkeypatch.setitem(sys.modules, "google.colab", broken)
    assert detect_platform({}) == "local"
    broken.__spec__ = importlib.machinery.ModuleSpec("google.colab", None)
    assert detect_platform({}) == "colab"


def test_detect_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPERSPACE_CLUSTER_ID", "c")
    for var in ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(var, raising=False)
    assert detect_platform(importable=NEVER) == "paperspace"
    assert resolve_platform().name == "paperspace"


def test_platform_override_wins() -> None:
    env = {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}
    assert resolve_platform(environ=env).name == "kaggle"
    assert resolve_platform("local", environ=env).name == "local"
    assert resolve_platform(" Paperspace ", environ=env).name == "paperspace"


def test_platform_override_unknown() -> None:
    with pytest.raises(ConfigError) as err:
        resolve_platform("lambda-labs", environ={})
    text = str(err.value)
    assert text.startswith("--platform: unknown platform 'lambda-labs'")
    assert "colab, kaggle, local, paperspace" in text


# -- deadlines ---------------------------------------------------------------------------

def test_deadline_from_profile() -> None:
    kaggle = load_profile("kaggle")
    assert session_deadline(kaggle, started=1000.0, environ={}) == 1000 + 43200 - 600
    paperspace = load_profile("paperspace")
    assert session_deadline(paperspace, started=5.0, environ={}) == 5 + 21600 - 600
    assert session_deadline(load_profile("local"), started=5.0, environ={}) is None


def test_deadline_override() -> None:
    kaggle = load_profile("kaggle")
    env = {SESSION_LIMIT_ENV: "2h"}
    assert session_deadline(kaggle, started=100.0, override_s=3600, environ=env) == 3100
    local = load_profile("local")
    assert session_deadline(local, started=0.0, override_s=600, environ={}) == 540
    # A limit shorter than twice the margin keeps half of it for work.
    assert session_deadline(kaggle, started=0.0, override_s=300, environ={}) == 150


@pytest.mark.parametrize("value, limit", [
    ("11h", 39600), ("90m", 5400), ("30s", 30), ("3600", 3600), ("1.5h", 5400),
    (" 2H ", 7200), ("1d", 86400), ("45.5", 45.5),
])
def test_deadline_from_env(value: str, limit: float) -> None:
    colab = load_profile("colab")
    margin = min(colab.drain_margin_s, limit / 2)
    got = session_deadline(colab, started=10.0, environ={SESSION_LIMIT_ENV: value})
    assert got == pytest.approx(10 + limit - margin)


def test_env_limit_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SESSION_LIMIT_ENV, "2h")
    assert session_deadline(load_profile("local"), started=0.0) == 7200 - 60
    monkeypatch.setenv(SESSION_LIMIT_ENV, "")
    assert session_deadline(load_profile("local"), started=0.0) is None


@pytest.mark.parametrize("value", ["unlimited", "none", "0", "UNLIMITED"])
def test_env_limit_unlimited(value: str) -> None:
    kaggle = load_profile("kaggle")
    assert session_deadline(kaggle, started=0.0, environ={SESSION_LIMIT_ENV: value}) is None


@pytest.mark.parametrize("value", ["eleven hours", "-5", "11x", "h", "1e400", "5 m s", "0s",
                                   "nan", "inf"])
def test_bad_env_limit(value: str) -> None:
    with pytest.raises(ConfigError) as err:
        session_deadline(load_profile("kaggle"), started=0.0,
                         environ={SESSION_LIMIT_ENV: value})
    assert SESSION_LIMIT_ENV in str(err.value) and repr(value) in str(err.value)


@pytest.mark.parametrize("override", [0, -1.0, math.nan, math.inf, True, "1h"])
def test_bad_override(override: object) -> None:
    with pytest.raises(ConfigError, match="session limit override"):
        session_deadline(load_profile("kaggle"), started=0.0, override_s=override,  # type: ignore[arg-type]
                         environ={})


def test_session_limit_reads_durations_like_every_flag() -> None:
    # The one duration reader (islandsync.durations): the same units as --duration.
    env = {SESSION_LIMIT_ENV: "90m"}
    assert session_deadline(load_profile("local"), started=0.0, environ=env) is not None
    assert session_limit(load_profile("kaggle"), environ=env) == 5400.0
    assert session_limit(load_profile("kaggle"), environ={SESSION_LIMIT_ENV: "1d"}) == 86400.0


def test_profiles_are_declared_package_data() -> None:
    # Without this, a wheel ships no profiles and load_profile fails once installed.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    data = pyproject.get("tool", {}).get("setuptools", {}).get("package-data", {})
    assert "env/profiles/*.toml" in data.get("islandsync", []), (
        'pyproject.toml needs [tool.setuptools.package-data] '
        'islandsync = ["env/profiles/*.toml"]')
