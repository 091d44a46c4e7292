"""The machine-info block every benchmark prints and stores beside its figures: one home, so
that figures from two runs say alike on what they were measured."""

from __future__ import annotations

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


def machine_info(*packages: str, **extra: Any) -> dict[str, Any]:
    """Platform, CPU model, architecture, CPU count, Python, the 1-minute load average when
    called, the version of each of ``packages`` (distribution names, None when missing), and
    ``extra`` (what one benchmark adds: torch threads, the device)."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    info: dict[str, Any] = {
        "platform": platform.platform(), "processor": cpu_model(),
        "machine": platform.machine(), "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "load_avg": load,
    }
    info.update({name: version(name) for name in packages})
    info.update(extra)
    return info


__all__ = ["cpu_model", "machine_info", "version"]
