"""``islandsync report``: a short real run (a coordinator and two workers as processes on a
LocalStore, one worker killed mid-run) writes its history; the report of it is opened in
headless Chromium over the DevTools protocol (a pipe, no websocket package needed): the page
loads with no console message, exception or failed load, each figure is a decoded image, and a
screenshot is kept as a test artifact. Also the summary's numbers, escaping, the missing
extra, and the sparkline."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from islandsync.bucket.history import HistoryEntry, HistorySegment, WorkerSample, read_history
from islandsync.bucket.layout import history_key
from islandsync.bucket.records import write_record
from islandsync.bucket.run import init_run
from islandsync.cli import main
from islandsync.views.report import build_report, sparkline, summarize
from islandsync.store import LocalStore, open_store
from islandsync.testing.cluster import cluster_spec, start_coordinator, start_worker
from islandsync.testing.processes import stop_all, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("ISLANDSYNC_ARTIFACTS", "/tmp/islandsync-artifacts"))


def _events(store) -> list[str]:
    return [ev.kind for e in read_history(store).entries for ev in e.events]


def _owners(store) -> set[str]:
    entries = read_history(store).entries
    return {i[0] for i in entries[-1].islands if i[0]} if entries else set()


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of ~15 s once both workers host islands: a coordinator writing history
    every 0.5 s, two workers, one killed -9 midway so that its islands recover on the
    other."""
    root = tmp_path_factory.mktemp("report-run")
    url = str(root / "run")
    store = open_store(url)
    init_run(store, cluster_spec(problem="schwefel", dim=20, islands=4, pop=32,
                                 algorithm="de", checkpoint_interval_s=0.5))
    coord = start_coordinator(url, "lead", "--history-every", "0.5s", "--history-flush", "2s",
                              log=root / "coordinator.log")
    workers = {w: start_worker(url, w) for w in ("w0", "w1")}
    try:
        wait_for(lambda: {"w0", "w1"} <= _owners(store), 120, "both workers hosting islands")
        started = time.monotonic()
        time.sleep(4)
        workers["w1"].send_signal(signal.SIGKILL)
        workers["w1"].wait()
        wait_for(lambda: "recovery" in _events(store), 120, "a recovery in the history")
        time.sleep(max(0.0, started + 12 - time.monotonic()))
    finally:
        stop_all([coord, *workers.values()])
    return root / "run"


def test_history_of_a_real_run(short_run: Path) -> None:
    got = read_history(LocalStore(short_run))
    assert len(got.entries) >= 10 and got.skipped == []
    kinds = _events(LocalStore(short_run))
    assert kinds[0] == "term" and {"dead", "recovery"} <= set(kinds), kinds
    last = got.entries[-1]
    assert last.evals > 0 and last.best is not None and len(last.islands) == 4
    assert {"w0", "w1"} <= set(last.workers)
    assert all(w.platform == "local" for w in last.workers.values())


class DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out,
    NUL-terminated JSON): enough to load a page, hear what it logs, evaluate and screenshot."""

    def __init__(self, chromium: str) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # in the child: our pipe ends become its fds 3 and 4
            import fcntl

            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)  # dup2 leaves them inheritable, so they survive exec
            os.dup2(high[1], 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", "--window-size=1200,2000", "about:blank"],
            preexec_fn=fds, close_fds=False,  # our own fds are not inheritable anyway
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 60) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        import select

        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.get("method") == method:
                    return ev
            self.events.append(self._read(deadline))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - it is going away either way
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


PROBLEMS = {"Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded",
            "Network.loadingFailed"}


@pytest.mark.skipif(CHROMIUM is None,
                    reason="needs Debian's chromium (README's test command installs it)")
def test_report_opens_cleanly_in_chromium(short_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", str(short_run), "--html", str(page), "--png",
                 str(tmp_path / "png")]) == 0
    assert sorted(p.name for p in (tmp_path / "png").glob("*.png")) == [
        "best.png", "rate.png", "timeline.png"]
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch

    chrome = DevTools(CHROMIUM)
    try:
        target = chrome.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = chrome.send("Target.attachToTarget",
                              {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            chrome.send(f"{domain}.enable", session=session)
        chrome.send("Emulation.setDeviceMetricsOverride", {
            "width": 1200, "height": 2000, "deviceScaleFactor": 1, "mobile": False},
            session=session)
        chrome.events.clear()
        chrome.send("Page.navigate", {"url": page.as_uri()}, session=session)
        chrome.wait_event("Page.loadEventFired")
        figures = chrome.send("Runtime.evaluate", {"returnByValue": True, "expression": """
            [...document.querySelectorAll('figure')].map(f => {
              const img = f.querySelector('img');
              return {id: f.id, complete: img.complete, w: img.naturalWidth,
                      h: img.naturalHeight, src: img.src.slice(0, 22)};
            })"""}, session=session)["result"]["value"]
        height = chrome.send("Runtime.evaluate", {
            "returnByValue": True, "expression": "document.documentElement.scrollHeight"},
            session=session)["result"]["value"]
        shot = chrome.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1200, "height": height, "scale": 1}},
            session=session)
        problems = [e for e in chrome.events if e.get("method") in PROBLEMS]
    finally:
        chrome.close()

    assert problems == [], problems
    assert [f["id"] for f in figures] == ["fig-best", "fig-rate", "fig-timeline"]
    for f in figures:
        assert f["complete"] and f["w"] > 300 and f["h"] > 100, f
        assert f["src"] == "data:image/png;base64,", f
    # The artifact: kept beside the test's files and, for a CI run, in ISLANDSYNC_ARTIFACTS.
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "report.png").write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy2(tmp_path / "report.png", ARTIFACTS / "report.png")
    shutil.copy2(page, ARTIFACTS / "report.html")
    print(f"report screenshot: {tmp_path / 'report.png'} (copy in {ARTIFACTS})")


def test_report_without_matplotlib_names_the_extra(short_run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    assert main(["report", str(short_run), "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'islandsync[plot]'" in err and "matplotlib" in err
    assert not (tmp_path / "r.html").exists()


def _entry(seq: int, t: float, **workers: tuple[bool, int, int, int]) -> HistoryEntry:
    return HistoryEntry(seq=seq, t=t, term=1, leader="lead", best=10.0 - seq, evals=100 * seq,
                        leader_ops_a=5 * seq, leader_ops_b=0, workers={
                            w: WorkerSample(alive=a, platform="kaggle" if w == "k" else "colab",
                                            rate=10.0, evals=e, ops_a=oa, ops_b=oa * 10,
                                            version="0.1.0", protocol=1)
                            for w, (a, e, oa, _) in workers.items()})


def test_summary_counts_worker_hours_evaluations_and_cost() -> None:
    entries = [
        _entry(0, 0.0, k=(True, 0, 0, 0), c=(True, 0, 0, 0)),
        _entry(1, 1800.0, k=(True, 500, 100, 0), c=(True, 300, 50, 0)),
        # c's process restarted: its counters start again from 0.
        _entry(2, 3600.0, k=(True, 900, 200, 0), c=(False, 40, 10, 0)),
    ]
    s = summarize(entries)
    assert s.platforms["kaggle"] == {"workers": 1, "hours": 1.0, "evals": 900}
    assert s.platforms["colab"] == {"workers": 1, "hours": 0.5, "evals": 340}
    # class A: k 200, c 50 + 10 after its restart, the leader 10; class B ten times the workers'.
    assert s.ops == {"A": 200 + 60 + 10, "B": 2000 + 600}
    assert s.cost == pytest.approx(270 * 0.005 / 1000 + 2600 * 0.0004 / 1000)
    assert s.best == 8.0 and s.evaluations == 200 and s.span_s == 3600.0


def test_bucket_strings_are_escaped(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec())
    evil = HistoryEntry(seq=0, t=1.0, best=1.0, workers={"w": WorkerSample(
        platform="<script>alert(1)</script>", version="<img src=x onerror=alert(2)>")})
    write_record(store, history_key(0, 0), HistorySegment(first=0, last=0, entries=[evil]),
                 if_generation=0)
    text = build_report(store, html_path=tmp_path / "r.html").read_text()
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_run_without_history_still_reports(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    store = LocalStore(tmp_path / "run")
    init_run(store, cluster_spec())
    text = build_report(store, html_path=tmp_path / "r.html").read_text()
    assert "No history yet" in text and "<figure" not in text
    # The genome as people write it, the same text as `islandsync status` (was a dump of the
    # model's fields, "integer ()" included).
    assert "real dim " in text and "integer ()" not in text and "kind real" not in text


def test_sparkline() -> None:
    assert sparkline([]) == ""
    assert sparkline([1.0, None, 3.0]) == "▁ █"
    # Positive values spanning decades are log-scaled: each decade one step up.
    line = sparkline([1e4, 1e3, 1e2, 1e1, 1.0])
    assert line[0] == "█" and line[-1] == "▁" and len(set(line)) == 5
