"""The ``islandsync`` command line."""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from islandsync import __version__, durations
from islandsync.config import ALGORITHM_CONFIGS
from islandsync.errors import ConfigError, IslandSyncError
from islandsync.publish import DEFAULT_EXPIRES_S

#: smoke works under <run>/<this><random>/, never among the run's own records.
SMOKE_PREFIX = "smoke-"


def _smoke(args: argparse.Namespace) -> int:
    """Exercise the store and the codec end to end on a run directory: the first thing a
    newcomer runs, and a quick check that a bucket URL and its credentials work."""
    import numpy as np

    from islandsync.bucket import codec
    from islandsync.store import open_store
    from islandsync.store.probe import check_fencing

    rng = np.random.default_rng(args.seed)
    # A prefix of its own: smoke may run against a live run's URL, and must never touch a
    # record of that run (it once overwrote islands/0/HEAD.json and stopped a solo worker).
    store = open_store(args.run)
    prefix = f"{SMOKE_PREFIX}{secrets.token_hex(4)}/"
    print(f"store      {store!r}, under {prefix}")
    t0 = time.perf_counter()
    pop = (rng.standard_normal((args.pop, args.dim)) * 5).astype(np.float32)
    fitness = (pop**2).sum(axis=1)
    order = np.argsort(fitness)[: args.elite]
    frames = {
        "elite": pop[order],
        "elite_fitness": fitness[order],
        "population": pop,
        "fitness": fitness,
    }
    blob = codec.encode({"island": 0, "generation": 1}, frames)
    raw = sum(a.nbytes for a in frames.values())
    key = f"{prefix}checkpoint.isz"
    store.put(key, blob, if_generation=0)
    print(f"checkpoint {key}: {raw / 1e6:.2f} MB raw -> {len(blob) / 1e6:.2f} MB "
          f"({raw / len(blob):.2f}x)")

    _, elite = codec.read_frame(store, key, "elite")
    if not np.array_equal(elite, pop[order]):
        raise IslandSyncError(f"smoke: elite frame read back from {key} differs")
    _, decoded = codec.decode(store.get(key).data, name=key)
    if not all(np.array_equal(decoded[n], a) for n, a in frames.items()):
        raise IslandSyncError(f"smoke: checkpoint {key} did not round-trip")
    print(f"read back  elite {elite.shape} by ranged read, full checkpoint verified")

    check_fencing(store)
    print("fencing    create-only, compare-and-swap, conditional delete and ranged reads hold")
    store.delete(key)
    print(f"ok in {time.perf_counter() - t0:.2f} s ({prefix} cleaned up)")
    return 0


_CREDENTIALS_HELP = ("gs://: a service-account JSON key file; s3://: a JSON or INI file with "
                     "aws_access_key_id, aws_secret_access_key (endpoint_url, region)")
_DURATIONS_HELP = ("durations (--duration, --lease, ...): seconds, or a number with us, ms, "
                   "s, m, h or d, e.g. 90, 90s, 10m, 2h")


#: ``type=`` of every duration flag: islandsync.durations, refused the argparse way.
parse_duration = durations.duration_type()


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


def _init(args: argparse.Namespace) -> int:
    from islandsync.bucket.run import init_run
    from islandsync.config import load_toml, spec_from_flags
    from islandsync.store import open_store
    from islandsync.store.probe import check_fencing

    fitness = _fitness(args)
    problem = args.problem or ("custom" if fitness is not None else None)
    if args.config:
        spec = load_toml(args.config, fitness=fitness)
    else:
        if not problem:
            raise ConfigError("islandsync init: give --config run.toml or at least --problem")
        flags = {k: getattr(args, k) for k in (
            "dim", "length", "vocab", "lower", "upper", "islands", "pop", "algorithm",
            "max_evals", "target", "migration_interval", "migrants", "topology",
            "elite_size", "checkpoint_interval_s", "heartbeat_interval_s", "seed")
            if getattr(args, k) is not None}
        if args.duration is not None:
            flags["duration_s"] = args.duration
        if args.maximize:
            flags["direction"] = "maximize"
        spec = spec_from_flags(problem=problem, fitness=fitness, **flags)
    store = open_store(args.run)
    check_fencing(store)  # never create a run on a bucket that cannot fence
    outcome = init_run(store, spec)
    if outcome == "created":
        print(f"created {store.url}/run.json")
    else:
        print(f"{store.url}/run.json already holds this spec; nothing to do")
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
        from islandsync.metrics import WorkerMetrics, serve

        metrics = WorkerMetrics()
        server, _ = serve(metrics.registry, args.metrics_port, args.metrics_host)
        observe = metrics.observe
        print(f"islandsync worker: metrics on http://{args.metrics_host}:"
              f"{server.server_port}/metrics", file=sys.stderr)
    worker = make_worker(args.run, credentials=args.credentials, platform=args.platform,
                         session_limit=args.session_limit, max_islands=args.max_islands,
                         solo=args.solo, coordinator=not args.no_coordinator,
                         fitness=fitness, device=args.device, duration=args.duration,
                         worker_id=args.worker_id, progress=not args.quiet,
                         on_heartbeat=observe)
    if not args.solo:
        print(f"islandsync worker ({worker.platform}): islands come from the run's leader"
              + ("" if args.no_coordinator else " (this worker stands as a candidate too)"),
              file=sys.stderr)
    worker.run()
    return 0


def _coordinate(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from islandsync.api import open_run
    from islandsync.bucket.run import read_spec
    from islandsync.leader.coordinator import Coordinator
    from islandsync.metrics import CoordinatorMetrics, serve
    from islandsync.store.counting import CountingStore
    from islandsync.worker.link import default_worker_id

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    store, profile = open_run(args.run, credentials=args.credentials, platform=args.platform)
    store = CountingStore(store)
    candidate = args.candidate_id or "coord-" + default_worker_id(profile.name)
    metrics = None
    if args.metrics_port >= 0:
        metrics = CoordinatorMetrics()
        try:
            server, _ = serve(metrics.registry, args.metrics_port, args.metrics_host)
        except ConfigError as err:  # leading matters more than being scraped
            print(f"islandsync coordinate: no metrics: {err}", file=sys.stderr)
            metrics = None
        else:
            print(f"islandsync coordinate: metrics on http://{args.metrics_host}:"
                  f"{server.server_port}/metrics", file=sys.stderr, flush=True)
    history = None
    if args.history_every > 0:
        from islandsync.leader.history import HistoryTap, RunHistory

        # The run's history (islandsync report), fed from the cycle's own observations.
        history = RunHistory(store, direction=read_spec(store).problem.direction,
                             every_s=args.history_every, flush_s=args.history_flush)
        metrics = HistoryTap(history, metrics, leader=candidate)
    coordinator = Coordinator(store, candidate=candidate, lease_s=args.lease,
                              interval=args.interval, metrics=metrics, drain_s=args.drain)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"islandsync coordinate: candidate {candidate} on {store.url} "
          f"(lease {args.lease:g}s, cycle {args.interval:g}s)", file=sys.stderr, flush=True)
    try:
        coordinator.run(stop, duration=args.duration)
    finally:
        if history is not None:
            history.close()  # what this leader sampled since its last segment
    return 0


