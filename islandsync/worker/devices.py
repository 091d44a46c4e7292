"""Which devices a worker steps its islands on."""

from __future__ import annotations

import torch

from islandsync.config import RunSpec, genome_dtype
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


def device_label(devices: list[torch.device], spec: RunSpec) -> str:
    """What ``status`` shows of a worker's devices: "cpu float64", "2 x Tesla T4 float32";
    the genomes' dtype too for a real genome, since "auto" leaves it to each device."""
    name = _device_name(devices[0])
    label = name if len(devices) == 1 else f"{len(devices)} x {name}"
    if spec.problem.genome.kind == "real":
        label += f" {genome_dtype(spec.dtype, devices[0].type)}"
    return label


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


__all__ = ["device_label", "resolve_device", "resolve_devices"]
