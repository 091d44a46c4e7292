"""``islandsync publish RUN``: put the wheel of the running islandsync under ``RUN/dist/``.

Every worker of a run should run the same islandsync (the bucket protocol is only as safe as
its least careful writer), and islandsync may not be on any package index at all. So the
version that runs ``publish`` is put in the run itself, and each notebook's install cell
installs the newest ``dist/*/islandsync-*.whl`` from there with the credentials the platform
already has, falling back to the package index when the run has none.

The wheel is built from the source checkout this module lives in (``pip wheel --no-deps``
on a copy of the project, so the checkout gets no build/ or egg-info), or, for an installed
islandsync, re-packed from the installed files its RECORD lists; ``--wheel FILE`` takes a
wheel as it is. Keys are ``dist/<seq:06>/<wheel name>`` (create-only; the newest is the
highest sequence), so republishing the same version after a change never overwrites a wheel
a notebook may be downloading.

Trust: a wheel is code. Whoever can write ``RUN/dist/`` can run code on every worker that
installs from it, exactly as whoever holds the run's credentials can already rewrite its
records; keep the bucket private. Only names matching an islandsync pure-Python wheel are
published or installed.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import islandsync
from islandsync.bucket.layout import DIST_PREFIX, WHEEL_NAME_RE, dist_key, parse_dist_key
from islandsync.errors import ConfigError, IslandSyncError, PreconditionFailed
from islandsync.store.base import BlobStore

#: A wheel larger than this is not an islandsync wheel (ours is ~200 KB).
MAX_WHEEL_BYTES = 32 << 20


def project_root() -> Path | None:
    """The source checkout this islandsync runs from, or None for an installed one."""
    root = Path(islandsync.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    try:
        if pyproject.is_file() and 'name = "islandsync"' in pyproject.read_text("utf-8"):
            return root
    except OSError:
        pass
    return None


def _build_from_source(root: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="islandsync-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "islandsync", src / "islandsync",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)]
        # Offline-friendly: this interpreter's setuptools builds it when it is new enough.
        if importlib.util.find_spec("setuptools") is not None:
            cmd.insert(4, "--no-build-isolation")
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise IslandSyncError(f"islandsync publish: building the wheel failed:\n"
                                  f"{(done.stdout + done.stderr)[-2000:]}")
    wheels = sorted(out.glob("islandsync-*.whl"))
    if not wheels:
        raise IslandSyncError(f"islandsync publish: pip made no wheel in {out}")
    return wheels[-1]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _repack_installed(out: Path) -> Path:
    """A wheel of the installed islandsync, from the files its RECORD lists."""
    try:
        dist = importlib.metadata.distribution("islandsync")
    except importlib.metadata.PackageNotFoundError:
        raise ConfigError("islandsync publish: islandsync is neither a source checkout nor an "
                          "installed distribution here; pass --wheel FILE") from None
    version = dist.version
    info = f"islandsync-{version}.dist-info"
    name = f"islandsync-{version}-py3-none-any.whl"
    if not WHEEL_NAME_RE.match(name):
        raise ConfigError(f"islandsync publish: {name!r} is not a pure-Python wheel name")
    files = [f for f in (dist.files or []) if not f.parts[0] == ".."
             and "__pycache__" not in f.parts and f.suffix != ".pyc"
             and (f.parts[0] == "islandsync" or f.parts[0].endswith(".dist-info"))]
    if not any(f.parts[0] == "islandsync" for f in files):
        raise ConfigError("islandsync publish: the installed islandsync lists no package files "
                          "(an editable install?); pass --wheel FILE or run from the checkout")
    path = out / name
    record: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            arc = "/".join((info,) + f.parts[1:]) if f.parts[0].endswith(".dist-info") \
                else "/".join(f.parts)
            if arc in (f"{info}/RECORD", f"{info}/INSTALLER", f"{info}/REQUESTED",
                       f"{info}/direct_url.json"):
                continue  # written by the installer, not part of a wheel
            data = Path(dist.locate_file(f)).read_bytes()
            zf.writestr(arc, data)
            record.append(f"{arc},{_record_hash(data)},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def build_wheel(out: str | Path) -> Path:
    """The wheel of the running islandsync, written into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    root = project_root()
    return _build_from_source(root, out) if root else _repack_installed(out)


def published(store: BlobStore) -> list[tuple[int, str]]:
    """(sequence, wheel name) of every wheel under ``dist/``, oldest first."""
    return sorted(p for i in store.list(DIST_PREFIX) if (p := parse_dist_key(i.key)))


def publish(store: BlobStore, wheel: str | Path | None = None) -> str:
    """Put ``wheel`` (default: one built from the running islandsync) under ``dist/`` as the
    newest; returns its key."""
    with tempfile.TemporaryDirectory(prefix="islandsync-wheel-") as tmp:
        path = Path(wheel) if wheel else build_wheel(tmp)
        if not WHEEL_NAME_RE.match(path.name):
            raise ConfigError(f"islandsync publish: {path.name!r} is not an islandsync "
                              f"pure-Python wheel (islandsync-<version>-py3-none-any.whl)")
        data = path.read_bytes()
        if len(data) > MAX_WHEEL_BYTES or not zipfile.is_zipfile(path):
            raise ConfigError(f"islandsync publish: {path} is not a wheel of a sane size")
        seq = max((s for s, _ in published(store)), default=0) + 1
        for _ in range(10):  # another publish raced us to the name: take the next
            key = dist_key(seq, path.name)
            try:
                store.put(key, data, if_generation=0)
                return key
            except PreconditionFailed:
                seq += 1
    raise IslandSyncError("islandsync publish: could not find a free dist/ name")


def newest(store: BlobStore) -> tuple[str, str] | None:
    """(key, wheel name) of the newest published wheel, or None."""
    found = published(store)
    return (dist_key(*found[-1]), found[-1][1]) if found else None


__all__ = ["MAX_WHEEL_BYTES", "build_wheel", "newest", "project_root", "publish", "published"]