def _best(args: argparse.Namespace) -> int:
    from islandsync.status import best_genomes
    from islandsync.store import open_store

    best = best_genomes(open_store(args.run), top=args.top)
    if args.npy:
        import numpy as np

        np.save(args.npy, best["genomes"])
        print(f"wrote {len(best['genomes'])} genomes to {args.npy}")
    elif args.json:
        print(json.dumps({k: v for k, v in best.items() if k != "genomes"}
                         | {"genomes": [g.tolist() for g in best["genomes"]]}, indent=2))
    else:
        print(f"elite epoch {best['epoch']} (term {best['term']}), best {len(best['fitness'])}:")
        for rank, (fit, island, gid) in enumerate(
                zip(best["fitness"], best["island"], best["id"]), 1):
            print(f"{rank:3d}  fitness {fit:.10g}  island {island}  id {gid:016x}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from islandsync.demo import run_demo

    return run_demo(workers=args.workers, duration=args.duration, directory=args.dir,
                    kill_one=args.kill_one, url=args.url, credentials=args.credentials)


def _report(args: argparse.Namespace) -> int:
    from islandsync.api import open_run
    from islandsync.report import build_report

    store, _ = open_run(args.run, credentials=args.credentials)
    path = build_report(store, html_path=args.html, png_dir=args.png)
    print(f"wrote {path}" + (f" and the figures' PNGs in {args.png}" if args.png else ""))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from islandsync.api import open_run

    store, _ = open_run(args.run, credentials=args.credentials)
    _print_install_line(store, args.wheel, args.expires)
    return 0


def _status(args: argparse.Namespace) -> int:
    from islandsync.status import collect_status, format_status
    from islandsync.store import open_store

    status = collect_status(open_store(args.run))
    print(json.dumps(status, indent=2, default=str) if args.json else format_status(status))
    return 0


def _fitness_flags(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--fitness", metavar="FILE.py:FN",
                        help=f"the {what}: path/to/file.py:function or module:function; it "
                             f"takes the whole batch, x: Tensor[batch, dim] -> Tensor[batch]")
    parser.add_argument("--per-solution", dest="per_solution", action="store_true",
                        help="the --fitness function takes one solution, x: Tensor[dim] -> "
                             "float (vectorised with torch.func.vmap where it can be)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="islandsync",
        description="One island-model evolutionary search across notebooks and a laptop.",
    )
    parser.add_argument("--version", action="version", version=f"islandsync {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    smoke = sub.add_parser("smoke", help="write, read back and CAS a checkpoint in RUN")
    smoke.add_argument("run", nargs="?", default="./islandsync-smoke",
                       help="run URL: a directory, file:///path or gs://bucket/prefix")
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

    init = sub.add_parser("init", help="create a run: write RUN/run.json (create-only)",
                          epilog=_DURATIONS_HELP)
    init.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    init.add_argument("--config", help="a TOML run spec (instead of the flags below)")
    init.add_argument("--problem", help="built-in problem name, e.g. rastrigin")
    _fitness_flags(init, "custom problem's fitness function, fingerprinted into run.json "
                   "(implies --problem custom)")
    init.add_argument("--dim", type=int, help="real genome length (default: the problem's)")
    init.add_argument("--length", type=int, help="token genome length")
    init.add_argument("--vocab", type=int, help="token vocabulary size")
    init.add_argument("--lower", type=float, help="lower bound of each real gene")
    init.add_argument("--upper", type=float, help="upper bound of each real gene")
    init.add_argument("--maximize", action="store_true",
                      help="maximise the fitness (default: minimise)")
    init.add_argument("--islands", type=int, help="number of islands (populations)")
    init.add_argument("--pop", type=int, help="genomes per island")
    init.add_argument("--algorithm", choices=list(ALGORITHM_CONFIGS),
                      help="the island algorithm (README.md, Algorithms)")
    init.add_argument("--max-evals", dest="max_evals", type=int,
                      help="stop the run after this many evaluations in all")
    init.add_argument("--target", type=float,
                      help="stop the run once the best fitness reaches this")
    init.add_argument("--duration", type=parse_duration, help="wall-clock limit, e.g. 2h")
    init.add_argument("--migration-interval", dest="migration_interval", type=int,
                      help="generations between migrations")
    init.add_argument("--migrants", type=int, help="genomes each island takes in per migration")
    init.add_argument("--topology", choices=["pool", "ring"],
                      help="migrants from the global elite pool, or from the next island")
    init.add_argument("--elite-size", dest="elite_size", type=int,
                      help="genomes kept in the merged global elite")
    init.add_argument("--checkpoint-interval", dest="checkpoint_interval_s", type=parse_duration,
                      help="how often a worker checkpoints its islands, e.g. 60s")
    init.add_argument("--heartbeat-interval", dest="heartbeat_interval_s", type=parse_duration,
                      help="how often a worker writes its heartbeat, e.g. 30s")
    init.add_argument("--seed", type=int, help="the run's random seed")
    init.add_argument("--no-publish", dest="no_publish", action="store_true",
                      help="do not publish this islandsync's wheel (see `publish`)")
    init.add_argument("--expires", type=parse_duration, default=DEFAULT_EXPIRES_S,
                      help="how long the printed install line works (default: 7d, the most)")
    init.set_defaults(func=_init)

    worker = sub.add_parser("worker", help="host islands of RUN on this machine's device",
                          epilog=_DURATIONS_HELP)
    worker.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    worker.add_argument("--device", default="auto", help="auto, cpu or cuda[:n]")
    worker.add_argument("--max-islands", dest="max_islands", type=int,
                        help="host at most this many islands (default: the platform "
                             "profile's default_max_islands)")
    worker.add_argument("--duration", type=parse_duration, help="stop after, e.g. 10m")
    worker.add_argument("--solo", action="store_true",
                        help="claim every island without a live owner: no leader, no candidate")
    worker.add_argument("--no-coordinator", dest="no_coordinator", action="store_true",
                        help="do not stand as a coordinator candidate")
    _fitness_flags(worker, "the run's custom fitness function (its fingerprint must match "
                   "run.json's)")
    worker.add_argument("--worker-id", dest="worker_id",
                        help="this worker's id in the run (letters, digits, '_', '.', '-'); a "
                             "stable one lets a restarted worker reclaim its islands at once "
                             "(default: platform-host-random)")
    worker.add_argument("--platform", help="kaggle, colab, paperspace or local (default: detect)")
    worker.add_argument("--session-limit", dest="session_limit", type=parse_duration,
                        help="this session's limit, e.g. 11h (default: the platform's)")
    worker.add_argument("--credentials", help=_CREDENTIALS_HELP)
    worker.add_argument("--metrics-port", dest="metrics_port", type=int,
                        help="serve this worker's Prometheus /metrics (0: any free port)")
    worker.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1",
                        help="address /metrics listens on (default: %(default)s)")
    worker.add_argument("--quiet", action="store_true", help="no progress lines")
    worker.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    worker.set_defaults(func=_worker)

    coord = sub.add_parser("coordinate",
                           help="stand as the run's coordinator (leader election)",
                           epilog=_DURATIONS_HELP)
    coord.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    coord.add_argument("--lease", type=parse_duration, default=15.0, help="lease, e.g. 15s")
    coord.add_argument("--interval", type=parse_duration, default=5.0, help="cycle, e.g. 5s")
    coord.add_argument("--duration", type=parse_duration, help="stop after, e.g. 1h")
    coord.add_argument("--candidate-id", dest="candidate_id",
                       help="this candidate's id in the lease "
                            "(default: coord-platform-host-random)")
    coord.add_argument("--drain", type=parse_duration, default=120.0,
                       help="move islands off a worker this long before its session deadline")
    coord.add_argument("--metrics-port", dest="metrics_port", type=int, default=9464,
                       help="serve Prometheus /metrics here (0: any free port, -1: off)")
    coord.add_argument("--metrics-host", dest="metrics_host", default="127.0.0.1",
                       help="address /metrics listens on (default: %(default)s)")
    coord.add_argument("--credentials", help=_CREDENTIALS_HELP)
    coord.add_argument("--platform", help="kaggle, colab, paperspace or local (default: detect)")
    coord.add_argument("--history-every", dest="history_every", type=parse_duration,
                       default=30.0, help="while leader, add an entry to the run's history "
                       "(history/, read by `islandsync report`) this often; 0: no history "
                       "(default: 30s)")
    coord.add_argument("--history-flush", dest="history_flush", type=parse_duration,
                       default=300.0, help="write the history's pending entries as a segment "
                       "at least this often: what a killed leader loses (default: 5m)")
    coord.set_defaults(func=_coordinate)

    best = sub.add_parser("best", help="the best genomes of RUN's newest elite")
    best.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    best.add_argument("--top", type=int, default=10,
                      help="how many genomes (default: %(default)s)")
    best_out = best.add_mutually_exclusive_group()
    best_out.add_argument("--json", action="store_true",
                          help="fitness, island, id and genome of each, as JSON")
    best_out.add_argument("--npy", metavar="FILE", help="write the genomes as a .npy array")
    best.set_defaults(func=_best)

    demo = sub.add_parser("demo", help="a coordinator and workers on a local directory "
                          "(or --url)",
                          epilog=_DURATIONS_HELP)
    demo.add_argument("--workers", type=int, default=3,
                      help="worker processes (default: %(default)s)")
    demo.add_argument("--duration", type=parse_duration, default=60.0,
                      help="how long the demo runs (default: 60s)")
    demo.add_argument("--dir", help="run directory (default: a new temporary one)")
    demo.add_argument("--url", help="run the demo on this store instead of DIR/run: "
                      "gs://bucket/prefix or s3://bucket/prefix (a fresh prefix; logs and "
                      "the report stay in DIR)")
    demo.add_argument("--credentials", help=_CREDENTIALS_HELP)
    demo.add_argument("--kill-one", dest="kill_one", action="store_true",
                      help="kill -9 one worker mid-run to show its islands moving")
    demo.set_defaults(func=_demo)

    status = sub.add_parser("status", help="islands, workers, leader and elite of RUN")
    status.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    status.add_argument("--json", action="store_true", help="machine-readable (stable keys)")
    status.set_defaults(func=_status)

    report = sub.add_parser("report", help="the run's history as one self-contained HTML page "
                            "(needs the plot extra: pip install 'islandsync[plot]')")
    report.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    report.add_argument("--html", metavar="FILE",
                        help="where to write the page (default: islandsync-report.html)")
    report.add_argument("--png", metavar="DIR", help="also write each figure as a PNG in DIR")
    report.add_argument("--credentials", help=_CREDENTIALS_HELP)
    report.set_defaults(func=_report)

    publish = sub.add_parser("publish", help="put this islandsync's wheel under RUN/dist/ and "
                             "print the one install line (%%pip install \"URL#sha256=...\") "
                             "for the notebooks", epilog=_DURATIONS_HELP)
    publish.add_argument("run", help="run URL: a directory, file:///path or gs://bucket/prefix")
    publish.add_argument("--wheel", metavar="FILE",
                         help="publish this wheel instead of building one of the running "
                              "islandsync")
    publish.add_argument("--expires", type=parse_duration, default=DEFAULT_EXPIRES_S,
                         help="how long the signed URL in the line works (default: 7d, the "
                              "most GCS and S3 allow)")
    publish.add_argument("--credentials", help=_CREDENTIALS_HELP + " (gs://: it must be a "
                         "service-account key, to sign the URL)")
    publish.set_defaults(func=_publish)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except IslandSyncError as err:
        print(f"islandsync: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
