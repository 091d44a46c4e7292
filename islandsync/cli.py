"""The ``islandsync`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from islandsync import __version__
from islandsync.bucket.layout import RUN_KEY
from islandsync.cli_flags import (
    CREDENTIALS_HELP,
    DURATIONS_HELP,
    HelpFormatter,
    coordinate_flags,
    coordinate_settings,
    fitness_flags,
    init_flags,
    option_flags,
    parse_duration,
    run_flags,
)
from islandsync.errors import ConfigError, IslandSyncError
from islandsync.publish import DEFAULT_EXPIRES_S
from islandsync.store import url_examples
from islandsync.worker.options import WorkerOptions


def _smoke(args: argparse.Namespace) -> int:
    from islandsync.smoke import run_smoke

    run_smoke(_open(args, existing=False), pop=args.pop, dim=args.dim, elite=args.elite,
              seed=args.seed)
    return 0


def _fitness(args: argparse.Namespace) -> Callable[..., Any] | None:
    """The function ``--fitness`` names (``--per-solution``: wrapped), or None."""
    from islandsync.config import load_fitness

    if args.fitness is None:
        if args.per_solution:
            raise ConfigError("--per-solution applies to a --fitness function; give --fitness")
        return None
    # In this process __main__ is the islandsync command, never the user's notebook or script.
    fn = load_fitness(args.fitness, main_is_users=False)
    if args.per_solution:
        from islandsync.search.per_solution import per_solution

        fn = per_solution(fn)
    return fn


def _open(args: argparse.Namespace, *, existing: bool = True) -> Any:
    """The run's store; ``existing``: refuse (one line, exit 2, nothing created) when there
    is no run at the URL, as every command that only reads one does."""
    from islandsync.env.opening import open_run

    return open_run(args.run, credentials=args.credentials, existing=existing)[0]


def _spec_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The spec flags given, by their SPEC_FLAGS names (--duration sets duration_s,
    --maximize the direction)."""
    from islandsync.config import SPEC_FLAGS

    values = {**vars(args), "duration_s": args.duration,
              "direction": "maximize" if args.maximize else None}
    flags = {name: values[name] for name in SPEC_FLAGS if values.get(name) is not None}
    if args.algorithm_settings:  # --set algorithm.FIELD=VALUE, each field once
        settings = dict(args.algorithm_settings)
        if len(settings) < len(args.algorithm_settings):
            twice = sorted({f for f, _ in args.algorithm_settings
                            if [g for g, _ in args.algorithm_settings].count(f) > 1})
            raise ConfigError(f"islandsync init: --set algorithm.{twice[0]} given twice; "
                              f"give each setting once")
        flags["algorithm_settings"] = settings
    return flags


def _init(args: argparse.Namespace) -> int:
    from islandsync.bucket.run import init_run
    from islandsync.config import load_toml, spec_from_flags
    from islandsync.store.probe import check_fencing

    fitness = _fitness(args)
    flags = _spec_flags(args)
    if args.config:
        # Flags beside --config replace the file's values: never silently ignored.
        spec = load_toml(args.config, fitness=fitness, overrides=flags)
    else:
        problem = args.problem or ("custom" if fitness is not None else None)
        if not problem:
            raise ConfigError("islandsync init: give --config run.toml or at least --problem")
        spec = spec_from_flags(**{**flags, "problem": problem}, fitness=fitness)
    store = _open(args, existing=False)
    check_fencing(store)  # never create a run on a bucket that cannot fence
    outcome = init_run(store, spec)
    if outcome == "created":
        print(f"created {store.url}/{RUN_KEY}")
    else:
        print(f"{store.url}/{RUN_KEY} already holds this spec; nothing to do")
    if (ref := spec.problem.fitness) is not None:
        print(f"fitness {ref.name}, fingerprint {ref.fingerprint[:16]}: every worker passes "
              f"the same function (--fitness FILE.py:FUNCTION"
              + (" --per-solution)" if ref.per_solution else ")"))
    if not args.no_publish:
        try:
            _print_install_line(store, None, args.expires)
        except ConfigError as err:  # the run stands; only the line is missing
            print(f"islandsync init: no install line: {err}", file=sys.stderr)
    return 0


def _for_how_long(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _print_install_line(store, wheel: str | None, expires: float) -> None:  # noqa: ANN001
    """Publish, then the one line on stdout (so `> line.txt` keeps only it), the rest on
    stderr."""
    from islandsync.publish import publish_line

    line = publish_line(store, wheel, expires_s=expires)
    print(f"published this islandsync's wheel under {store.url.rstrip('/')}/dist/; paste this "
          f"line as the install cell of every notebook that joins the run ("
          + ("on this machine" if line.startswith('%pip install "file:')
             else f"it works for {_for_how_long(expires)}") + "):", file=sys.stderr)
    print(line, flush=True)


def _worker(args: argparse.Namespace) -> int:
    import logging

    from islandsync.api import make_worker

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fitness = _fitness(args)
    observe = None
    if args.metrics_port is not None:
        from islandsync.views.metrics import WorkerMetrics, serve

        metrics = WorkerMetrics()
        server, _ = serve(metrics.registry, args.metrics_port, args.metrics_host)
        observe = metrics.observe
        print(f"islandsync worker: metrics on http://{args.metrics_host}:"
              f"{server.server_port}/metrics", file=sys.stderr)
    options = WorkerOptions.from_args(args)
    worker = make_worker(args.run, options, credentials=args.credentials, fitness=fitness,
                         on_heartbeat=observe)
    if not options.solo:
        print(f"islandsync worker ({worker.platform}): islands come from the run's leader"
              + (" (this worker stands as a candidate too)" if options.coordinator else ""),
              file=sys.stderr)
    worker.run()
    return 0


def _coordinate(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from islandsync import __version__
    from islandsync.api import leader_observers
    from islandsync.bucket.records import check_protocol
    from islandsync.bucket.run import read_spec
    from islandsync.env.opening import open_run
    from islandsync.leader.coordinator import Coordinator
    from islandsync.store.counting import CountingStore
    from islandsync.worker.bucket_thread import default_worker_id

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store, profile = open_run(args.run, credentials=args.credentials, platform=args.platform,
                              existing=True)
    # A leader of another bucket protocol must not lead, assign, merge or sweep this run:
    # refused (one line, exit 2) before anything is written, as a worker is.
    check_protocol(store, version=__version__)
    store = CountingStore(store)
    candidate = args.candidate_id or "coord-" + default_worker_id(profile.name)
    spec, settings = read_spec(store), coordinate_settings(args)
    # The metrics and the run's history, composed as a worker's candidate composes them.
    observer, url = leader_observers(store, spec, settings)
    if url is not None:
        print(f"islandsync coordinate: metrics on {url}", file=sys.stderr, flush=True)
    coordinator = Coordinator(store, candidate=candidate, spec=spec, settings=settings,
                              observer=observer)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    print(f"islandsync coordinate: candidate {candidate} on {store.url} (cadence "
          f"{coordinator.spec.cadence}: lease {coordinator.lease.lease_s:g}s, cycle "
          f"{coordinator.interval:g}s)", file=sys.stderr, flush=True)
    try:  # the run flushes the history as it stops (the observer's on_stop)
        coordinator.run(stop, duration=args.duration, until_finished=True)
    finally:
        for sig, handler in previous.items():  # main() may be called in-process again
            signal.signal(sig, handler)
    if coordinator.finish_reason is not None:
        print(f"islandsync coordinate: the run is finished ({coordinator.finish_reason}); "
              f"exiting", file=sys.stderr, flush=True)
    return 0


def _best(args: argparse.Namespace) -> int:
    from islandsync.views.results import best_genomes

    best = best_genomes(_open(args), top=args.top)
    if args.npy:
        import numpy as np

        np.save(args.npy, best["genomes"])
        print(f"wrote {len(best['genomes'])} genomes to {args.npy}")
    elif args.json:
        print(json.dumps({k: v for k, v in best.items() if k != "genomes"}
                         | {"genomes": [g.tolist() for g in best["genomes"]]}, indent=2))
    else:
        where = ([f"elite epoch {best['epoch']} (term {best['term']})"]
                 if best["epoch"] is not None else [])
        if best["islands_read"]:
            where.append(f"the elites of {best['islands_read']} islands' latest checkpoints")
        print(f"best {len(best['fitness'])}, from {' and '.join(where)}:")
        for rank, (fit, island, gid) in enumerate(
                zip(best["fitness"], best["island"], best["id"]), 1):
            print(f"{rank:3d}  fitness {fit:.10g}  island {island}  id {gid:016x}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from islandsync.demo import run_demo

    return run_demo(workers=args.workers, duration=args.duration, directory=args.dir,
                    kill_one=args.kill_one, url=args.url, credentials=args.credentials)


def _report(args: argparse.Namespace) -> int:
    from islandsync.views.report import build_report

    store = _open(args)
    if args.json:
        from islandsync.views.report import report_json

        print(json.dumps(report_json(store), indent=2))
        return 0
    path = build_report(store, html_path=args.html, png_dir=args.png)
    print(f"wrote {path}" + (f" and the figures' PNGs in {args.png}" if args.png else ""))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from islandsync.env.opening import open_run

    store, _ = open_run(args.run, credentials=args.credentials)
    _print_install_line(store, args.wheel, args.expires)
    return 0


def _status(args: argparse.Namespace) -> int:
    from islandsync.views.status import collect_status, format_status, watch

    store = _open(args)

    def show() -> str:
        st = collect_status(store)
        if args.json:  # with --watch, one document a line (JSON Lines)
            return json.dumps(st, indent=None if args.watch else 2, default=str)
        return format_status(st)

    if args.watch is None:
        print(show())
    else:
        watch(show, args.watch, title=f"islandsync status {args.run}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="islandsync",
        description="One island-model evolutionary search across notebooks and a laptop.",
    )
    parser.add_argument("--version", action="version", version=f"islandsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    from islandsync.env.platforms import known_platforms

    platforms = known_platforms()
    for add in (_smoke_command, _init_command, _worker_command, _coordinate_command,
                _best_command, _demo_command, _status_command, _report_command,
                _publish_command):
        add(sub, platforms)
    for command in sub.choices.values():  # every command's help shows its defaults
        command.formatter_class = HelpFormatter
    return parser


# Each command's parser: ``sub`` is the subparsers, ``platforms`` the known platform names.
Sub = Any


def _smoke_command(sub: Sub, platforms: list[str]) -> None:
    smoke = sub.add_parser("smoke", help="write, read back and CAS a checkpoint in RUN")
    run_flags(smoke, nargs="?", default="./islandsync-smoke")
    smoke.add_argument("--pop", type=int, default=1024,
                       help="rows of the test population (default: %(default)s)")
    smoke.add_argument("--dim", type=int, default=100,
                       help="columns of the test population (default: %(default)s)")
    smoke.add_argument("--elite", type=int, default=32,
                       help="rows of the elite frame read back by ranged read "
                            "(default: %(default)s)")
    smoke.add_argument("--seed", type=int, default=0,
                       help="random seed of the test data (default: %(default)s)")
    smoke.set_defaults(func=_smoke)


def _init_command(sub: Sub, platforms: list[str]) -> None:
    init = sub.add_parser("init", help="create a run: write RUN/run.json (create-only)",
                          epilog=DURATIONS_HELP)
    init_flags(init)
    init.set_defaults(func=_init)


def _worker_command(sub: Sub, platforms: list[str]) -> None:
    worker = sub.add_parser("worker", help="host islands of RUN on this machine's device",
                          epilog=DURATIONS_HELP)
    run_flags(worker)
    # The worker's own settings: flags, help and defaults from WorkerOptions' fields.
    option_flags(worker, WorkerOptions, choices={"platform": platforms})
    fitness_flags(worker, "run's custom fitness function (its fingerprint must match "
                  "run.json's)")
    worker.add_argument("--metrics-port", dest="metrics_port", type=int,
                        help="serve this worker's Prometheus /metrics (0: any free port)")
    worker.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1",
                        help="address /metrics listens on (default: %(default)s)")
    worker.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    worker.set_defaults(func=_worker)


def _coordinate_command(sub: Sub, platforms: list[str]) -> None:
    coord = sub.add_parser("coordinate",
                           help="stand as the run's coordinator (leader election)",
                           epilog=DURATIONS_HELP)
    run_flags(coord)
    coordinate_flags(coord, platforms)
    coord.set_defaults(func=_coordinate)


def _best_command(sub: Sub, platforms: list[str]) -> None:
    best = sub.add_parser("best", help="the best genomes of RUN: its newest merged elite and "
                          "its islands' latest checkpoints (a --solo run has only those)")
    run_flags(best)
    best.add_argument("--top", type=int, default=10,
                      help="how many genomes (default: %(default)s)")
    best_out = best.add_mutually_exclusive_group()
    best_out.add_argument("--json", action="store_true",
                          help="fitness, island, id and genome of each, as JSON")
    best_out.add_argument("--npy", metavar="FILE", help="write the genomes as a .npy array")
    best.set_defaults(func=_best)


def _demo_command(sub: Sub, platforms: list[str]) -> None:
    demo = sub.add_parser("demo", help="a coordinator and workers on a local directory "
                          "(or --url)",
                          epilog=DURATIONS_HELP)
    demo.add_argument("--workers", type=int, default=3,
                      help="worker processes (default: %(default)s)")
    demo.add_argument("--duration", type=parse_duration, default=60.0,
                      help="how long the demo runs (default: 60s)")
    demo.add_argument("--dir", help="run directory (default: a new temporary one)")
    demo.add_argument("--url", help="run the demo on this store instead of DIR/run: "
                      f"{url_examples()} (a fresh prefix; logs and "
                      "the report stay in DIR)")
    demo.add_argument("--credentials", help=CREDENTIALS_HELP)
    demo.add_argument("--kill-one", dest="kill_one", action="store_true",
                      help="kill -9 one worker mid-run to show its islands moving")
    demo.set_defaults(func=_demo)


def _status_command(sub: Sub, platforms: list[str]) -> None:
    status = sub.add_parser("status", help="islands, workers, leader and elite of RUN")
    run_flags(status)
    status.add_argument("--json", action="store_true", help="machine-readable (stable keys)")
    status.add_argument("--watch", nargs="?", const=5.0, type=parse_duration, metavar="SECONDS",
                        help="refresh every SECONDS (5s when not given) until Ctrl-C")
    status.set_defaults(func=_status)


def _report_command(sub: Sub, platforms: list[str]) -> None:
    report = sub.add_parser("report", help="the run's history as one self-contained HTML page "
                            "(needs the plot extra: pip install 'islandsync[plot]')")
    run_flags(report)
    report.add_argument("--html", metavar="FILE",
                        help="where to write the page (default: islandsync-report.html)")
    report.add_argument("--png", metavar="DIR", help="also write each figure as a PNG in DIR")
    report.add_argument("--json", action="store_true",
                        help="print the summary as JSON instead (span, bucket operations by "
                             "role, worker- and leader-hours, a month's cost; no matplotlib)")
    report.set_defaults(func=_report)


def _publish_command(sub: Sub, platforms: list[str]) -> None:
    publish = sub.add_parser("publish", help="put this islandsync's wheel under RUN/dist/ and "
                             "print the one install line (%%pip install \"URL#sha256=...\") "
                             "for the notebooks", epilog=DURATIONS_HELP)
    run_flags(publish, credentials_help=CREDENTIALS_HELP + " (gs://: it must be a "
                   "service-account key, to sign the URL)")
    publish.add_argument("--wheel", metavar="FILE",
                         help="publish this wheel instead of building one of the running "
                              "islandsync")
    publish.add_argument("--expires", type=parse_duration, default=DEFAULT_EXPIRES_S,
                         help="how long the signed URL in the line works (default: 7d, the "
                              "most GCS and S3 allow)")
    publish.set_defaults(func=_publish)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code = int(args.func(args))
        sys.stdout.flush()  # a reader that went away shows here, not as a traceback at exit
        return code
    except IslandSyncError as err:
        print(f"islandsync: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `islandsync status RUN --json | head -1`: the reader has what it wanted. Stop
        # quietly, as a Unix filter does; Python's own flush at exit would raise again.
        _drop_stdout()
        return 128 + 13  # what a shell reports for a filter stopped by SIGPIPE


def _drop_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor (a captured stream): nothing to do
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
