"""The digits problem (an MLP classifier): the data split, shapes, determinism, that one call
scores a whole population exactly as a loop over its rows would, the network's layout against
torch.nn, the accuracy helper, and a short engine run that improves it."""

from __future__ import annotations

import math

import pytest
import torch

from islandsync.config import BUILTIN_PROBLEMS
from islandsync.errors import ConfigError
from islandsync.search import neuro
from islandsync.search.neuro import digits_accuracy, digits_cross_entropy, load_digits
from islandsync.search.problems import make_problem

from .conftest import genomes, short_run

# ---------------------------------------------------------------------------- digits


def test_digits_split_is_fixed_stratified_and_scaled() -> None:
    data = load_digits()
    assert data.train_x.shape == (1442, 64) and data.test_x.shape == (355, 64)
    assert data.train_x.dtype == torch.float64
    assert float(data.train_x.min()) == 0.0 and float(data.train_x.max()) == 1.0
    # Every fifth image of each class is held out: 34 to 36 test images a class.
    counts = torch.bincount(data.test_y, minlength=10)
    assert counts.sum() == 355 and int(counts.min()) >= 34 and int(counts.max()) <= 36
    assert torch.bincount(data.train_y).sum() == 1442


def test_digits_file_is_checked(tmp_path, monkeypatch) -> None:
    bad = tmp_path / "digits.csv.gz"
    raw = bytearray(neuro.DIGITS_FILE.read_bytes())
    raw[1000] ^= 1
    bad.write_bytes(bytes(raw))
    monkeypatch.setattr(neuro, "DIGITS_FILE", bad)
    with pytest.raises(ConfigError, match=r"sha256 differs\); reinstall islandsync"):
        neuro.load_digits.__wrapped__()
    monkeypatch.setattr(neuro, "DIGITS_FILE", tmp_path / "missing.csv.gz")
    with pytest.raises(ConfigError, match="cannot read"):
        neuro.load_digits.__wrapped__()


def reference_mlp(genome: torch.Tensor, hidden: int) -> torch.nn.Sequential:
    """torch.nn's 64 -> hidden (tanh) -> 10 with the genome's weights, in the documented
    layout: W1 [64, h], b1, W2 [h, 10], b2."""
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.Tanh(),
                              torch.nn.Linear(hidden, 10)).double()
    w1, b1, w2, b2 = genome.double().split([64 * hidden, hidden, hidden * 10, 10])
    with torch.no_grad():
        net[0].weight.copy_(w1.reshape(64, hidden).T)
        net[0].bias.copy_(b1)
        net[2].weight.copy_(w2.reshape(hidden, 10).T)
        net[2].bias.copy_(b2)
    return net


def test_digits_matches_torch_nn_and_a_loop_over_rows() -> None:
    problem = make_problem("digits", {"hidden": 6})
    d = 65 * 6 + 7 * 10
    assert BUILTIN_PROBLEMS["digits"].dim_of({"hidden": 6}) == d == 460
    x = genomes(5, d, dtype=torch.float64)
    batch = problem.evaluate(x)
    assert batch.shape == (5,) and batch.dtype == torch.float64
    assert torch.equal(batch, problem.evaluate(x))  # deterministic
    one_by_one = torch.stack([problem.evaluate(row[None])[0] for row in x])
    assert torch.allclose(batch, one_by_one, rtol=1e-12)
    data = load_digits()
    for row, value in zip(x[:2], batch[:2]):
        net = reference_mlp(row, 6)
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(net(data.train_x), data.train_y)
            right = (net(data.test_x).argmax(1) == data.test_y).double().mean()
        assert math.isclose(float(value), float(ce), rel_tol=1e-10)
        assert math.isclose(float(digits_accuracy(row[None], 6)[0]), float(right))
    assert problem.evaluate(x.float()).dtype == torch.float32


def test_digits_accuracy_of_a_constant_classifier_is_its_class_share() -> None:
    d = 65 * 4 + 5 * 10
    g = torch.zeros(3, d)
    for row, label in enumerate((0, 3, 9)):
        g[row, -10 + label] = 1.0  # only b2: always this label
    test_y = load_digits().test_y
    expected = [float((test_y == c).double().mean()) for c in (0, 3, 9)]
    assert digits_accuracy(g, 4).tolist() == pytest.approx(expected, abs=1e-12)
    assert digits_cross_entropy(g, 4, "train").shape == (3,)
    with pytest.raises(ConfigError, match="split must be 'train' or 'test'"):
        digits_accuracy(g, 4, "valid")
    with pytest.raises(ConfigError, match="has 310 weights; genomes have 309"):
        digits_accuracy(g[:, 1:], 4)


def test_digits_population_slices_score_as_one_batch(monkeypatch) -> None:
    x = genomes(7, 65 * 3 + 4 * 10, seed=2, dtype=torch.float64)
    whole = digits_cross_entropy(x, 3)
    monkeypatch.setattr(neuro, "_MAX_ACTIVATIONS", 1442 * 10 * 2)  # two genomes a slice
    assert torch.allclose(digits_cross_entropy(x, 3), whole, rtol=1e-12)


# ---------------------------------------------------------------------------- engine


def test_a_short_engine_run_improves_fitness() -> None:
    first, last = short_run("digits", {"hidden": 4}, "portfolio")
    assert last < first
