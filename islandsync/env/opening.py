"""Opening a run from this machine: its store, with credentials found for this platform."""

from __future__ import annotations

import logging
from typing import Any

from islandsync.bucket.run import require_run
from islandsync.env.credentials import find_credentials
from islandsync.env.platforms import PlatformProfile, resolve_platform
from islandsync.errors import ConfigError
from islandsync.store import BlobStore, open_store

log = logging.getLogger(__name__)


def open_run(run: str, *, credentials: Any = None, platform: str | None = None,
             existing: bool = False) -> tuple[BlobStore, PlatformProfile]:
    """The run's store, with credentials found as :func:`run` describes, and this machine's
    platform profile. ``existing``: the run must already exist (ConfigError naming the URL
    otherwise, and nothing created: not even a local directory)."""
    profile = resolve_platform(platform)
    if str(run).startswith("gs://"):
        found, where = find_credentials(credentials, platform=profile.name)
        log.info("credentials: %s", where)
        store = open_store(run, credentials=found)
    elif str(run).startswith("s3://"):
        # S3Store finds its own (islandsync.store.s3_credentials): the file, else the chain.
        store = open_store(run, credentials=credentials)
    elif credentials is not None:
        raise ConfigError(f"run {run}: a local directory takes no credentials")
    else:
        store = open_store(run, create=not existing)
    if existing:
        require_run(store)
    return store, profile
