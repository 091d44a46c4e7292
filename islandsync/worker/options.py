"""A worker's options: the one declaration of every per-worker setting, torch-free.

``islandsync.run`` (keyword arguments), :func:`islandsync.api.make_worker`,
:class:`~islandsync.worker.worker.Worker` and the ``islandsync worker`` command all take
:class:`WorkerOptions`; the command's flags and their help are built from its fields
(``cli_flags.option_flags``), so a setting, its default and its help are written once.

What a worker is handed rather than configured with (the store, the spec, the fitness
function, callbacks, the companion) are arguments of its own, not options.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from islandsync.errors import ConfigError

#: How a field is given on the command line: ``value`` (``--flag X``), ``duration``
#: (``--flag 10m``), ``name`` (``--flag X`` from choices the command supplies, any case),
#: ``switch`` (``--flag`` sets it True) or ``negated`` (``--flag`` sets it False).
FlagKind = Literal["value", "duration", "name", "switch", "negated"]


def _option(default: Any, help: str, flag: str | None = None, kind: FlagKind = "value",
            **limits: Any) -> Any:
    extra = {"flag": flag, "kind": kind} if flag else {}
    return Field(default, description=help, json_schema_extra=extra, **limits)


class WorkerOptions(BaseModel):
    """Every setting of one worker. Strict as the run spec is: an unknown option is an
    error (a typo must not fall back to a default), ints must be ints."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    device: str = _option("auto", "auto, cpu or cuda[:n]", "--device")
    max_islands: int | None = _option(
        None, "host at most this many islands (default: the platform profile's "
              "default_max_islands)", "--max-islands", ge=1)
    duration: float | None = _option(
        None, "stop after, e.g. 10m (default: when the run finishes, on Ctrl-C or at the "
              "session limit)", "--duration", "duration", gt=0.0)
    solo: bool = _option(False, "claim every island without a live owner: no leader, no "
                                "candidate", "--solo", "switch")
    coordinator: bool = _option(True, "do not stand as a coordinator candidate",
                                "--no-coordinator", "negated")
    worker_id: str | None = _option(
        None, "this worker's id in the run (letters, digits, '_', '.', '-'); a stable one "
              "lets a restarted worker reclaim its islands at once (default: "
              "platform-host-random)", "--worker-id")
    platform: str | None = _option(None, "the platform's profile (default: detect)",
                                   "--platform", "name")
    session_limit: float | None = _option(
        None, "this session's limit, e.g. 11h (default: the platform's)", "--session-limit",
        "duration", gt=0.0)
    lease_s: float | None = _option(
        None, "the lease of this worker's leader candidate, e.g. 15s (default: the run's "
              "cadence, run.json lease_s)", "--lease", "duration", gt=0.0)
    progress: bool = _option(True, "no progress lines", "--quiet", "negated")
    # Python only (islandsync.run, tests): no flag.
    check_id: bool = _option(True, "before the first heartbeat, refuse when another live "
                                   "worker heartbeats under the same id")
    stall_s: float | None = _option(
        None, "how long the loop may go without an iteration before heartbeats stop "
              "vouching for it (default: the larger of 300 s and ten worker timeouts)",
        gt=0.0)
    callback_every_s: float = _option(5.0, "the user's progress callback at most this often",
                                      gt=0.0)

    @classmethod
    def of(cls, options: WorkerOptions | None = None, **settings: Any) -> WorkerOptions:
        """``options`` (default: every default) with ``settings`` on top; a bad or unknown
        setting is one ConfigError naming it."""
        base = options.model_dump() if options is not None else {}
        try:
            return cls(**{**base, **settings})
        except ValidationError as err:
            raise ConfigError("; ".join(_message(e) for e in err.errors())) from None

    @classmethod
    def flags(cls) -> list[tuple[str, str, FlagKind]]:
        """(field, flag, kind) of each option the command line takes, in field order."""
        out = []
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("flag"):
                out.append((name, str(extra["flag"]), extra["kind"]))  # type: ignore[arg-type]
        return out

    @classmethod
    def from_args(cls, args: Any) -> WorkerOptions:
        """The options an argparse namespace built by ``cli_flags.option_flags`` holds."""
        settings = {}
        for name, flag, kind in cls.flags():
            value = getattr(args, flag_dest(flag))
            settings[name] = (not value) if kind == "negated" else value
        return cls.of(**{k: v for k, v in settings.items() if v is not None})


def _message(error: Any) -> str:
    name = ".".join(str(p) for p in error["loc"]) or "?"
    if error["type"] == "extra_forbidden":
        return (f"unknown worker option {name!r}; the options are "
                f"{', '.join(WorkerOptions.model_fields)}")
    return f"worker option {name}: {error['msg']}"


def flag_dest(flag: str) -> str:
    """The argparse ``dest`` of ``flag`` (``--no-coordinator`` -> ``no_coordinator``)."""
    return flag.lstrip("-").replace("-", "_")


__all__ = ["FlagKind", "WorkerOptions", "flag_dest"]
