"""LocalStore: the embedded default, a directory safe to share between processes on one machine.

Each blob is one file at ``<root>/<key>`` that starts with a 16-byte record header

    b"ISLB" | format version u32 LE | generation u64 LE

followed by the blob's bytes. Keeping the generation inside the file makes ``rename`` the one
commit point of a write: a process killed at any instant leaves either the old (generation,
bytes) pair or the new one, never a mix — a sidecar file for the generation could not promise
that. The price is that ``cat run/run.json`` shows 16 bytes of header first.

Writers serialise per key with ``flock`` on ``<root>/.islandsync/locks/<key>``; that lock file
also remembers the last generation written, so generations keep increasing across a delete and
a re-create. Readers take no lock: they open the file once and read header and bytes from the
same descriptor, which a concurrent rename cannot change under them.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import (
    ConfigError,
    NotFound,
    OutcomeUnknown,
    PreconditionFailed,
    Refused,
    StoreError,
)
from .base import Blob, BlobInfo, BlobStore
from .key_syntax import check_key, check_range

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_MAGIC = b"ISLB"
_VERSION = 1
_HEADER = struct.Struct("<4sIQ")
_RESERVED = ".islandsync"


class LocalStore(BlobStore):
    """A :class:`BlobStore` on a local directory (created when missing; with
    ``create=False`` nothing is created until the first write, so that opening a mistyped
    path to read it leaves no trace).

    Compare-and-swap is correct across threads and processes of one machine (``flock`` per
    key), so a leader and several workers can run as separate processes on one directory. It is
    not safe on network file systems whose ``flock`` is not coherent (some NFS set-ups).
    A process stopped (SIGSTOP, a debugger) in the middle of a write keeps that key's lock,
    so other writers of the key wait until it resumes or dies; readers never wait.
    Keys must not make one blob the parent folder of another (``a`` and ``a/b``); the key
    ``.islandsync`` at the root is reserved.
    """

    def __init__(self, root: str | os.PathLike[str], *, url: str | None = None,
                 create: bool = True) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise ConfigError("LocalStore needs POSIX file locks (fcntl); use WSL on Windows")
        self.root = Path(root).expanduser().absolute()
        self.url = url or str(self.root)
        self._tmp = self.root / _RESERVED / "tmp"
        self._locks = self.root / _RESERVED / "locks"
        self._ready = False
        if create:
            self._prepare()

    def _prepare(self) -> None:
        """Create the directory and its reserved folders, and check that it is writable."""
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._locks.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self._tmp, delete=True)  # noqa: SIM115
            probe.close()
        except OSError as err:
            raise ConfigError(f"store {self.url}: directory is not writable ({err})") from err
        self._ready = True

    # -- paths ---------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == _RESERVED:
            raise ConfigError(f"store key {key!r} is reserved by LocalStore")
        return self.root / key

    def _wrap(self, op: str, key: str, err: OSError) -> StoreError:
        # A failed read changed nothing; a failed write or delete may have got as far as
        # the rename or unlink before the error.
        outcome = Refused if op in ("read", "stat", "list") else OutcomeUnknown
        return outcome(f"store {self.url}: {op} {key!r} failed: {err}")

    # -- reading -------------------------------------------------------------------------

    @staticmethod
    def _read_header(f, path: Path) -> int:  # type: ignore[no-untyped-def]
        raw = f.read(_HEADER.size)
        if len(raw) != _HEADER.size:
            raise StoreError(f"blob file {path} is truncated (no record header)")
        magic, version, generation = _HEADER.unpack(raw)
        if magic != _MAGIC or version != _VERSION:
            raise StoreError(f"blob file {path} was not written by LocalStore (bad header)")
        return generation

    def _current_generation(self, path: Path) -> int:
        try:
            with open(path, "rb") as f:
                return self._read_header(f, path)
        except FileNotFoundError:
            return 0

    def get(self, key: str, *, start: int | None = None, end: int | None = None) -> Blob:
        path = self._path(key)
        lo, hi = check_range(start, end)
        try:
            with open(path, "rb") as f:
                generation = self._read_header(f, path)
                if lo:
                    f.seek(_HEADER.size + lo)
                data = f.read() if hi is None else f.read(max(0, hi - lo))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
            raise NotFound(f"{self.url}: no blob {key!r}") from err
        except OSError as err:
            raise self._wrap("read", key, err) from err
        return Blob(data, generation)

    def _info(self, key: str, path: Path) -> BlobInfo | None:
        try:
            with open(path, "rb") as f:
                generation = self._read_header(f, path)
                st = os.fstat(f.fileno())
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as err:
            raise self._wrap("stat", key, err) from err
        updated = _dt.datetime.fromtimestamp(st.st_mtime, tz=_dt.timezone.utc)
        return BlobInfo(key, generation, st.st_size - _HEADER.size, updated)

    def stat(self, key: str) -> BlobInfo | None:
        return self._info(key, self._path(key))

    def list(self, prefix: str = "") -> list[BlobInfo]:
        # Walk only the folder the prefix names, not the whole run.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = self.root / folder if folder else self.root
        found: list[BlobInfo] = []
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != _RESERVED]
            rel_dir = os.path.relpath(dirpath, self.root)
            for name in filenames:
                key = name if rel_dir == "." else f"{rel_dir}/{name}".replace(os.sep, "/")
                if key.startswith(prefix):
                    info = self._info(key, Path(dirpath) / name)
                    if info is not None:
                        found.append(info)
        found.sort(key=lambda i: i.key)
        return found

    # -- writing -------------------------------------------------------------------------

    @contextmanager
    def _locked(self, key: str) -> Iterator[int]:
        """Hold the key's write lock; yields the fd of the lock file (it stores the last
        generation written, as decimal text)."""
        if not self._ready:
            self._prepare()
        lock_path = self._locks / key
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing releases the flock

    @staticmethod
    def _last_recorded(fd: int) -> int:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).strip()
        return int(text) if text.isdigit() else 0

    @staticmethod
    def _record(fd: int, generation: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, str(generation).encode())

    def put(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        path = self._path(key)
        data = bytes(data) if not isinstance(data, bytes) else data
        try:
            with self._locked(key) as lock_fd:
                current = self._current_generation(path)
                if if_generation is not None and current != if_generation:
                    raise PreconditionFailed(
                        f"{self.url}: {key!r} is at generation {current}, not {if_generation}"
                    )
                # Like GCS, generations are microsecond timestamps, forced to grow even if
                # the clock steps back or two writes land in one microsecond.
                generation = max(
                    time.time_ns() // 1000, current + 1, self._last_recorded(lock_fd) + 1
                )
                self._write_atomically(path, _HEADER.pack(_MAGIC, _VERSION, generation) + data)
                self._record(lock_fd, generation)
                return generation
        except OSError as err:
            raise self._wrap("write", key, err) from err

    def _write_atomically(self, path: Path, payload: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._tmp, prefix="put-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, path)
        except BaseException:
            with _suppress_missing():
                os.unlink(tmp)
            raise
        self._fsync_dir(path.parent)

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        # Makes the rename itself durable across a power cut, not just the file's bytes.
        try:
            dfd = os.open(folder, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dfd)
        except OSError as err:  # some file systems refuse fsync on folders
            if err.errno not in (errno.EINVAL, errno.EBADF):
                raise
        finally:
            os.close(dfd)

    def signed_url(self, key: str, *, expires_s: float) -> str:
        """A ``file://`` URL of ``key``'s bytes, for another program on this machine (pip):
        a plain copy under ``.islandsync/plain/<key>``, since the blob's own file starts with
        the record header. It does not expire; what it holds is as current as this call."""
        data = self.get(key).data
        path = self.root / _RESERVED / "plain" / key
        try:
            self._write_atomically(path, data)
        except OSError as err:
            raise self._wrap("copy", key, err) from err
        return path.as_uri()

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        path = self._path(key)
        try:
            with self._locked(key):
                current = self._current_generation(path)
                if current == 0:
                    raise NotFound(f"{self.url}: no blob {key!r}")
                if if_generation is not None and current != if_generation:
                    raise PreconditionFailed(
                        f"{self.url}: {key!r} is at generation {current}, not {if_generation}"
                    )
                os.unlink(path)
        except OSError as err:
            raise self._wrap("delete", key, err) from err


@contextmanager
def _suppress_missing() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass
