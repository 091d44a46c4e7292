"""The spec's later additions (issue 20, items 3 and 4): portfolios, per-gene bounds, integer
genes and the genomes' dtype; and run.json files written before them, which keep their bytes
and hash."""

from __future__ import annotations

import hashlib

import pytest

from islandsync.config import parse_spec, spec_from_flags, spec_hash, spec_json
from islandsync.errors import ConfigError

#: run.json as islandsync wrote it before these fields existed (two runs of that version).
OLD_RUN_JSON = [
    b'{"algorithm":{"diagonal":null,"full_max_dim":300,"max_doublings":5,"name":"cmaes",'
    b'"pop":16,"restarts":true,"samples":null,"sigma_init":0.25,"tol_fun":1e-12,"tol_x":1e-12},'
    b'"assignment_poll_s":2.0,"checkpoint_interval_s":30.0,"elite_size":64,'
    b'"heartbeat_interval_s":5.0,"islands":4,"migration":{"interval":20,"migrants":2,'
    b'"topology":"pool"},"problem":{"direction":"minimize","fitness":null,"genome":{"dim":10,'
    b'"kind":"real","lower":-5.12,"upper":5.12},"name":"rastrigin","params":{}},"seed":3,'
    b'"stop":{"duration_s":null,"max_evals":null,"target":null},"version":1,'
    b'"worker_timeout_s":12.0}',
    b'{"algorithm":{"crossover":null,"crossover_rate":0.9,"elite":2,"mutation":null,'
    b'"mutation_rate":null,"mutation_sigma":0.1,"name":"ga","poly_eta":20.0,"pop":64,'
    b'"sbx_eta":15.0,"tournament":3},"assignment_poll_s":2.0,"checkpoint_interval_s":30.0,'
    b'"elite_size":64,"heartbeat_interval_s":5.0,"islands":2,"migration":{"interval":20,'
    b'"migrants":2,"topology":"pool"},"problem":{"direction":"minimize","fitness":null,'
    b'"genome":{"kind":"tokens","length":24,"vocab":13},"name":"symbolic_regression",'
    b'"params":{}},"seed":0,"stop":{"duration_s":null,"max_evals":null,"target":null},'
    b'"version":1,"worker_timeout_s":12.0}',
    # snes before repaired_z existed
    b'{"algorithm":{"lr_center":1.0,"lr_sigma":null,"name":"snes","pop":8,"samples":null,'
    b'"sigma_init":0.25},"assignment_poll_s":2.0,"checkpoint_interval_s":30.0,'
    b'"elite_size":64,"heartbeat_interval_s":5.0,"islands":2,"migration":{"interval":20,'
    b'"migrants":2,"topology":"pool"},"problem":{"direction":"minimize","fitness":null,'
    b'"genome":{"dim":10,"kind":"real","lower":-1.0,"upper":1.0},"name":"sphere",'
    b'"params":{}},"seed":5,"stop":{"duration_s":null,"max_evals":null,"target":null},'
    b'"version":1,"worker_timeout_s":12.0}',
]


def _spec(**fields: object) -> dict:
    data = {"problem": {"name": "sphere", "genome": {"dim": 4, "lower": -1.0, "upper": 1.0}},
            "algorithm": {"name": "de"}, "islands": 6}
    genome = fields.pop("genome", {})
    data["problem"]["genome"].update(genome)  # type: ignore[index]
    return {**data, **fields}


@pytest.mark.parametrize("raw", OLD_RUN_JSON)
def test_old_run_json_keeps_its_bytes_hash_and_meaning(raw: bytes) -> None:
    spec = parse_spec(raw, source="run.json")
    assert spec_json(spec) == raw
    assert spec_hash(spec) == hashlib.sha256(raw).hexdigest()
    assert spec.dtype == "float32" and len(spec.algorithms) == 1
    if spec.problem.genome.kind == "real":
        assert spec.problem.genome.integer == ()


