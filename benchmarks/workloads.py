"""Fitness functions for ``benchmarks/distributed.py``, passed to workers as
``--fitness workloads:<name>`` (the benchmark puts this folder on the workers' PYTHONPATH, and
``run.json`` records each function's name and source fingerprint as for any custom problem).

``device_bound`` is a stand-in for a notebook GPU on a small shared CPU machine: a *saturated*
device, whose time per batch is proportional to the batch size. It sleeps a fixed device time
per row of the batch (``ISLANDSYNC_BENCH_DEVICE_US`` microseconds, read once at import) and
returns the sphere value, which costs next to nothing. While it sleeps the CPU is idle (the
GIL is released too, so a worker's bucket and upload threads run meanwhile), so a worker's
evaluations/s do not depend on how many islands it hosts or on how many other workers share
the machine, as long as the rest of a generation (the algorithm's own tensor work, which runs
on the CPU here and would run on the GPU in a notebook) stays small next to the sleep.

The ``compute`` workload needs no function of its own: it is the built-in ``rastrigin``
problem at a large dimension, i.e. real torch work on the CPU.
"""

from __future__ import annotations

import os
import time

import torch

DEVICE_US_ENV = "ISLANDSYNC_BENCH_DEVICE_US"
DEFAULT_DEVICE_US = 100.0

DEVICE_US_PER_ROW = float(os.environ.get(DEVICE_US_ENV, "") or DEFAULT_DEVICE_US)
if not DEVICE_US_PER_ROW >= 0:  # also refuses NaN
    raise ValueError(f"{DEVICE_US_ENV} must be a number of microseconds >= 0")


def device_bound(x: torch.Tensor) -> torch.Tensor:
    """Sphere, after sleeping DEVICE_US_PER_ROW microseconds per genome of the batch."""
    time.sleep(x.shape[0] * DEVICE_US_PER_ROW * 1e-6)
    return (x * x).sum(dim=1)
