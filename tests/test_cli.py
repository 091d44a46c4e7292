"""The command line's own behaviour (the commands' work is tested where it lives)."""

from __future__ import annotations

import argparse
import importlib
import subprocess
from pathlib import Path

import pytest

from islandsync.bucket.layout import FINISHED_KEY
from islandsync.bucket.records import Finished, Head, read_head, write_head, write_record
from islandsync.bucket.run import init_run, read_spec
from islandsync.cli import build_parser, main
from islandsync.config import ALGORITHM_CONFIGS, BUILTIN_PROBLEMS
from islandsync.store import open_store
from islandsync.testing import child_env, islandsync_argv
from islandsync.testing.cluster import cluster_spec

from .conftest import REPO


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


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
    commands = _commands()
    missing = [f"{name} {a.option_strings or a.dest}" for name, p in commands.items()
               for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert missing == []
    assert {"report", "publish"} <= set(commands)


def test_init_accepts_every_registered_algorithm(tmp_path: Path) -> None:
    """`--algorithm` takes its choices from the registry: each algorithm makes a run."""
    from islandsync.bucket.run import read_spec
    from islandsync.search.algorithms import ALGORITHMS

    for name in ALGORITHMS:
        url = str(tmp_path / name)
        assert main(["init", url, "--problem", "sphere", "--dim", "4", "--islands", "2",
                     "--algorithm", name]) == 0
        assert read_spec(open_store(url)).algorithm.name == name


# -- issue 17: what a person sees is current and honest ----------------------------------


def test_help_shows_every_default() -> None:
    """Each option with a default says it in its help (durations in seconds)."""
    silent = []
    for name, parser in _commands().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                    and "default" not in formatter._get_help_string(action)):
                silent.append(f"{name} {action.option_strings[0]}")
    assert silent == []
    lease = next(a for a in _commands()["coordinate"]._actions if a.dest == "lease")
    # The lease and cycle come from the run's cadence (run.json) unless given.
    assert "default: the run's cadence" in \
        _commands()["coordinate"]._get_formatter()._get_help_string(lease)


def test_init_help_lists_the_registries_names_and_tells_the_truth(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name in [*BUILTIN_PROBLEMS, "custom", *ALGORITHM_CONFIGS]:
        assert name in text, name
    assert "(default: the problem's)" not in text  # --dim has none: rastrigin needs it
    assert "required for sphere, rastrigin" in text
    # and the flag really is required, as the help says
    assert main(["init", "unused", "--problem", "rastrigin"]) == 2
    assert "--dim is required for problem rastrigin" in capsys.readouterr().err


def test_every_command_that_opens_a_run_takes_credentials(tmp_path: Path, capsys) -> None:
    opens_a_run = {name for name, p in _commands().items()
                   if any(a.dest == "run" and not a.option_strings for a in p._actions)}
    assert {"init", "status", "best", "smoke", "report", "worker", "coordinate"} <= opens_a_run
    without = sorted(name for name in opens_a_run
                     if not any("--credentials" in a.option_strings
                                for a in _commands()[name]._actions))
    assert without == []
    # and they are used: a local directory takes none, said in one line
    url = str(tmp_path / "run")
    init_run(open_store(url), cluster_spec(islands=2))
    assert main(["status", url, "--credentials", str(tmp_path / "key.json")]) == 2
    assert "takes no credentials" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["status", "best", "report", "worker"])
