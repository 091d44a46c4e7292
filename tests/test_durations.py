"""The one duration reader: command-line flags, $ISLANDSYNC_SESSION_LIMIT and
$ISLANDSYNC_STORE_LATENCY all read durations through islandsync.durations.parse_duration."""

from __future__ import annotations

import argparse
import math

import pytest

from islandsync import cli
from islandsync.durations import parse_duration
from islandsync.errors import ConfigError


@pytest.mark.parametrize("text,seconds", [
    ("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("2h", 7200.0), ("1.5h", 5400.0),
    ("1d", 86400.0), ("50ms", 0.05), ("250us", 0.00025), (" 1 s ", 1.0), (".5", 0.5),
    ("10M", 600.0), ("3MS", 0.003),
])
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text, what="x") == pytest.approx(seconds)
    assert cli.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "", "-5", "1e3", "inf", "nan", "5 parsecs", "5ss",
                                  "m", "1" + "0" * 400, "5 m s", "1h30m"])
def test_refused_everywhere(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--lease: .*" + repr(text)[1:-1]):
        parse_duration(text, what="--lease")
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_duration(text)


def test_zero_only_where_it_means_off() -> None:
    assert parse_duration("0ms", what="latency", allow_zero=True) == 0.0
    with pytest.raises(ConfigError, match="more than 0"):
        parse_duration("0s", what="--duration")
    assert math.isfinite(parse_duration("9" * 300, what="x"))


def test_cli_used_to_accept_what_the_env_refused() -> None:
    # Before one reader, `--duration inf` and `--duration 1e3` parsed (float()) while
    # ISLANDSYNC_SESSION_LIMIT refused both, and `--duration 50ms` was an error while the
    # benchmark's --store-latency took it. Now every flag reads like the environment.
    parser = cli.build_parser()
    for bad in ("inf", "1e3"):
        with pytest.raises(SystemExit):
            parser.parse_args(["coordinate", "run", "--duration", bad])
    assert parser.parse_args(["coordinate", "run", "--interval", "500ms"]).interval == 0.5
