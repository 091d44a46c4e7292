"""Where a worker runs: platform profiles, detection and session deadlines.

A profile (``islandsync/env/profiles/<name>.toml``, shipped as package data) says how long
a session on that platform lives, its idle timeout and accelerator quota, whether the
platform's rules allow a worker there (and on which tier), how long before the end to stop
taking islands, and where credentials come from. Every value in a profile names its public
source in the profile's ``[sources]`` table, with the date it was checked and how (against
the source, or from memory).

How often to checkpoint is the run's choice (``checkpoint_interval_s`` in run.json), not the
platform's: a run with workers on platforms that die without warning (Colab) should choose a
short one.

Deadlines are ``time.monotonic()`` values: they are compared only with this process's own
clock, never with another machine's (docs/design.md: no comparison of clocks across machines).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from islandsync.config._base import AS_TUPLE, STRICT, conflicts
from islandsync.config.loading import (
    _toml,  # one TOML reader (tomllib, or tomli on 3.10)
    format_errors,
)
from islandsync.durations import parse_duration
from islandsync.errors import ConfigError

#: Environment variable that overrides a profile's session limit ("11h", "90m", "3600").
SESSION_LIMIT_ENV = "ISLANDSYNC_SESSION_LIMIT"

#: Credential sources a profile may list, in the vocabulary of islandsync.env.credentials.
CredentialSource = Literal["argument", "GOOGLE_APPLICATION_CREDENTIALS", "kaggle_secret",
                           "colab_secret", "colab_auth", "default"]
CREDENTIAL_SOURCES = frozenset(CredentialSource.__args__)  # type: ignore[attr-defined]

_PROFILE_DIR = "profiles"
#: What a platform's own rules say about running an islandsync worker there.
WORKERS_ALLOWED = ("yes", "paid-tier-only", "no")
_UNLIMITED = {"0", "none", "unlimited"}

_Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class SourceNote(BaseModel):
    """Where one value of a profile comes from (a profile's ``[sources.<field>]``)."""

    model_config = STRICT
    kind: Literal["documented", "observed", "choice"]
    url: str = ""
    checked: str = ""
    says: _Text


class PlatformProfile(BaseModel):
    """One platform's limits and defaults, as its ``env/profiles/<name>.toml`` gives them.
    Strict as the run spec is: an unknown or misspelt field is an error, never a default.
    ``None`` limits mean "none known"; 0 in TOML (which has no null) means the same."""

    model_config = STRICT
    #: The platform, equal to the file's name.
    name: _Text
    #: How long a session may live (None: unlimited; $ISLANDSYNC_SESSION_LIMIT overrides).
    session_limit_s: float | None = Field(None, ge=0.0)
    #: Disconnect after this long without user interaction, where known.
    idle_timeout_s: float | None = Field(None, gt=0.0)
    #: What a free session usually gets.
    typical_device: _Text
    #: Islands a worker hosts when --max-islands is not given.
    default_max_islands: int = Field(ge=1)
    #: How long before the session deadline the worker stops taking islands.
    drain_margin_s: float = Field(ge=0.0)
    #: Where GCS credentials are looked for, in order (islandsync.env.credentials).
    credentials: Annotated[tuple[CredentialSource, ...], AS_TUPLE] = Field(min_length=1)
    #: The platform secret holding the service-account JSON.
    secret_name: _Text = "GCS_SERVICE_ACCOUNT"
    #: Accelerator hours a week the free tier gives (None: no weekly quota known).
    gpu_quota_h_per_week: float | None = Field(None, ge=0.0)
    #: Whether the platform's rules allow a worker: "yes", "paid-tier-only" or "no".
    workers_allowed: Literal["yes", "paid-tier-only", "no"]
    #: The tier a worker needs there, when the free one is not enough ("" when it is).
    tier_needed: str = ""
    #: When the values were last checked against their sources (e.g. "2026-11").
    checked: _Text
    #: Where each value comes from, by field name.
    sources: dict[str, SourceNote] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("session_limit_s", "gpu_quota_h_per_week")
    @classmethod
    def _zero_is_none(cls, value: float | None) -> float | None:
        return value or None  # 0: unlimited sessions, no weekly quota

    @model_validator(mode="after")
    def _consistent(self) -> PlatformProfile:
        bad: list[tuple[str, str]] = []
        if len(set(self.credentials)) != len(self.credentials):
            bad.append(("credentials", "a source is listed twice"))
        limit, margin = self.session_limit_s, self.drain_margin_s
        if limit and margin >= limit:
            bad.append(("drain_margin_s",
                        f"({margin:g}) must be shorter than session_limit_s ({limit:g})"))
        if self.workers_allowed == "paid-tier-only" and not self.tier_needed.strip():
            bad.append(("tier_needed", "say which tier a worker needs"))
        for key in sorted(set(self.sources) - set(type(self).model_fields)):
            bad.append((f"sources.{key}", "a source for a field a profile does not have"))
        conflicts(bad)
        return self


def _profiles() -> Any:
    return resources.files("islandsync.env").joinpath(_PROFILE_DIR)


def known_platforms() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(
        entry.name[: -len(".toml")] for entry in _profiles().iterdir()
        if entry.name.endswith(".toml")
    )


def _parse_profile(data: dict[str, Any], name: str, source: str) -> PlatformProfile:
    """The profile ``data`` read from ``source`` holds, which must be ``name``'s; one
    ConfigError naming the source and each bad field otherwise."""
    try:
        profile = PlatformProfile.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
    if profile.name != name:
        raise ConfigError(f"{source}: name: is {profile.name!r}, expected {name!r}")
    return profile


@functools.cache
def load_profile(name: str) -> PlatformProfile:
    """The shipped profile ``name``; ConfigError naming it and the known ones otherwise."""
    key = name.strip().lower() if isinstance(name, str) else name
    known = known_platforms()
    # Checked against the list before touching a path, so a name can never walk the tree.
    if key not in known:
        raise ConfigError(f"unknown platform {name!r}; known platforms: {', '.join(known)}")
    source = f"platform profile {key} (islandsync/env/{_PROFILE_DIR}/{key}.toml)"
    if _toml is None:  # pragma: no cover - Python 3.10 without tomli
        raise ConfigError(f"{source}: reading TOML on Python 3.10 needs `pip install tomli`")
    try:
        data = _toml.loads(_profiles().joinpath(f"{key}.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, _toml.TOMLDecodeError) as err:
        raise ConfigError(f"{source}: cannot load: {err}; known platforms: "
                          f"{', '.join(known)}") from err
    return _parse_profile(data, key, source)


def _importable(module: str) -> bool:
    # find_spec imports parent packages and can raise for odd sys.path entries; detection
    # must never be the reason a worker fails to start.
    try:
        return importlib.util.find_spec(module) is not None
    except Exception:  # noqa: BLE001 - see above
        return False


def detect_platform(environ: Mapping[str, str] | None = None, *,
                    importable: Callable[[str], bool] | None = None) -> str:
    """Which platform this process runs on: kaggle, colab, paperspace or local.

    Kaggle is checked first because its images carry many Google packages; empty variables
    count as unset.
    """
    env = os.environ if environ is None else environ
    can_import = _importable if importable is None else importable
    if env.get("KAGGLE_KERNEL_RUN_TYPE") or env.get("KAGGLE_URL_BASE"):
        return "kaggle"
    if env.get("COLAB_RELEASE_TAG") or can_import("google.colab"):
        return "colab"
    if env.get("PAPERSPACE_NOTEBOOK_REPO_ID") or env.get("PAPERSPACE_CLUSTER_ID"):
        return "paperspace"
    return "local"


def resolve_platform(override: str | None = None,
                     environ: Mapping[str, str] | None = None) -> PlatformProfile:
    """The profile to use: ``override`` (``--platform``) when given, else the detected one."""
    if override is not None:
        try:
            return load_profile(override)
        except ConfigError as err:
            raise ConfigError(f"--platform: {err}") from None
    return load_profile(detect_platform(environ))


def session_limit(profile: PlatformProfile, *, override_s: float | None = None,
                  environ: Mapping[str, str] | None = None) -> float | None:
    """The session length in seconds: ``override_s``, else $ISLANDSYNC_SESSION_LIMIT, else
    the profile's; None when unlimited."""
    if override_s is not None:
        if (isinstance(override_s, bool) or not isinstance(override_s, (int, float))
                or not math.isfinite(override_s) or override_s <= 0):
            raise ConfigError(f"session limit override: expected seconds > 0, got {override_s!r}")
        return float(override_s)
    env = os.environ if environ is None else environ
    raw = env.get(SESSION_LIMIT_ENV)
    if raw is not None and raw.strip():
        if raw.strip().lower() in _UNLIMITED:
            return None
        return parse_duration(raw, what=SESSION_LIMIT_ENV)
    return profile.session_limit_s


def session_deadline(profile: PlatformProfile, *, started: float,
                     override_s: float | None = None,
                     environ: Mapping[str, str] | None = None) -> float | None:
    """The ``time.monotonic()`` time at which this worker should stop taking islands and
    write final checkpoints: ``started + limit - drain_margin_s``; None when unlimited.

    ``started`` is a monotonic timestamp of the session's start (the earliest one the caller
    knows: the notebook may have run for a while before the worker started). A limit shorter
    than twice the margin keeps half of it for work rather than draining at once.
    """
    limit = session_limit(profile, override_s=override_s, environ=environ)
    if limit is None:
        return None
    margin = min(profile.drain_margin_s, limit / 2)
    return started + limit - margin


__all__ = [
    "CREDENTIAL_SOURCES",
    "SESSION_LIMIT_ENV",
    "WORKERS_ALLOWED",
    "PlatformProfile",
    "SourceNote",
    "detect_platform",
    "known_platforms",
    "load_profile",
    "resolve_platform",
    "session_deadline",
    "session_limit",
]
