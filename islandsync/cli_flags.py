"""The command line's shared flags and help (:mod:`islandsync.cli` builds the commands from
them): the run URL and credentials of every command that opens a run, ``init``'s spec flags
(names, choices and defaults taken from the registries and the spec's models, never restated),
the fitness flags, and the help formatter that shows every default."""

from __future__ import annotations

import argparse
from typing import Any

from islandsync import durations
from islandsync.publish import DEFAULT_EXPIRES_S
from islandsync.store import SCHEMES, url_examples

# Each bucket's scheme and what its credentials are, from the one scheme registry.
CREDENTIALS_HELP = "; ".join([*(f"{name}://: {scheme.credentials_help}"
                                for name, scheme in SCHEMES.items()),
                              "a local directory takes none"])
RUN_HELP = "run URL: a directory, file:///path, " + url_examples()
DURATIONS_HELP = ("durations (--duration, --lease, ...): seconds, or a number with us, ms, "
                  "s, m, h or d, e.g. 90, 90s, 10m, 2h")


#: ``type=`` of every duration flag: islandsync.durations, refused the argparse way.
parse_duration = durations.duration_type()


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, durations in seconds (``15s``); nothing where
    there is no default to show (None, a switch's False) or the help says it already."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, argparse.SUPPRESS)
                or (not action.option_strings and action.nargs != argparse.OPTIONAL)):
            return text
        shown = f"{default:g}s" if action.type is parse_duration else str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


def bounds(text: str) -> float | list[float]:
    """``type=`` of ``--lower``/``--upper``: one number, or a comma list of one per gene."""
    try:
        values = [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or a comma list of "
                                         f"numbers") from None
    return values if "," in text else values[0]


def integer_genes(text: str) -> list[int | str]:
    """``type=`` of ``--integer 0,3,5:8``: gene indices and ranges (checked by the spec)."""
    return [int(x) if x.strip().isdigit() else x.strip() for x in text.split(",") if x.strip()]


def lower(text: str) -> str:
    """``type=`` of name flags that accept any case (``--platform Kaggle``)."""
    return text.strip().lower()


def run_flags(parser: argparse.ArgumentParser, *, credentials_help: str = CREDENTIALS_HELP,
              **run: Any) -> None:
    """The run URL and the credentials to open it with: every command that opens a run."""
    parser.add_argument("run", help=RUN_HELP, **run)
    parser.add_argument("--credentials", metavar="FILE", help=credentials_help)


def init_flags(init: argparse.ArgumentParser) -> None:
    """``init``'s flags; names, choices and defaults come from the registries and the spec's
    models (one home each), so the help never lists a name or a default that is not so."""
    run_flags(init)
    init.add_argument("--config", metavar="TOML", help="a TOML run spec; flags given beside "
                      "it replace the file's values")
    _problem_flags(init)
    _algorithm_flags(init)
    _run_spec_flags(init)
    init.add_argument("--no-publish", dest="no_publish", action="store_true",
                      help="do not publish this islandsync's wheel (see `publish`)")
    init.add_argument("--expires", type=parse_duration, default=DEFAULT_EXPIRES_S,
                      help="how long the printed install line works (default: 7d, the most)")


def _problem_flags(init: argparse.ArgumentParser) -> None:
    """The problem and its genome."""
    import typing

    from islandsync.config import BUILTIN_PROBLEMS, DEFAULT_DTYPE, RunSpec

    run = RunSpec.model_fields
    # A network's genome length follows from its params: --dim is not required there.
    real = [p.name for p in BUILTIN_PROBLEMS.values() if p.kind == "real" and not p.dim_of]
    tokens = [p for p in BUILTIN_PROBLEMS.values() if p.kind == "tokens"]
    box = BUILTIN_PROBLEMS[real[0]] if real else None
    init.add_argument("--problem", choices=[*BUILTIN_PROBLEMS, "custom"],
                      help="a built-in problem, or custom: your own function (--fitness)")
    fitness_flags(init, "custom problem's fitness function, fingerprinted into run.json "
                  "(implies --problem custom)")
    init.add_argument("--dim", type=int, help="genes per genome of a real-valued problem: "
                      f"required for {', '.join(real)} and a real custom problem (no default)")
    init.add_argument("--length", type=int, help="tokens per genome of a token problem "
                      "(default: the problem's: "
                      + ", ".join(f"{p.name} {p.length}" for p in tokens) + ")")
    init.add_argument("--vocab", type=int, help="token vocabulary size of a custom token "
                      "problem (a built-in one has its own)")
    box_text = f", e.g. {box.name} {box.lower:g} to {box.upper:g}" if box else ""
    init.add_argument("--lower", type=bounds, help="lower bound of each real gene, or a comma "
                      "list of one per gene: --lower=-1,0,-2 (default: "
                      f"the problem's{box_text}; required for custom)")
    init.add_argument("--upper", type=bounds, help="upper bound of each real gene, or a comma "
                      "list of one per gene (default: the problem's; required for custom)")
    init.add_argument("--integer", type=integer_genes, help="genes that take integers only: "
                      "indices and ranges a:b (genes a to b-1), e.g. 0,3,5:8 (default: none)")
    init.add_argument("--dtype", choices=typing.get_args(run["dtype"].annotation),
                      help="genomes' and scores' dtype; float64 for precision beyond 1e-7; "
                           "auto: each worker's own, float64 on a CPU, float32 on a GPU "
                           f"(default: {DEFAULT_DTYPE['real']} for real genes, "
                           f"{DEFAULT_DTYPE['tokens']} for tokens)")
    init.add_argument("--maximize", action="store_true",
                      help="maximise the fitness (default: minimise)")


