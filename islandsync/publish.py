"""``islandsync publish RUN``: put the wheel of the running islandsync under ``RUN/dist/`` and
print the one line a notebook installs it with.

Every worker of a run should run the same islandsync (the bucket protocol is only as safe as
its least careful writer), and islandsync is on no package index. So the version that runs
``publish`` is put in the run itself, at ``dist/<sha256>/islandsync-<v>-py3-none-any.whl``
(content-addressed: create-only, a key names one content forever, so no later key can
outrank it and republishing the same bytes is a no-op), and ``publish`` prints::

    %pip install "https://...signed URL.../islandsync-0.1.0-py3-none-any.whl?...#sha256=HEX"

The URL is a time-limited signed URL of the wheel (GCS V4, S3/R2/MinIO presigned; 7 days by
default), or a ``file://`` URL for a local run, so a notebook downloads it with no credentials
and no code of ours; pip checks the ``#sha256=`` the user pasted, so a wheel replaced in the
bucket is refused. Nothing in islandsync installs or imports anything from ``dist/``: the
user's pasted line is the only way in, and the hash in it is the trust anchor.

The wheel is built from the source checkout this module lives in (``pip wheel --no-deps``
on a copy of the project, so the checkout gets no build/ or egg-info), or, for an installed
islandsync, re-packed from the installed files its RECORD lists; ``--wheel FILE`` takes a
wheel as it is. Only names matching an islandsync pure-Python wheel are published.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import islandsync
from islandsync.bucket.layout import DIST_PREFIX, WHEEL_NAME_RE, dist_key, parse_dist_key
from islandsync.errors import ConfigError, IslandSyncError, NotFound, PreconditionFailed
from islandsync.store import SCHEMES
from islandsync.store.base import BlobInfo, BlobStore, signed_url

#: How long the printed URL works by default: the longest GCS and S3 signatures allow.
DEFAULT_EXPIRES_S = 7 * 86400

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
        # Reproducible: the same sources make the same bytes, so the same content address
        # (zip entries dated 1980, the earliest a zip can hold, not the build's clock).
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
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


@dataclass(frozen=True)
class Wheel:
    """A wheel under ``dist/``: its key, file name, sha256 (None for a key of the earlier
    numbered layout, which vouches for no content) and the store's time of the write (the
    store's one clock, for ordering only among the run's own wheels)."""

    key: str
    name: str
    sha256: str | None
    updated: object

    @property
    def version(self) -> str:
        return self.name.split("-")[1]


def _wheel(info: BlobInfo) -> Wheel | None:
    parsed = parse_dist_key(info.key)
    return Wheel(info.key, parsed[1], parsed[0], info.updated) if parsed else None


def published(store: BlobStore) -> list[Wheel]:
    """Every wheel under ``dist/``, oldest write first (a stray key is skipped)."""
    found = [w for i in store.list(DIST_PREFIX) if (w := _wheel(i))]
    return sorted(found, key=lambda w: (w.updated, w.key))


def newest(store: BlobStore) -> Wheel | None:
    """The most recently published wheel, or None."""
    found = published(store)
    return found[-1] if found else None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def publish(store: BlobStore, wheel: str | Path | None = None) -> Wheel:
    """Put ``wheel`` (default: one built from the running islandsync) at its content
    address under ``dist/``. Publishing the same bytes again changes nothing; bytes at our
    address that are not ours (someone wrote there) are replaced."""
    with tempfile.TemporaryDirectory(prefix="islandsync-wheel-") as tmp:
        path = Path(wheel) if wheel else build_wheel(tmp)
        if not WHEEL_NAME_RE.match(path.name):
            raise ConfigError(f"islandsync publish: {path.name!r} is not an islandsync "
                              f"pure-Python wheel (islandsync-<version>-py3-none-any.whl)")
        data = path.read_bytes()
        if len(data) > MAX_WHEEL_BYTES or not zipfile.is_zipfile(path):
            raise ConfigError(f"islandsync publish: {path} is not a wheel of a sane size")
    sha = _sha256(data)
    key = dist_key(sha, path.name)
    try:
        store.put(key, data, if_generation=0)
    except PreconditionFailed:
        there = store.stat(key)
        if there is None or there.size != len(data) or _sha256(store.get(key).data) != sha:
            # Not what its name says: put the right bytes back (a notebook's pasted line
            # refuses the wrong ones anyway).
            store.put(key, data, if_generation=there.generation if there else 0)
    info = store.stat(key)
    return Wheel(key, path.name, sha, info.updated if info else None)


def install_line(store: BlobStore, wheel: Wheel, *, expires_s: float = DEFAULT_EXPIRES_S
                 ) -> str:
    """The one line a notebook installs ``wheel`` with: ``%pip install "URL#sha256=HEX"``.
    ConfigError (one line saying what works instead) when the store's credentials cannot
    sign a URL."""
    if wheel.sha256 is None:
        raise ConfigError(f"islandsync publish: {wheel.key} has no content address; publish "
                          f"again to get an install line")
    url = signed_url(store, wheel.key, expires_s=expires_s)
    # A bucket whose client is an extra (s3://: boto3) names it in the same line, installed
    # from its own index.
    scheme = SCHEMES.get(store.url.partition("://")[0]) if "://" in store.url else None
    extra = f"islandsync[{scheme.extra}] @ " if scheme and scheme.extra else ""
    return f'%pip install "{extra}{url}#sha256={wheel.sha256}"'


def publish_line(store: BlobStore, wheel: str | Path | None = None, *,
                 expires_s: float = DEFAULT_EXPIRES_S) -> str:
    """:func:`publish`, then :func:`install_line`. When the URL cannot be signed, a wheel this
    call added is taken away again, so a refusal leaves the run as it was."""
    before = {w.key for w in published(store)}
    done = publish(store, wheel)
    try:
        return install_line(store, done, expires_s=expires_s)
    except ConfigError:
        if done.key not in before:
            try:
                store.delete(done.key)
            except NotFound:
                pass
        raise


def _installed_sha256() -> str | None:
    """The sha256 of the wheel the running islandsync was installed from, as pip recorded it
    (``direct_url.json``), or None (a source checkout, or installed some other way)."""
    try:
        dist = importlib.metadata.distribution("islandsync")
        here = Path(islandsync.__file__).resolve()
        if Path(dist.locate_file("islandsync/__init__.py")).resolve() != here:
            return None  # metadata of another copy than the one running (PYTHONPATH)
        info = json.loads(dist.read_text("direct_url.json") or "{}").get("archive_info", {})
    except (importlib.metadata.PackageNotFoundError, OSError, ValueError, AttributeError):
        return None
    sha = (info.get("hashes") or {}).get("sha256") or \
        str(info.get("hash", "")).removeprefix("sha256=")
    return sha if isinstance(sha, str) and len(sha) == 64 else None


def version_note(store: BlobStore) -> str | None:
    """One line when this islandsync differs from the run's newest published wheel (by the
    wheel's sha256 where pip recorded it, else by version), else None."""
    found = newest(store)
    if found is None:
        return None
    mine = _installed_sha256()
    if found.sha256 and mine:
        if mine == found.sha256:
            return None
        this = f"islandsync {islandsync.__version__} (wheel sha256 {mine[:12]})"
    elif found.version == islandsync.__version__:
        return None
    else:
        this = f"islandsync {islandsync.__version__}"
    theirs = f"islandsync {found.version}" + (
        f" (sha256 {found.sha256[:12]})" if found.sha256 else "")
    return (f"this worker runs {this}, but the run's newest published wheel is {theirs}: "
            f"install it with the line `islandsync publish RUN` prints")


__all__ = ["DEFAULT_EXPIRES_S", "MAX_WHEEL_BYTES", "Wheel", "build_wheel", "install_line",
           "newest", "project_root", "publish", "publish_line", "published", "version_note"]
