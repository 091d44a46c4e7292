"""A coordinator's settings (islandsync.leader.settings): defaults written once, the run's
cadence unless a flag says otherwise, bad values refused, and the CLI says the same."""

from __future__ import annotations

import dataclasses

import pytest

from islandsync.cli import build_parser
from islandsync.cli_flags import coordinate_settings
from islandsync.config import CADENCES
from islandsync.errors import ConfigError
from islandsync.leader.settings import DEFAULTS, LeaderSettings
from islandsync.testing.cluster import cluster_spec


def test_the_lease_and_cycle_are_the_runs_unless_given() -> None:
    spec = cluster_spec(islands=2)
    assert (DEFAULTS.lease_s, DEFAULTS.cycle_s) == (None, None)
    mine = DEFAULTS.for_run(spec)
    assert (mine.lease_s, mine.cycle_s) == (spec.lease_s, spec.leader_cycle_s)
    preset = CADENCES["free-tier"]
    frugal = spec.model_copy(update={k: preset[k] for k in ("lease_s", "leader_cycle_s")})
    assert (DEFAULTS.for_run(frugal).lease_s, DEFAULTS.for_run(frugal).cycle_s) == (
        preset["lease_s"], preset["leader_cycle_s"])
    flagged = LeaderSettings(lease_s=9.0, cycle_s=2.0).for_run(frugal)
    assert (flagged.lease_s, flagged.cycle_s) == (9.0, 2.0)


@pytest.mark.parametrize("bad", [
    {"lease_s": 0.0}, {"cycle_s": -1.0}, {"drain_s": float("nan")}, {"housekeeping_s": "5"},
    {"readers": 0}, {"readers": True}, {"history_every_s": -1.0}, {"metrics_port": 70000},
])
def test_bad_settings_are_refused_naming_the_field(bad: dict) -> None:
    with pytest.raises(ConfigError, match=next(iter(bad))):
        LeaderSettings(**bad)


def _coordinate_parser():  # noqa: ANN202
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["coordinate"]


def test_the_cli_defaults_are_the_settings_and_its_help_says_them() -> None:
    """`islandsync coordinate RUN` with no flags leads with the settings' defaults (but for
    /metrics, which the command serves on 9464), and its help prints those defaults."""
    args = build_parser().parse_args(["coordinate", "run"])
    assert coordinate_settings(args) == dataclasses.replace(
        DEFAULTS, metrics_port=9464, metrics_host="127.0.0.1")
    parser = _coordinate_parser()
    formatter = parser._get_formatter()
    helps = {a.dest: formatter._get_help_string(a) % {"default": a.default}
             for a in parser._actions}
    assert f"(default: {DEFAULTS.drain_s:g}s)" in helps["drain"]
    assert f"(default: {DEFAULTS.history_every_s:g}s)" in helps["history_every"]
    assert f"(default: {DEFAULTS.history_flush_s:g}s)" in helps["history_flush"]
    assert "default: the run's cadence" in helps["lease"]
    assert "default: the run's cadence" in helps["interval"]