def test_new_fields_are_written_once_they_differ() -> None:
    spec = parse_spec(_spec(dtype="float64", genome={"integer": [0, "2:4"],
                                                     "lower": [-1, -2, -3, -4]}), source="t")
    raw = spec_json(spec)
    assert b'"dtype":"float64"' in raw and b'"integer":[0,"2:4"]' in raw
    assert b'"lower":[-1.0,-2.0,-3.0,-4.0]' in raw
    assert parse_spec(raw, source="t") == spec
    assert spec.problem.genome.integer_genes() == [0, 2, 3]


def test_portfolio_round_robin_and_named() -> None:
    spec = parse_spec(_spec(algorithm=[{"name": "cmaes", "pop": 8}, {"name": "shade"},
                                       {"name": "shade"}]), source="t")
    assert [spec.algorithm_of(i).name for i in range(6)] == ["cmaes", "shade", "shade"] * 2
    assert spec.max_pop == 64
    named = parse_spec(_spec(algorithm="portfolio"), source="t")
    assert [a.name for a in named.algorithms] == ["cmaes", "shade", "snes"]
    # Written out in full: the stored run does not depend on what "portfolio" means later.
    assert b'"algorithm":[{' in spec_json(named) and b"portfolio" not in spec_json(named)
    flags = spec_from_flags(problem="sphere", dim=4, islands=3, algorithm="portfolio", pop=12)
    assert [a.pop for a in flags.algorithms] == [12, 12, 12]