def test_a_missing_run_is_one_line_exit_2_and_creates_nothing(
        tmp_path: Path, monkeypatch, capsys, command: str) -> None:
    monkeypatch.chdir(tmp_path)  # where report would write its page
    assert main([command, "runs/nosuchrun"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no run at" in err, err
    assert list(tmp_path.iterdir()) == []  # no runs/nosuchrun/.islandsync, no report page
    # A folder that exists but holds no run (the current one, say) is left as it was too.
    (tmp_path / "notes").mkdir()
    assert main([command, "notes"]) == 2
    assert list((tmp_path / "notes").iterdir()) == []


def test_flags_beside_config_are_applied(tmp_path: Path, capsys) -> None:
    config = tmp_path / "run.toml"
    config.write_text('islands = 4\n[problem]\nname = "rastrigin"\n'
                      'genome = {dim = 10, lower = -5.12, upper = 5.12}\n'
                      '[algorithm]\nname = "ga"\n')
    url = str(tmp_path / "run")
    assert main(["init", url, "--config", str(config), "--dim", "30", "--max-evals", "1000",
                 "--maximize", "--no-publish"]) == 0
    spec = read_spec(open_store(url))
    assert (spec.problem.genome.dim, spec.stop.max_evals, spec.problem.direction,
            spec.islands) == (30, 1000, "maximize", 4)
    # A flag the file's spec cannot take is refused, naming the flag's field.
    assert main(["init", str(tmp_path / "other"), "--config", str(config),
                 "--migrants", "100", "--no-publish"]) == 2
    assert "migration.migrants" in capsys.readouterr().err


def test_coordinate_exits_0_once_the_run_is_finished(tmp_path: Path, capsys) -> None:
    url = str(tmp_path / "run")
    store = open_store(url)
    init_run(store, cluster_spec(islands=2))
    write_record(store, FINISHED_KEY, Finished(reason="max_evals", evals=10), if_generation=0)
    # --duration only bounds the test on code that would keep running
    assert main(["coordinate", url, "--interval", "0.2s", "--lease", "2s",
                 "--metrics-port", "-1", "--history-every", "0", "--duration", "60s"]) == 0
    assert "the run is finished (max_evals)" in capsys.readouterr().err


def test_status_watch_refreshes_until_ctrl_c(tmp_path: Path, monkeypatch, capsys) -> None:
    url = str(tmp_path / "run")
    init_run(open_store(url), cluster_spec(islands=2))
    naps: list[float] = []

    def nap(seconds: float) -> None:  # the user's Ctrl-C after the third refresh
        naps.append(seconds)
        if len(naps) == 3:
            raise KeyboardInterrupt

    # status.time is the module's own import of time; patch that one.
    monkeypatch.setattr(importlib.import_module("islandsync.views.status").time, "sleep", nap)
    assert main(["status", url, "--watch", "2s"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"run {url}: rastrigin") == 3 and naps == [2.0, 2.0, 2.0]


def test_piped_output_into_a_closed_pipe_ends_without_a_traceback(tmp_path: Path) -> None:
    """`islandsync status RUN --json | head -1`: the reader goes away before the output."""
    url = str(tmp_path / "run")
    init_run(open_store(url), cluster_spec(islands=64))
    proc = subprocess.Popen(islandsync_argv("status", url, "--json"), env=child_env(REPO),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the child has written a byte: every write hits EPIPE
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_init_takes_a_portfolio_per_gene_bounds_integer_genes_and_float64(
        tmp_path: Path) -> None:
    from islandsync.bucket.run import read_spec

    url = str(tmp_path / "run")
    assert main(["init", url, "--problem", "sphere", "--dim", "3", "--islands", "3",
                 "--algorithm", "portfolio", "--lower=-1,0,-2", "--upper", "1,5,2",
                 "--integer", "1,2:3", "--dtype", "float64", "--no-publish"]) == 0
    spec = read_spec(open_store(url))
    assert [a.name for a in spec.algorithms] == ["cmaes", "shade", "snes"]
    assert spec.problem.genome.bounds() == ([-1.0, 0.0, -2.0], [1.0, 5.0, 2.0])
    assert spec.problem.genome.integer_genes() == [1, 2] and spec.dtype == "float64"


# -- issue 19: an algorithm's settings from the command line ------------------------------


def test_set_gives_the_algorithm_its_settings(tmp_path: Path) -> None:
    url = str(tmp_path / "de")
    assert main(["init", url, "--problem", "sphere", "--dim", "4", "--algorithm", "de",
                 "--set", "algorithm.f_init=0.7", "--set", "algorithm.compile=true",
                 "--no-publish"]) == 0
    de = read_spec(open_store(url)).algorithm
    assert (de.f_init, de.compile) == (0.7, True)
    # a portfolio's every entry gets it (here the default portfolio's pop)
    url = str(tmp_path / "portfolio")
    assert main(["init", url, "--problem", "sphere", "--dim", "4", "--islands", "3",
                 "--set", "algorithm.pop=12", "--no-publish"]) == 0
    assert [a.pop for a in read_spec(open_store(url)).algorithms] == [12, 12, 12]
    # beside --config, as the other flags: replacing the file's value
    toml = tmp_path / "run.toml"
    toml.write_text('islands = 2\n[problem]\nname = "sphere"\n[problem.genome]\ndim = 3\n'
                    'lower = -1.0\nupper = 1.0\n[algorithm]\nname = "ga"\ncrossover = "sbx"\n')
    url = str(tmp_path / "toml")
    assert main(["init", url, "--config", str(toml), "--set", "algorithm.crossover=uniform",
                 "--no-publish"]) == 0
    assert read_spec(open_store(url)).algorithm.crossover == "uniform"


@pytest.mark.parametrize("setting,message", [
    ("algorithm.f_init=-1", "command line: algorithm.f_init: Input should be greater than 0"),
    ("algorithm.nosuch=1", "command line: algorithm.nosuch: unknown field"),
    ("algorithm.f_init=fast", "command line: algorithm.f_init: Input should be a valid number"),
    ("algorithm.name=ga", "--set algorithm.name: choose the algorithm with --algorithm NAME"),
    ("f_init=0.7", "argument --set: 'f_init=0.7': expected algorithm.FIELD=VALUE"),
    ("problem.dim=3", "expected algorithm.FIELD=VALUE"),
])
def test_a_bad_setting_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, capsys,
                                                             setting: str, message: str) -> None:
    url = tmp_path / "run"
    try:  # argparse's own refusals exit from inside parse_args
        code = main(["init", str(url), "--problem", "sphere", "--dim", "4", "--algorithm",
                     "de", "--set", setting, "--no-publish"])
    except SystemExit as stop:
        code = stop.code
    assert code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert message in last, err
    assert "Traceback" not in err and not url.exists()


def test_init_refuses_a_bad_problem_param_in_one_line_and_writes_nothing(
        tmp_path: Path, capsys) -> None:
    # Before, run.json was written (create-only, for good) and every worker died at start in
    # make_problem; now the spec refuses it before anything is written.
    config = tmp_path / "run.toml"
    url = tmp_path / "run"
    for params in ('{ pointz = 30 }', '{ points = "30" }'):
        config.write_text('islands = 2\n[problem]\nname = "symbolic_regression"\n'
                          f'params = {params}\n'
                          'genome = {kind = "tokens", length = 24, vocab = 13}\n'
                          '[algorithm]\nname = "ga"\n')
        assert main(["init", str(url), "--config", str(config), "--no-publish"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "problem.params: " in err, err
        assert "param 'points'" in err or "unknown param 'pointz'" in err, err
        assert not url.exists() or not (url / "run.json").exists()
