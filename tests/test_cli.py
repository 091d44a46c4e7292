"""The command line's own behaviour (the commands' work is tested where it lives)."""

from __future__ import annotations

from pathlib import Path

from islandsync.bucket.records import Head, read_head, write_head
from islandsync.bucket.run import init_run
from islandsync.cli import main
from islandsync.store import open_store

from .cluster import cluster_spec


def test_smoke_on_a_live_run_touches_none_of_its_records(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, cluster_spec(islands=2))
    write_head(store, Head(island=0, owner="w-live", generation=7), if_generation=0)
    before = {i.key: (i.generation, store.get(i.key).data) for i in store.list("")}

    assert main(["smoke", url]) == 0
    assert "ok in" in capsys.readouterr().out

    after = {i.key: (i.generation, store.get(i.key).data) for i in store.list("")}
    assert after == before  # nothing of the run written, and smoke cleaned up its own prefix
    head, _ = read_head(store, 0)
    assert head.owner == "w-live" and head.generation == 7


def test_every_option_of_every_subcommand_has_help() -> None:
    """`islandsync X --help` describes every option and argument (issue 14)."""
    import argparse

    from islandsync.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in sub.choices.items()
               for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []
    assert {"report", "publish"} <= set(sub.choices)


def test_init_accepts_every_registered_algorithm(tmp_path: Path) -> None:
    """`--algorithm` takes its choices from the registry: each algorithm makes a run."""
    from islandsync.bucket.run import read_spec
    from islandsync.search.algorithms import ALGORITHMS

    for name in ALGORITHMS:
        url = str(tmp_path / name)
        assert main(["init", url, "--problem", "sphere", "--dim", "4", "--islands", "2",
                     "--algorithm", name]) == 0
        assert read_spec(open_store(url)).algorithm.name == name
