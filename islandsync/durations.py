"""The one reader of durations typed by people: ``90``, ``90s``, ``50ms``, ``10m``, ``2h``...

Command-line flags (``--duration 2h``), ``$ISLANDSYNC_SESSION_LIMIT`` and
``$ISLANDSYNC_STORE_LATENCY`` all read their text here, so every place accepts the same units
and refuses the same things: a sign, an exponent, ``nan``/``inf`` and a value too large for a
float are all errors rather than surprising numbers.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable

from islandsync.errors import ConfigError

#: Seconds per unit; no unit means seconds.
UNITS: dict[str, float] = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
                           "d": 86400.0}
# Longest units first so that "ms" is not read as "m" followed by junk.
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h|d)?\s*$", re.IGNORECASE)


def parse_duration(text: str, *, what: str, allow_zero: bool = False) -> float:
    """Seconds in ``text``: a plain number of seconds or a number with one of ``us``, ``ms``,
    ``s``, ``m``, ``h``, ``d`` (spaces allowed around it, any case).

    The result is finite and more than 0, or at least 0 with ``allow_zero`` (where 0 means
    "off", as for a simulated latency).

    Raises:
        ConfigError: ``text`` is not such a duration; the message starts with ``what`` (the
            flag or variable it came from) and shows the text.
    """
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise ConfigError(f"{what}: expected seconds or a number with us, ms, s, m, h or d "
                          f"(e.g. 3600, 50ms, 90m, 11h), got {text!r}")
    seconds = float(match.group(1)) * UNITS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = "at least 0" if allow_zero else "more than 0"
        raise ConfigError(f"{what}: must be {bound} seconds, got {text!r}")
    return seconds


def duration_type(*, allow_zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for duration flags: :func:`parse_duration`, its refusal turned
    into argparse's own (``argument --lease: ...`` and exit status 2)."""
    def parse(text: str) -> float:
        try:
            return parse_duration(text, what="duration", allow_zero=allow_zero)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    return parse


__all__ = ["UNITS", "duration_type", "parse_duration"]
