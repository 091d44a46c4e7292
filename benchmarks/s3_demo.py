"""``islandsync demo`` on ``s3://``, against a local S3 server: what a user with an S3, R2 or
MinIO bucket runs, end to end through the CLI, with no account and no network.

    python benchmarks/s3_demo.py [--workers 2] [--duration 30s] [--kill-one] [--keep]

Starts a moto S3 server (``moto[server]``, in the test extra) on 127.0.0.1 with a bucket, and
points ``AWS_ENDPOINT_URL`` and test keys at it, as an R2 or MinIO user sets them; then runs,
as separate processes, ``islandsync smoke s3://BUCKET/PREFIX`` (store, codec and the fencing
probe) and ``islandsync demo --url s3://BUCKET/PREFIX`` (a coordinator and workers, the
fencing probe first), printing their output as it comes. The server and every process end
when the script does.
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from islandsync.durations import duration_type
from islandsync.testing.processes import (
    MOTO_ENV,
    child_env,
    islandsync_argv,
    start_moto_s3,
)

#: The repository: the islandsync processes started run from it.
REPO = Path(__file__).resolve().parents[1]

BUCKET = "islandsync-demo"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--duration", type=duration_type(), default=30.0)
    p.add_argument("--kill-one", action="store_true",
                   help="kill -9 one worker mid-run (as demo --kill-one)")
    p.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="islandsync-s3-demo-"))
    server, endpoint = start_moto_s3(BUCKET, log=work / "moto-server.log")
    try:
        url = f"s3://{BUCKET}/demo-{secrets.token_hex(4)}"
        # What an R2 or MinIO user exports; the processes below find them as the user's would.
        env = child_env(REPO, threads=None, **MOTO_ENV, AWS_ENDPOINT_URL=endpoint)
        print(f"moto S3 server on {endpoint}, bucket {BUCKET}; AWS_ENDPOINT_URL={endpoint}",
              flush=True)
        steps = [["smoke", url],
                 ["demo", "--url", url, "--workers", str(args.workers),
                  "--duration", f"{args.duration:g}s", "--dir", str(work / "demo"),
                  *(["--kill-one"] if args.kill_one else [])]]
        for step in steps:
            print(f"\n$ islandsync {' '.join(step)}", flush=True)
            code = subprocess.run(islandsync_argv(*step), env=env, cwd=REPO).returncode
            if code != 0:
                print(f"islandsync {step[0]} exited {code}; logs in {work}", file=sys.stderr)
                return code
        return 0
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            print(f"removed {work} (logs, report): --keep keeps it")
        else:
            print(f"logs kept in {work}")


if __name__ == "__main__":
    raise SystemExit(main())
