"""Which devices a worker steps its islands on (``worker/devices.py``): ``auto`` is every
visible GPU or else the CPU; a named device is that one; a device that does not exist, or a
GPU torch cannot see, is one clear error."""

from __future__ import annotations

import pytest
import torch

from islandsync.errors import IslandSyncError
from islandsync.config import spec_from_flags
from islandsync.worker.devices import device_label, resolve_device, resolve_devices


def test_a_named_device_is_that_one() -> None:
    assert resolve_devices("cpu") == [torch.device("cpu")]
    assert resolve_device("cpu") == torch.device("cpu")


def test_auto_is_every_visible_gpu_or_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_devices("auto") == [torch.device("cpu")]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert resolve_devices("auto") == [torch.device("cuda", i) for i in range(3)]
    assert resolve_device("auto") == torch.device("cuda", 0)  # what heartbeats name


def test_an_unknown_device_is_one_clear_error() -> None:
    with pytest.raises(IslandSyncError, match="unknown device 'gpu0'.*auto, cpu or cuda"):
        resolve_devices("gpu0")


def test_a_gpu_torch_cannot_see_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(IslandSyncError, match="torch sees no CUDA device"):
        resolve_devices("cuda:1")


def test_the_label_names_the_devices_and_the_dtype_they_picked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla T4")
    real = spec_from_flags(problem="rastrigin", dim=4)  # dtype "auto"
    assert device_label([torch.device("cpu")], real) == "cpu float64"
    gpus = [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert device_label(gpus, real) == "2 x Tesla T4 float32"
    fixed = real.model_copy(update={"dtype": "float64"})
    assert device_label(gpus[:1], fixed) == "Tesla T4 float64"
    assert device_label([torch.device("cpu")],
                        spec_from_flags(problem="symbolic_regression")) == "cpu"
