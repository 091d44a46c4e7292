"""Custom fitness functions for the chaos tests, imported by workers as ``--fitness
chaos_fitness:<name>`` (tests/chaos is on their PYTHONPATH)."""

from __future__ import annotations

import time

import torch


def nan_inf_part(x: torch.Tensor) -> torch.Tensor:
    """Sphere, but about a third of every batch is NaN, +inf or -inf (-inf would be the best
    score of all if it were taken at face value)."""
    f = (x**2).sum(dim=1)
    f[0::7] = float("nan")
    f[1::7] = float("inf")
    f[2::7] = float("-inf")
    return f


_first_call: list[float] = []


def raise_after_a_while(x: torch.Tensor) -> torch.Tensor:
    """Sphere for about 2.5 s after the first batch (long enough for a few checkpoints), then
    a user's bug."""
    if not _first_call:
        _first_call.append(time.monotonic())
    if time.monotonic() - _first_call[0] > 2.5:
        raise ZeroDivisionError("chaos: the user's fitness function divided by zero")
    return (x**2).sum(dim=1)