def _algorithm_flags(init: argparse.ArgumentParser) -> None:
    """The islands, their algorithm (names from the registry) and its settings (--set)."""
    import inspect

    from islandsync.config import (
        ALGORITHM_CONFIGS,
        DEFAULT_ALGORITHM,
        PORTFOLIOS,
        spec_from_flags,
    )

    flags = inspect.signature(spec_from_flags).parameters
    algorithm = ", ".join(f"{name} for {kind}" for kind, name in DEFAULT_ALGORITHM.items())
    init.add_argument("--islands", type=int, help="number of islands (populations) "
                      f"(default: {flags['islands'].default})")
    pops = {name: cls.model_fields["pop"].default for name, cls in ALGORITHM_CONFIGS.items()}
    init.add_argument("--pop", type=int, help="genomes per island (default: the algorithm's: "
                      + ", ".join(f"{name} {pop}" for name, pop in pops.items()) + ")")
    # Each algorithm described by its settings' own docstring (its first words).
    about = {name: (cls.__doc__ or name).split("(")[0].split(":")[0].strip()
             for name, cls in ALGORITHM_CONFIGS.items()}
    init.add_argument("--algorithm", choices=[*ALGORITHM_CONFIGS, *PORTFOLIOS],
                      help="the islands' algorithm: " + "; ".join(
                          f"{name}: {text}" for name, text in about.items())
                      + "; or a named portfolio, given to the islands round-robin: "
                      + "; ".join(f"{name}: {', '.join(algs)}"
                                  for name, algs in PORTFOLIOS.items())
                      + f" (default: {algorithm})")
    init.add_argument("--set", dest="algorithm_settings", action="append", type=setting,
                      metavar="algorithm.FIELD=VALUE",
                      help="one of the algorithm's settings (repeatable), checked by its "
                      "settings model, e.g. --set algorithm.f_init=0.7 for de or --set "
                      "algorithm.crossover=uniform for ga; a portfolio's every entry gets it. "
                      "The fields are those of its [algorithm] table in a TOML spec "
                      "(README, \"Algorithm settings\")")


def _run_spec_flags(init: argparse.ArgumentParser) -> None:
    """Stop criteria, migration, the elite, cadence and seed."""
    import typing

    from islandsync.config import CADENCES, MigrationSpec, RunSpec

    run, migration = RunSpec.model_fields, MigrationSpec.model_fields
    init.add_argument("--max-evals", dest="max_evals", type=int,
                      help="stop the run after this many evaluations in all (default: none)")
    init.add_argument("--target", type=float,
                      help="stop the run once the best fitness reaches this (default: none)")
    init.add_argument("--duration", type=parse_duration,
                      help="stop the run after this long, e.g. 2h (default: none)")
    init.add_argument("--migration-interval", dest="migration_interval", type=int,
                      help="generations between migrations "
                           f"(default: {migration['interval'].default})")
    init.add_argument("--migrants", type=int, help="genomes each island takes in per "
                      f"migration (default: {migration['migrants'].default})")
    init.add_argument("--topology", choices=typing.get_args(migration["topology"].annotation),
                      help="pool: migrants from the global elite; ring: from the next island "
                           f"(default: {migration['topology'].default})")
    init.add_argument("--elite-size", dest="elite_size", type=int, help="genomes kept in "
                      f"the merged global elite (default: {run['elite_size'].default})")
    init.add_argument("--cadence", choices=list(CADENCES),
                      help="timing preset (default: default): free-tier keeps 4 workers of 2 "
                           "islands and their leader inside R2's free tier around the clock "
                           "(slower heartbeats, checkpoints and leader); the interval flags "
                           "below override it")
    init.add_argument("--checkpoint-interval", dest="checkpoint_interval_s", type=parse_duration,
                      help="how often a worker checkpoints its islands, e.g. 60s "
                           f"(default: {run['checkpoint_interval_s'].default:g}s)")
    init.add_argument("--heartbeat-interval", dest="heartbeat_interval_s", type=parse_duration,
                      help="how often a worker writes its heartbeat, e.g. 30s "
                           f"(default: {run['heartbeat_interval_s'].default:g}s)")
    init.add_argument("--seed", type=int,
                      help=f"the run's random seed (default: {run['seed'].default})")


