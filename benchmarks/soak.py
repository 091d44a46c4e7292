"""The soak for longer: three leader candidates and N workers (threads of one process) share one
LocalStore through FaultyStores (errors, lost replies, latency, outages, a byzantine writer),
then every invariant is judged. The same code as tests/chaos/test_soak.py
(islandsync/testing/soak.py), run for minutes instead of seconds.

    python benchmarks/soak.py --minutes N [--seed S] [--workers 3] [--islands 6] [--json PATH]
                              [--all-garbage]

Prints progress every ~10 s and, at the end, a table: faults injected by kind, what the
invariants were checked on (HEAD observations, elite epochs, checkpoints verified), and every
violation with the seed that replays it. Exits 1 when an invariant broke.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from islandsync.testing.machine import machine_info
from islandsync.testing.soak import GARBAGE_ENV, SEED_ENV, quiet_logs, run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=None,
                        help=f"replay one seed (default: a fresh one, printed; {SEED_ENV} works too)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=3, help="leader candidates")
    parser.add_argument("--islands", type=int, default=6)
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--verbose", action="store_true", help="keep the parties' warnings")
    parser.add_argument("--all-garbage", dest="all_garbage", action="store_true",
                        help="also padded and decompression-bomb checkpoints and elites, and a "
                             f"zombie with a live worker's id ({GARBAGE_ENV}=all works too)")
    args = parser.parse_args(argv)
    import os

    seed = args.seed if args.seed is not None else int(os.environ.get(SEED_ENV) or
                                                        time.time_ns() % 1_000_000)
    if not args.verbose:
        quiet_logs()
    all_garbage = args.all_garbage or os.environ.get(GARBAGE_ENV) == "all"
    print(f"soak: seed {seed}, {args.minutes:g} min, {args.candidates} candidates, "
          f"{args.workers} workers, {args.islands} islands"
          f"{', all garbage' if all_garbage else ''}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="islandsync-soak-") as root:
        result = run_soak(Path(root), seed=seed, seconds=args.minutes * 60,
                          workers=args.workers, candidates=args.candidates,
                          islands=args.islands, progress=lambda line: print(line, flush=True),
                          all_garbage=all_garbage)
    print(result.report())
    print(f"wall {time.monotonic() - started:.0f} s: "
          f"{'every invariant held' if result.ok else 'INVARIANTS BROKEN'}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "machine": machine_info("islandsync", "torch"),
            "seed": seed, "seconds": result.seconds, "ok": result.ok,
            "all_garbage": all_garbage,
            "faults": dict(sorted(result.faults.items())),
            "checked": {"head_observations": result.head_observations,
                        "elite_epochs": result.elite_epochs,
                        "checkpoints_verified": result.checkpoints_verified,
                        "history_entries_read_back": result.history_entries,
                        "lease_terms": len(result.terms),
                        "highest_lease_term": max(result.terms, default=0)},
            "violations": result.violations, "notes": result.notes,
        }, indent=2) + "\n")
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
