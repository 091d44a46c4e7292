"""What the chaos scenarios share beyond :mod:`islandsync.testing`: the store kinds they run
on, a fresh run URL of a kind, and the folder of their custom fitness module
(``chaos_fitness``), which every process of their :class:`~islandsync.testing.cluster.Cluster`
gets on its PYTHONPATH (``pythonpath=CHAOS_PATH``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from islandsync.testing.cluster import cluster_env

CHAOS_DIR = Path(__file__).resolve().parent
#: A Cluster's ``pythonpath``: ``chaos_fitness`` importable in every process.
CHAOS_PATH = (CHAOS_DIR,)

#: Store kinds for scenarios that run on both: a local directory and fake-gcs-server.
KINDS = ["local", pytest.param("gcs", marks=pytest.mark.gcs)]
#: ... and moto's S3 server too: only the kill scenarios, whose failovers and takeovers are
#: what fencing on S3 must carry (each scenario on S3 costs ~20 s of CI's ~15 minutes).
KINDS_S3 = [*KINDS, pytest.param("s3", marks=pytest.mark.s3)]


def run_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh run URL of the given kind (``gcs`` starts the session's fake-gcs-server,
    ``s3`` the session's moto server, whose endpoint and keys child processes inherit)."""
    if kind == "local":
        return str(tmp_path / "run")
    return request.getfixturevalue("s3_url" if kind == "s3" else "gcs_url")


def chaos_env(**extra: str) -> dict[str, str]:
    """The environment of a chaos process started outside a Cluster."""
    return cluster_env(CHAOS_DIR, **extra)
