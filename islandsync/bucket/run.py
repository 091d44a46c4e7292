"""``run.json``: the run's immutable spec, written create-only and read by every process."""

from __future__ import annotations

from islandsync.bucket.layout import RUN_KEY
from islandsync.config import RunSpec, parse_spec, spec_diff, spec_json
from islandsync.errors import ConfigError, NotFound, PreconditionFailed, RunNotFound
from islandsync.store.base import BlobStore

MAX_SPEC_BYTES = 1 << 20  # run.json is untrusted input: never parse more than this


def _spec_source(store: BlobStore) -> str:
    return f"{store.url.rstrip('/')}/{RUN_KEY}"


def read_spec(store: BlobStore) -> RunSpec:
    """The run's spec from ``run.json``; ConfigError when it is missing, too large or invalid."""
    try:
        # A ranged read, so a hostile multi-gigabyte run.json is never downloaded whole.
        blob = store.get(RUN_KEY, start=0, end=MAX_SPEC_BYTES + 1)
    except NotFound as err:
        raise ConfigError(f"run {store.url} has no {RUN_KEY}; create it with `islandsync init`"
                          ) from err
    if len(blob.data) > MAX_SPEC_BYTES:
        raise ConfigError(f"{_spec_source(store)}: larger than {MAX_SPEC_BYTES} bytes; "
                          f"not a run spec")
    return parse_spec(blob.data, source=_spec_source(store))


def require_run(store: BlobStore) -> None:
    """RunNotFound (a ConfigError) unless the store holds a run (its ``run.json``): what
    every command and view that reads a run, or joins one without a spec, checks first, so a
    mistyped path is one clear line and nothing is written there."""
    if store.stat(RUN_KEY) is None:
        raise RunNotFound(f"no run at {store.url}: it has no {RUN_KEY} (a mistyped path? "
                          f"`islandsync init {store.url} ...` creates a run)")


def init_run(store: BlobStore, spec: RunSpec) -> str:
    """Create ``run.json`` (create-only). Returns ``"created"``, or ``"exists"`` when the run
    already has an identical spec (also when we lost a create race to an identical spec, or
    when a retried create of ours had landed); a different spec is a ConfigError with the diff."""
    data = spec_json(spec)
    try:
        store.put(RUN_KEY, data, if_generation=0)
        return "created"
    except PreconditionFailed:
        pass
    existing = read_spec(store)
    # Compared canonically, so a run.json written by an older, less tidy writer still matches.
    if spec_json(existing) == data:
        return "exists"
    diff = "\n".join(f"  {line}" for line in spec_diff(existing, spec))
    raise ConfigError(f"run {store.url} already exists with a different spec:\n{diff}")


__all__ = ["MAX_SPEC_BYTES", "init_run", "read_spec", "require_run"]
