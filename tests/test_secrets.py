"""A planted secret never reaches logs, errors, heartbeats, bucket records or metrics.

End to end on fake-gcs-server: a worker and a coordinator run with a real service-account key
(generated here) whose fields and access token carry a marker. The key's token endpoint is a
server on 127.0.0.1, so the real google-auth refresh runs and the token travels with every
request; then every log line, every blob of the run, `status --json` and both /metrics
endpoints are searched for the marker and for key material.
"""

from __future__ import annotations

import json
import os
import socket
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

from .cluster import REPO, cluster_spec

MARKER = "SECRET-MARKER-5e2a"
pytestmark = pytest.mark.gcs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def test_marked_secret_appears_nowhere(gcs_url: str, token_server, tmp_path: Path) -> None:
    token_uri, hits = token_server
    info, key_line = _service_account(token_uri)
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(info))
    init_run(open_store(gcs_url), cluster_spec(islands=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ports = [_free_port(), _free_port()]
    base = [sys.executable, "-m", "islandsync"]
    logs = [tmp_path / "coordinator.log", tmp_path / "worker.log"]
    with logs[0].open("wb") as c_out, logs[1].open("wb") as w_out:
        coordinator = subprocess.Popen(
            base + ["coordinate", gcs_url, "--credentials", str(key_file), "--lease", "3s",
                    "--interval", "0.5s", "--duration", "12s", "--metrics-port", str(ports[0])],
            env=env, stdout=c_out, stderr=subprocess.STDOUT)
        worker = subprocess.Popen(
            base + ["worker", gcs_url, "--credentials", str(key_file), "--no-coordinator",
                    "--worker-id", "sw", "--device", "cpu", "--duration", "10s", "-v",
                    "--metrics-port", str(ports[1])],
            env=env, stdout=w_out, stderr=subprocess.STDOUT)
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
    assert hits, "the key's token endpoint was never used: the secret path was not exercised"
    status = subprocess.run(base + ["status", gcs_url, "--json"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    store = open_store(gcs_url)
    blobs = [store.get(i.key).data.decode("utf-8", "replace") for i in store.list("")
             if not i.key.endswith(".isz")]
    haystacks = {"coordinator log": logs[0].read_text(), "worker log": logs[1].read_text(),
                 "status": status.stdout + status.stderr, "metrics": "\n".join(scrapes),
                 "bucket records": "\n".join(blobs)}
    assert "credentials" in haystacks["worker log"].lower()  # it did log where they came from
    for name, text in haystacks.items():
        for needle in (MARKER, key_line, "PRIVATE KEY"):
            assert needle not in text, f"{needle[:12]}... leaked into the {name}"


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
