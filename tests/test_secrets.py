"""A planted secret never reaches logs, errors, heartbeats, bucket records or metrics.

End to end on fake-gcs-server: a worker and a coordinator run with a real service-account key
(generated here) whose fields and access token carry a marker. The key's token endpoint is a
server on 127.0.0.1, so the real google-auth refresh runs and the token travels with every
request; then every log line, every blob of the run, `status --json` and both /metrics
endpoints are searched for the marker and for key material.

The same on moto's S3 server: the worker's keys come from a ``--credentials`` INI file, the
coordinator's and status's from the environment, each secret access key (and session token)
carrying a marker; every request is signed with them (moto accepts any keys).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from islandsync.bucket.run import init_run
from islandsync.store import open_store
from islandsync.testing.cluster import cluster_spec
from islandsync.testing.processes import free_port

from .conftest import REPO

MARKER = "SECRET-MARKER-5e2a"


@pytest.fixture
def token_server():
    """An OAuth token endpoint on 127.0.0.1 handing out a marked access token."""
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hits.append(self.path)
            body = json.dumps({"access_token": f"ya29.{MARKER}-token", "expires_in": 3600,
                               "token_type": "Bearer"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/token", hits
    server.shutdown()
    server.server_close()


def _service_account(token_uri: str) -> tuple[dict, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    info = {"type": "service_account", "project_id": "test",
            "private_key_id": f"{MARKER}-key-id", "private_key": pem,
            "client_email": "islandsync-test@test.iam.gserviceaccount.com",
            "client_id": f"{MARKER}-client", "token_uri": token_uri}
    return info, pem.splitlines()[5]  # a line of the key's base64 body


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def _run_worker_and_coordinator(url: str, tmp_path: Path, *, worker_args: list[str],
                                worker_env: dict[str, str], coordinator_args: list[str],
                                coordinator_env: dict[str, str]) -> dict[str, str]:
    """A coordinator and a worker on ``url`` for ~10 s, /metrics of both scraped while the
    worker is seen; returns every text a secret must stay out of, by name."""
    ports = [free_port(), free_port()]
    base = [sys.executable, "-m", "islandsync"]
    logs = [tmp_path / "coordinator.log", tmp_path / "worker.log"]
    with logs[0].open("wb") as c_out, logs[1].open("wb") as w_out:
        coordinator = subprocess.Popen(
            base + ["coordinate", url, *coordinator_args, "--lease", "3s", "--interval", "0.5s",
                    "--duration", "12s", "--metrics-port", str(ports[0])],
            env=coordinator_env, stdout=c_out, stderr=subprocess.STDOUT)
        worker = subprocess.Popen(
            base + ["worker", url, *worker_args, "--no-coordinator", "--worker-id", "sw",
                    "--device", "cpu", "--duration", "10s", "-v",
                    "--metrics-port", str(ports[1])],
            env=worker_env, stdout=w_out, stderr=subprocess.STDOUT)
        scrapes = []
        deadline = time.monotonic() + 60
        while len(scrapes) < 2 and time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                text = [_scrape(p) for p in ports]
            except OSError:
                continue
            if 'worker="sw"' in text[0]:  # the coordinator re-exports the worker's heartbeat
                scrapes.append("\n".join(text))
        assert worker.wait(timeout=90) == 0, logs[1].read_text()
        assert coordinator.wait(timeout=90) == 0, logs[0].read_text()
    assert scrapes, "never saw the worker on the coordinator's /metrics"
    status = subprocess.run(base + ["status", url, "--json"], env=coordinator_env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    store = open_store(url)
    blobs = [store.get(i.key).data.decode("utf-8", "replace") for i in store.list("")
             if not i.key.endswith(".isz")]
    return {"coordinator log": logs[0].read_text(), "worker log": logs[1].read_text(),
            "status": status.stdout + status.stderr, "metrics": "\n".join(scrapes),
            "bucket records": "\n".join(blobs)}


@pytest.mark.gcs
def test_marked_secret_appears_nowhere(gcs_url: str, token_server, tmp_path: Path) -> None:
    token_uri, hits = token_server
    info, key_line = _service_account(token_uri)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    init_run(open_store(gcs_url), cluster_spec(islands=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    credentials = ["--credentials", str(key_file)]
    haystacks = _run_worker_and_coordinator(
        gcs_url, tmp_path, worker_args=credentials, worker_env=env,
        coordinator_args=credentials, coordinator_env=env)
    assert hits, "the key's token endpoint was never used: the secret path was not exercised"
    assert "credentials" in haystacks["worker log"].lower()  # it did log where they came from
    for name, text in haystacks.items():
        for needle in (MARKER, key_line, "PRIVATE KEY"):
            assert needle not in text, f"{needle[:12]}... leaked into the {name}"


@pytest.mark.gcs
def test_unusable_secret_fails_with_a_message_that_does_not_echo_it(gcs_url: str,
                                                                    tmp_path: Path) -> None:
    bad = tmp_path / "key.json"
    bad.write_text('{"type": "service_account", "private_key": "' + MARKER + '", oops')
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "islandsync", "worker", gcs_url,
                           "--credentials", str(bad), "--quiet"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert "credentials" in proc.stderr and "Traceback" not in proc.stderr
    assert MARKER not in proc.stdout + proc.stderr


# -- S3 -------------------------------------------------------------------------------------

#: Marked S3 secrets: the worker's (a --credentials file) and the coordinator's (environment).
S3_FILE_SECRET = f"{MARKER}-file/secretAccessKey+0123456789abcdefABCDEF"
S3_ENV_SECRET = f"{MARKER}-env/secretAccessKey+0123456789abcdefABCDEF"
S3_TOKEN = f"{MARKER}-session-token"


@pytest.mark.s3
def test_marked_s3_secret_appears_nowhere(s3_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "s3.ini"
    key_file.write_text("[default]\naws_access_key_id = AKIAISLANDSYNCFILE\n"
                        f"aws_secret_access_key = {S3_FILE_SECRET}\n"
                        f"aws_session_token = {S3_TOKEN}\n")
    init_run(open_store(s3_url), cluster_spec(islands=2))
    # The session's moto keys are replaced by marked ones for the coordinator and status;
    # the worker's environment holds none, so the file is its only source.
    common = {k: v for k, v in os.environ.items()
              if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")}
    common["PYTHONPATH"] = str(REPO)
    coordinator_env = {**common, "AWS_ACCESS_KEY_ID": "AKIAISLANDSYNCENV",
                       "AWS_SECRET_ACCESS_KEY": S3_ENV_SECRET}
    haystacks = _run_worker_and_coordinator(
        s3_url, tmp_path, worker_args=["--credentials", str(key_file)], worker_env=common,
        coordinator_args=[], coordinator_env=coordinator_env)
    # Each process did use its marked keys: it logged where they came from.
    assert "credentials file" in haystacks["worker log"], haystacks["worker log"][-2000:]
    assert "environment (AWS_ACCESS_KEY_ID)" in haystacks["coordinator log"]
    for name, text in haystacks.items():
        for needle in (MARKER, "secretAccessKey", "session-token"):
            assert needle not in text, f"{needle[:12]}... leaked into the {name}"


@pytest.mark.s3
@pytest.mark.parametrize("content", [
    # broken JSON: a parser's message would quote the text around the error
    '{"aws_access_key_id": "AKIA", "aws_secret_access_key": "' + S3_FILE_SECRET + '", oops',
    # a secret pasted as a field name: unknown fields are named, but not this one
    f"[default]\naws_access_key_id = AKIA\n{S3_FILE_SECRET} = x\n",
    # a broken INI line holding the secret
    f"[default]\naws_secret_access_key {S3_FILE_SECRET}\n",
])
def test_unusable_s3_credentials_fail_without_echoing_the_secret(s3_url: str, tmp_path: Path,
                                                                 content: str) -> None:
    bad = tmp_path / "s3.json"
    bad.write_text(content)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Both roles with the first file; the worker alone with the others (each start is ~3 s).
    roles = [["worker", s3_url, "--quiet"], ["coordinate", s3_url]]
    for role in roles if content.startswith("{") else roles[:1]:
        proc = subprocess.run([sys.executable, "-m", "islandsync", *role, "--credentials",
                               str(bad)], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "credentials" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert MARKER not in proc.stdout + proc.stderr, proc.stderr
