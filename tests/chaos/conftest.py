"""What the chaos scenarios share beyond :mod:`islandsync.testing`: the store kinds they run
on, a fresh run URL of a kind, and the folder of their custom fitness module
(``chaos_fitness``), which every process of their :class:`~islandsync.testing.cluster.Cluster`
gets on its PYTHONPATH (``pythonpath=CHAOS_PATH``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandsync.testing.cluster import cluster_env

from ..conftest import STORE_KINDS, store_kind_params, store_kind_url

CHAOS_DIR = Path(__file__).resolve().parent
#: A Cluster's ``pythonpath``: ``chaos_fitness`` importable in every process.
CHAOS_PATH = (CHAOS_DIR,)

#: Store kinds for scenarios that run on each kind but moto's S3 server (each scenario on S3
#: costs ~20 s of CI's ~15 minutes)...
KINDS = store_kind_params(kinds=[k for k in STORE_KINDS if k != "s3"])
#: ... and on every kind: the kill scenarios, whose failovers and takeovers are what fencing
#: on each store must carry.
KINDS_S3 = store_kind_params()


def run_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh run URL of the given kind (tests/conftest.py ``store_kind_url``)."""
    return store_kind_url(kind, tmp_path, request)


def chaos_env(**extra: str) -> dict[str, str]:
    """The environment of a chaos process started outside a Cluster."""
    return cluster_env(CHAOS_DIR, **extra)
