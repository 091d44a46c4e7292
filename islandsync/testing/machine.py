"""The machine-info block every benchmark prints and stores beside its figures: one home, so
that figures from two runs say alike on what they were measured."""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU's model name: ``platform.processor()`` is often empty or just "x86_64" on
    Linux, so /proc/cpuinfo's ``model name`` first where there is one."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def version(package: str) -> str | None:
    """An installed distribution's version, None when it is not installed."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages, None where the system has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs since boot (Linux /proc/stat), else None: two of
    them bracket a window to say how busy the whole machine was in it."""
    try:
        fields = [float(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def code_fingerprint() -> dict[str, Any]:
    """sha256 over the islandsync package's Python sources, and the newest file's time: the
    package may be edited while a long benchmark runs (a shared checkout), and a run must
    say so."""
    import islandsync

    root = Path(islandsync.__file__).resolve().parent
    h = hashlib.sha256()
    newest = 0.0
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        newest = max(newest, path.stat().st_mtime)
    return {"sha256": h.hexdigest()[:16],
            "newest_file": _dt.datetime.fromtimestamp(newest).astimezone().isoformat(
                timespec="seconds")}


def machine_info(*packages: str, **extra: Any) -> dict[str, Any]:
    """Platform, CPU model, architecture, CPU count, Python, the 1-minute load average when
    called, the version of each of ``packages`` (distribution names, None when missing), and
    ``extra`` (what one benchmark adds: torch threads, the device)."""
    loads = load_average()
    load = loads[0] if loads else None
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": cpu_model(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "load_avg": load,
    }
    info.update({name: version(name) for name in packages})
    info.update(extra)
    return info


__all__ = ["code_fingerprint", "cpu_model", "cpu_times", "load_average", "machine_info",
           "version"]
