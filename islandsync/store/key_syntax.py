"""Key rules shared by every store, so a key valid on one is valid on all."""

from __future__ import annotations

from ..errors import ConfigError

#: GCS caps object names at 1024 bytes of UTF-8; the root prefix counts too, so stay below.
MAX_KEY_BYTES = 900


def check_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid store key, else raise ConfigError naming it."""
    if not isinstance(key, str) or not key:
        raise ConfigError(f"store key must be a non-empty string, got {key!r}")
    problem = None
    if key.startswith("/"):
        problem = "starts with '/'"
    elif "\x00" in key or "\r" in key or "\n" in key:
        problem = "contains NUL or a line break"
    elif any(part in ("", ".", "..") for part in key.split("/")):
        problem = "has an empty, '.' or '..' segment"
    elif len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        problem = f"is longer than {MAX_KEY_BYTES} bytes"
    else:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            problem = "is not valid unicode (lone surrogate)"
    if problem:
        raise ConfigError(f"store key {key!r} {problem}")
    return key


def check_range(start: int | None, end: int | None) -> tuple[int, int | None]:
    """Normalise a ``[start, end)`` byte range; negative values are rejected, not wrapped."""
    lo = 0 if start is None else start
    if not isinstance(lo, int) or lo < 0:
        raise ConfigError(f"range start must be a non-negative int, got {start!r}")
    if end is not None and (not isinstance(end, int) or end < 0):
        raise ConfigError(f"range end must be a non-negative int or None, got {end!r}")
    return lo, end
