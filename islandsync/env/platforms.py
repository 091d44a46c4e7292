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
from dataclasses import dataclass
from importlib import resources
from typing import Any

from islandsync.config.loading import _toml  # one TOML reader (tomllib, or tomli on 3.10)
from islandsync.durations import parse_duration
from islandsync.errors import ConfigError

#: Environment variable that overrides a profile's session limit ("11h", "90m", "3600").
SESSION_LIMIT_ENV = "ISLANDSYNC_SESSION_LIMIT"

#: Credential sources a profile may list, in the vocabulary of islandsync.env.credentials.
CREDENTIAL_SOURCES = frozenset({
    "argument", "GOOGLE_APPLICATION_CREDENTIALS", "kaggle_secret", "colab_secret",
    "colab_auth", "default",
})

_PROFILE_DIR = "profiles"
_FIELDS = {
    "name", "session_limit_s", "idle_timeout_s", "gpu_quota_h_per_week", "workers_allowed",
    "tier_needed", "checked", "typical_device", "default_max_islands", "drain_margin_s",
    "credentials", "secret_name", "sources",
}
_REQUIRED = {"name", "typical_device", "default_max_islands", "drain_margin_s", "credentials",
             "workers_allowed", "checked"}
#: What a platform's own rules say about running an islandsync worker there.
WORKERS_ALLOWED = ("yes", "paid-tier-only", "no")
_UNLIMITED = {"0", "none", "unlimited"}


@dataclass(frozen=True)
class PlatformProfile:
    """One platform's limits and defaults. ``None`` limits mean "none known"."""

    name: str
    session_limit_s: float | None
    idle_timeout_s: float | None
    typical_device: str
    default_max_islands: int
    drain_margin_s: float
    credentials: tuple[str, ...]
    secret_name: str = "GCS_SERVICE_ACCOUNT"
    #: Accelerator hours a week the free tier gives (None: no weekly quota known).
    gpu_quota_h_per_week: float | None = None
    #: "yes", "paid-tier-only" or "no": whether the platform's rules allow a worker.
    workers_allowed: str = "yes"
    #: The tier a worker needs there, when the free one is not enough ("" when it is).
    tier_needed: str = ""
    #: When the values were last checked against their sources (e.g. "2026-11").
    checked: str = ""


def _profiles() -> Any:
    return resources.files("islandsync.env").joinpath(_PROFILE_DIR)


def known_platforms() -> list[str]:
    """Names of the shipped profiles, sorted."""
    return sorted(
        entry.name[: -len(".toml")] for entry in _profiles().iterdir()
        if entry.name.endswith(".toml")
    )


def _number(data: dict[str, Any], key: str, source: str, *, positive: bool,
            required: bool = True) -> float | None:
    value = data.get(key)
    if value is None:
        if required:
            raise ConfigError(f"{source}: {key}: missing")
        return None
    # bool is an int subclass; `true` as a duration is a typo, not 1 second.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{source}: {key}: expected a number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{source}: {key}: must be {'> 0' if positive else '>= 0'}, "
                          f"got {value!r}")
    return float(value)


def _parse_profile(data: dict[str, Any], name: str, source: str) -> PlatformProfile:
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        # Strict like run.json: a misspelt field must not silently fall back to a default.
        raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}")
    missing = sorted(_REQUIRED - set(data))
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(missing)}")
    if data["name"] != name:
        raise ConfigError(f"{source}: name is {data['name']!r}, expected {name!r}")
    limit = _number(data, "session_limit_s", source, positive=False, required=False)
    idle = _number(data, "idle_timeout_s", source, positive=True, required=False)
    quota = _number(data, "gpu_quota_h_per_week", source, positive=False, required=False)
    margin = _number(data, "drain_margin_s", source, positive=False)
    if limit is not None and limit > 0 and margin is not None and margin >= limit:
        raise ConfigError(f"{source}: drain_margin_s ({margin:g}) must be shorter than "
                          f"session_limit_s ({limit:g})")
    islands = data["default_max_islands"]
    if isinstance(islands, bool) or not isinstance(islands, int) or islands < 1:
        raise ConfigError(f"{source}: default_max_islands: expected an int >= 1, got {islands!r}")
    device = data["typical_device"]
    if not isinstance(device, str) or not device.strip():
        raise ConfigError(f"{source}: typical_device: expected a non-empty string")
    creds = data["credentials"]
    if (not isinstance(creds, list) or not creds
            or not all(isinstance(c, str) for c in creds)):
        raise ConfigError(f"{source}: credentials: expected a non-empty list of strings")
    bad = [c for c in creds if c not in CREDENTIAL_SOURCES]
    if bad:
        raise ConfigError(f"{source}: credentials: unknown source(s) {', '.join(bad)}; "
                          f"expected some of {', '.join(sorted(CREDENTIAL_SOURCES))}")
    if len(set(creds)) != len(creds):
        raise ConfigError(f"{source}: credentials: a source is listed twice")
    secret = data.get("secret_name", "GCS_SERVICE_ACCOUNT")
    if not isinstance(secret, str) or not secret.strip():
        raise ConfigError(f"{source}: secret_name: expected a non-empty string")
    if not isinstance(data.get("sources", {}), dict):
        raise ConfigError(f"{source}: sources: expected a table")
    allowed = data["workers_allowed"]
    if allowed not in WORKERS_ALLOWED:
        raise ConfigError(f"{source}: workers_allowed: expected one of "
                          f"{', '.join(WORKERS_ALLOWED)}, got {allowed!r}")
    tier = data.get("tier_needed", "")
    if not isinstance(tier, str) or (allowed == "paid-tier-only" and not tier.strip()):
        raise ConfigError(f"{source}: tier_needed: say which tier a worker needs")
    checked = data["checked"]
    if not isinstance(checked, str) or not checked.strip():
        raise ConfigError(f"{source}: checked: expected the date the values were checked")
    return PlatformProfile(
        name=name,
        session_limit_s=limit or None,  # 0 in TOML (which has no null) means unlimited
        idle_timeout_s=idle,
        typical_device=device,
        default_max_islands=islands,
        drain_margin_s=margin,  # type: ignore[arg-type]  # required above
        credentials=tuple(creds),
        secret_name=secret,
        gpu_quota_h_per_week=quota or None,  # 0: no weekly quota
        workers_allowed=allowed,
        tier_needed=tier,
        checked=checked,
    )


@functools.cache
def load_profile(name: str) -> PlatformProfile:
    """The shipped profile ``name``; ConfigError naming it and the known ones otherwise."""
    key = name.strip().lower() if isinstance(name, str) else name
    known = known_platforms()
    # Checked against the list before touching a path, so a name can never walk the tree.
    if key not in known:
        raise ConfigError(f"unknown platform {name!r}; known platforms: {', '.join(known)}")
    source = f"platform profile {key} (islandsync/{_PROFILE_DIR}/{key}.toml)"
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
    "detect_platform",
    "known_platforms",
    "load_profile",
    "resolve_platform",
    "session_deadline",
    "session_limit",
]
