"""Opening a run from this machine: its store, with credentials found for this platform."""

from __future__ import annotations

import importlib
import logging
from typing import Any
from urllib.parse import urlsplit

from islandsync.bucket.run import require_run
from islandsync.env.platforms import PlatformProfile, resolve_platform
from islandsync.errors import ConfigError
from islandsync.store import SCHEMES, BlobStore, open_store

log = logging.getLogger(__name__)


def open_run(run: str, *, credentials: Any = None, platform: str | None = None,
             existing: bool = False) -> tuple[BlobStore, PlatformProfile]:
    """The run's store, with credentials found as :func:`run` describes, and this machine's
    platform profile. ``existing``: the run must already exist (ConfigError naming the URL
    otherwise, and nothing created: not even a local directory)."""
    profile = resolve_platform(platform)
    scheme = SCHEMES.get(urlsplit(str(run)).scheme.lower()) if "://" in str(run) else None
    if scheme is not None:
        # Found by the scheme's own finder for this platform (gs: env.credentials); without
        # one, the store finds its own (s3: store.s3_credentials, the file, else the chain).
        if scheme.find_credentials:
            module, _, name = scheme.find_credentials.partition(":")
            find = getattr(importlib.import_module(module), name)
            credentials, where = find(credentials, platform=profile.name)
            log.info("credentials: %s", where)
        store = open_store(run, credentials=credentials)
    elif credentials is not None:
        raise ConfigError(f"run {run}: a local directory takes no credentials")
    else:
        store = open_store(run, create=not existing)
    if existing:
        require_run(store)
    return store, profile
