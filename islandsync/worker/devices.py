"""Which devices a worker steps its islands on."""

from __future__ import annotations

import torch

from islandsync.errors import IslandSyncError


def resolve_device(device: str = "auto") -> torch.device:
    """The first of :func:`resolve_devices`: what heartbeats name as the worker's device."""
    return resolve_devices(device)[0]


def resolve_devices(device: str = "auto") -> list[torch.device]:
    """``auto``: every visible GPU (``torch.cuda.device_count()``), or the CPU where there
    is none; otherwise the one device named (``cpu``, ``cuda``, ``cuda:1``)."""
    if device == "auto":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.device("cuda", i) for i in range(count)] or [torch.device("cpu")]
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise IslandSyncError(f"unknown device {device!r} (use auto, cpu or cuda[:n])") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IslandSyncError(f"device {device!r} asked for, but torch sees no CUDA device")
    return [dev]


__all__ = ["resolve_device", "resolve_devices"]