@pytest.mark.parametrize(("fields", "message"), [
    ({"algorithm": []}, "algorithm: a portfolio needs 1 to islands (6) entries, got 0"),
    ({"algorithm": [{"name": "de"}] * 7}, "needs 1 to islands (6) entries, got 7"),
    ({"algorithm": "best"}, "algorithm: Input should be a table of one algorithm's settings"),
    ({"algorithm": [{"name": "de"}, {"name": "nope"}]}, "algorithm.1.name: Input should be"),
    ({"algorithm": [{"name": "de"}, {"name": "cmaes", "pop": 2}]},
     "algorithm.1.pop: Input should be greater than or equal to 4"),
    ({"algorithm": [{"name": "de"}, {"name": "snes", "pop": 2}], "migration": {"migrants": 2}},
     "migration.migrants: must be less than algorithm.1.pop (2), got 2"),
    ({"genome": {"lower": [0, 1]}}, "problem.genome.lower: has 2 bounds; a list needs one"),
    ({"genome": {"upper": [1, 1, -2, 1]}}, "problem.genome.upper: must be greater than lower "
                                           "(gene 2"),
    ({"genome": {"integer": [4]}}, "problem.genome.integer: 4 is not a gene index"),
    ({"genome": {"integer": ["3:1"]}}, "'3:1' is not a gene index or a range"),
    ({"genome": {"integer": [0], "lower": 0.2, "upper": 0.8}},
     "problem.genome.integer: gene 0 holds no integer within its bounds"),
    ({"dtype": "float16"}, "dtype: Input should be 'auto', 'float32' or 'float64'"),
])
def test_bad_additions_are_one_clear_line(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_spec(_spec(**fields), source="t")
    assert message in str(err.value), str(err.value)


def test_float64_is_for_real_genomes() -> None:
    with pytest.raises(ConfigError, match="dtype: float64 applies to real genomes only"):
        spec_from_flags(problem="symbolic_regression", islands=2, dtype="float64")


def test_flags_beside_a_toml_portfolio(tmp_path) -> None:
    from islandsync.config import load_toml

    path = tmp_path / "run.toml"
    path.write_text('islands = 4\nalgorithm = [{name = "cmaes"}, {name = "de", pop = 20}]\n'
                    '[problem]\nname = "sphere"\n[problem.genome]\ndim = 3\n'
                    'lower = [-1, -2, -3]\nupper = 1.0\ninteger = ["0:2"]\n')
    spec = load_toml(path)
    assert [a.name for a in spec.algorithms] == ["cmaes", "de"]
    assert spec.problem.genome.integer_genes() == [0, 1]
    assert [a.pop for a in load_toml(path, overrides={"pop": 12}).algorithms] == [12, 12]
    named = load_toml(path, overrides={"algorithm": "portfolio", "dtype": "float64"})
    assert [a.name for a in named.algorithms] == ["cmaes", "shade", "snes"]
    assert named.dtype == "float64"
    one = load_toml(path, overrides={"algorithm": "ga", "pop": 8})
    assert one.algorithm.name == "ga" and one.algorithm.pop == 8


def test_cmaes_restart_mode_and_lazy_eigen_read_as_before_when_stored_without() -> None:
    """restart_mode and lazy_eigen came later: a cmaes table stored without them means IPOP
    and an eigendecomposition every generation (and keeps its bytes, above); set, they are
    written into run.json and read back, and BIPOP's and the lazy eigensystem's state are
    island frames of their own."""
    old = parse_spec(OLD_RUN_JSON[0], source="run.json")
    assert (old.algorithm.restart_mode, old.algorithm.lazy_eigen) == ("ipop", False)
    assert set(old.algorithm.island_frames(10)) == {
        "mean", "sigma", "cov", "pc", "ps", "gen", "lam", "restarts", "best", "stall"}
    spec = spec_from_flags(problem="sphere", dim=4, islands=2, algorithm="cmaes",
                           algorithm_settings={"restart_mode": "bipop", "lazy_eigen": True})
    raw = spec_json(spec)
    assert b'"restart_mode":"bipop"' in raw and b'"lazy_eigen":true' in raw
    assert parse_spec(raw, source="run.json") == spec
    frames = spec.algorithm.island_frames(4)
    assert {"regime", "lam_large", "small_evals", "large_evals", "eig_sqrt",
            "eig_basis"} <= set(frames)
    assert frames["eig_basis"] == ((4, 4), "<f8")
    assert "eig_basis" not in spec.algorithm.model_copy(
        update={"diagonal": True}).island_frames(4)  # a diagonal C is its own eigensystem


def test_cmaes_tuned_settings_by_flags_and_portfolio_classic_when_stored_without() -> None:
    """active and step_evals came later: a cmaes table stored without them reads as the
    classic CMA-ES it was (and keeps its bytes, above); an algorithm named by flags or in a
    named portfolio gets the tuned settings, written into run.json."""
    old = parse_spec(OLD_RUN_JSON[0], source="run.json")
    assert (old.algorithm.active, old.algorithm.step_evals) == (False, 1)
    by_flag = spec_from_flags(problem="sphere", dim=4, islands=2, algorithm="cmaes")
    named = parse_spec(_spec(algorithm="portfolio"), source="t")
    default = spec_from_flags(problem="sphere", dim=4, islands=4)
    for spec in (by_flag, named, default):
        cma = next(a for a in spec.algorithms if a.name == "cmaes")
        assert (cma.active, cma.step_evals) == (True, 64)
        assert b'"active":true' in spec_json(spec) and b'"step_evals":64' in spec_json(spec)
        assert parse_spec(spec_json(spec), source="run.json") == spec


def test_snes_repaired_z_reads_as_clipped_when_stored_without() -> None:
    """repaired_z came later: a snes table stored without it keeps its meaning (clipped) and
    its bytes (above); flags leave it at clipped (measured: benchmarks/README.md), and a run
    that asks for sampled has it written into run.json."""
    old = parse_spec(OLD_RUN_JSON[2], source="run.json")
    assert old.algorithm.repaired_z == "clipped"
    by_flag = spec_from_flags(problem="sphere", dim=4, islands=2, algorithm="snes")
    assert by_flag.algorithm.repaired_z == "clipped"
    assert b"repaired_z" not in spec_json(by_flag)
    sampled = spec_from_flags(problem="sphere", dim=4, islands=2, algorithm="snes",
                              algorithm_settings={"repaired_z": "sampled"})
    assert b'"repaired_z":"sampled"' in spec_json(sampled)
    assert parse_spec(spec_json(sampled), source="run.json") == sampled