def setting(text: str) -> tuple[str, Any]:
    """``type=`` of ``--set algorithm.FIELD=VALUE``: the field and its value, read as JSON
    (``0.7``, ``true``, ``"x"``, ``[1, 2]``) or else as the text itself (``uniform``). The
    settings model checks both (:func:`islandsync.config.spec_from_flags`)."""
    import json

    key, eq, value = text.partition("=")
    table, dot, field = key.strip().partition(".")
    if not eq or table != "algorithm" or not dot or not field.isidentifier():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected algorithm.FIELD=VALUE, e.g. algorithm.f_init=0.7")
    try:
        return field, json.loads(value)
    except ValueError:
        return field, value.strip()


def coordinate_flags(coord: argparse.ArgumentParser, platforms: list[str]) -> None:
    """``coordinate``'s flags; their defaults are the leader settings' (one home:
    :mod:`islandsync.leader.settings`), but for /metrics, which this command serves on
    9464 by default and an embedded candidate does not serve at all."""
    from islandsync.leader.settings import DEFAULTS

    coord.add_argument("--lease", type=parse_duration,
                       help="lease, e.g. 15s (default: the run's cadence, run.json lease_s)")
    coord.add_argument("--interval", type=parse_duration,
                       help="cycle, e.g. 5s (default: the run's cadence, run.json "
                            "leader_cycle_s)")
    coord.add_argument("--duration", type=parse_duration, help="stop after, e.g. 1h")
    coord.add_argument("--candidate-id", dest="candidate_id",
                       help="this candidate's id in the lease "
                            "(default: coord-platform-host-random)")
    coord.add_argument("--drain", type=parse_duration, default=DEFAULTS.drain_s,
                       help="move islands off a worker this long before its session deadline")
    coord.add_argument("--metrics-port", dest="metrics_port", type=int, default=9464,
                       help="serve Prometheus /metrics here (0: any free port, -1: off)")
    coord.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1",
                       help="address /metrics listens on (default: %(default)s)")
    coord.add_argument("--platform", type=lower, choices=platforms,
                       help="the platform's profile (default: detect)")
    coord.add_argument("--history-every", dest="history_every",
                       type=durations.duration_type(allow_zero=True),
                       default=DEFAULTS.history_every_s,
                       help="while leader, add an entry to the run's history (history/, read "
                            "by `islandsync report`) this often; 0: no history (default: "
                            f"{DEFAULTS.history_every_s:g}s)")
    coord.add_argument("--history-flush", dest="history_flush", type=parse_duration,
                       default=DEFAULTS.history_flush_s,
                       help="write the history's pending entries as a segment at least this "
                            "often: what a killed leader loses")


def coordinate_settings(args: argparse.Namespace) -> Any:
    """The :class:`~islandsync.leader.settings.LeaderSettings` ``coordinate``'s flags say."""
    from islandsync.leader.settings import LeaderSettings

    return LeaderSettings(lease_s=args.lease, cycle_s=args.interval, drain_s=args.drain,
                          history_every_s=args.history_every,
                          history_flush_s=args.history_flush,
                          metrics_port=None if args.metrics_port < 0 else args.metrics_port,
                          metrics_host=args.metrics_host)


def fitness_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--fitness", metavar="FILE.py:FN",
                        help=f"the {what}: path/to/file.py:function or module:function; it "
                             f"takes the whole batch, x: Tensor[batch, dim] -> Tensor[batch]")
    parser.add_argument("--per-solution", dest="per_solution", action="store_true",
                        help="the --fitness function takes one solution, x: Tensor[dim] -> "
                             "float (vectorised with torch.func.vmap where it can be)")


def option_flags(parser: argparse.ArgumentParser, model: Any,
                 choices: dict[str, list[str]] | None = None) -> None:
    """Add a flag for each field of ``model`` (``WorkerOptions``) that declares one, its
    help and default taken from the field: the options are declared once, in the model.
    ``choices`` supplies the names a ``name`` field takes (the platforms, say)."""
    for name, flag, kind in model.flags():
        info = model.model_fields[name]
        dest = flag.lstrip("-").replace("-", "_")
        if kind in ("switch", "negated"):
            parser.add_argument(flag, dest=dest, action="store_true", help=info.description)
            continue
        default = info.default
        if kind == "duration":
            kw: dict[str, Any] = {"type": parse_duration}
        elif kind == "name":
            kw = {"type": lower, "choices": (choices or {}).get(name)}
        else:
            kw = {"type": int if "int" in str(info.annotation) else str}
        parser.add_argument(flag, dest=dest, default=default, help=info.description, **kw)

__all__ = [
    "CREDENTIALS_HELP", "DURATIONS_HELP", "RUN_HELP", "HelpFormatter", "coordinate_flags",
    "coordinate_settings", "fitness_flags", "init_flags", "lower", "option_flags",
    "parse_duration", "run_flags", "setting",
]
