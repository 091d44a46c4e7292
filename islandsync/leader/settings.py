"""A coordinator's own settings: what a ``coordinate`` flag (or the code that starts a
candidate) may set, each default written here once.

The run's cadence is not among them: the lease and the cycle are the run's (``run.json``
``lease_s`` and ``leader_cycle_s``, from its preset in :data:`islandsync.config.CADENCES`),
and ``None`` here means exactly that; :meth:`LeaderSettings.for_run` fills them in. The CLI
takes its ``coordinate`` defaults from :data:`DEFAULTS` and says them in its help; a
benchmark that wants the coordinator's defaults reads them here (the cadence from
``RunSpec``'s fields).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from islandsync.bucket.heads import DEFAULT_READERS
from islandsync.config import RunSpec
from islandsync.errors import ConfigError
from islandsync.leader.history import HISTORY_EVERY_S, HISTORY_FLUSH_S


@dataclass(frozen=True)
class LeaderSettings:
    """One candidate's settings (see module doc). Durations in seconds."""

    #: The lease's length; None: the run's (``run.json`` ``lease_s``).
    lease_s: float | None = None
    #: One cycle (heartbeats, assignment, merge); None: the run's ``leader_cycle_s``.
    cycle_s: float | None = None
    #: Islands move off a worker this long before its session deadline.
    drain_s: float = 120.0
    #: Old checkpoints and long-dead heartbeats are swept this often (the first within 60 s).
    housekeeping_s: float = 300.0
    #: Bucket reads in flight at once (heartbeats, HEADs, elite frames).
    readers: int = DEFAULT_READERS
    #: While leading, an entry in the run's history this often; 0: no history.
    history_every_s: float = HISTORY_EVERY_S
    #: The history's pending entries are written at least this often.
    history_flush_s: float = HISTORY_FLUSH_S
    #: Serve Prometheus /metrics on this port (0: any free one); None: no endpoint.
    metrics_port: int | None = None
    #: The address /metrics listens on; None: ``views.metrics.serve``'s default (loopback).
    metrics_host: str | None = None

    def __post_init__(self) -> None:
        for name in ("lease_s", "cycle_s", "drain_s", "housekeeping_s", "history_flush_s"):
            value = getattr(self, name)
            if value is not None and not (_number(value) and value > 0):
                raise ConfigError(f"leader settings: {name} must be a positive number of "
                                  f"seconds, not {value!r}")
        if not (_number(self.history_every_s) and self.history_every_s >= 0):
            raise ConfigError("leader settings: history_every_s must be >= 0 (0: no history), "
                              f"not {self.history_every_s!r}")
        if isinstance(self.readers, bool) or not isinstance(self.readers, int) \
                or self.readers < 1:
            raise ConfigError(f"leader settings: readers must be a whole number >= 1, not "
                              f"{self.readers!r}")
        port = self.metrics_port
        if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                                 or not 0 <= port < 65536):
            raise ConfigError(f"leader settings: metrics_port must be 0..65535 or None, not "
                              f"{port!r}")

    def for_run(self, spec: RunSpec) -> LeaderSettings:
        """These settings with the run's cadence where they leave it to the run."""
        return dataclasses.replace(
            self, lease_s=spec.lease_s if self.lease_s is None else self.lease_s,
            cycle_s=spec.leader_cycle_s if self.cycle_s is None else self.cycle_s)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Every default, for the CLI's flags and help (and anyone else who needs one).
DEFAULTS = LeaderSettings()

__all__ = ["DEFAULTS", "LeaderSettings"]
