"""The neuroevolution problems: digits (an MLP classifier) and CartPole (a control policy).

Shapes, determinism, that one call scores a whole population exactly as a loop over its rows
would, the network's layout against torch.nn, CartPole's dynamics against gymnasium's
equations stepped by hand, the accuracy helper, and a short engine run that improves each."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from islandsync.config import BUILTIN_PROBLEMS, spec_from_flags
from islandsync.errors import ConfigError
from islandsync.search import neuro
from islandsync.search.control import cartpole_returns, cartpole_step, start_states
from islandsync.search.neuro import digits_accuracy, digits_cross_entropy, load_digits
from islandsync.search.problems import make_problem
from islandsync.worker.engine import Engine


def genomes(n: int, d: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, d, generator=g, dtype=torch.float64) * 2 - 1).to(dtype)


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


# ---------------------------------------------------------------------------- CartPole


def gym_step(s: list[float], action: int) -> tuple[list[float], bool]:
    """gymnasium 1.x CartPoleEnv.step, written out in Python floats (Euler integrator)."""
    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    total_mass, polemass_length = masspole + masscart, masspole * length
    x, x_dot, theta, theta_dot = s
    force = force_mag if action == 1 else -force_mag
    costheta, sintheta = math.cos(theta), math.sin(theta)
    temp = (force + polemass_length * theta_dot ** 2 * sintheta) / total_mass
    thetaacc = (gravity * sintheta - costheta * temp) / (
        length * (4.0 / 3.0 - masspole * costheta ** 2 / total_mass))
    xacc = temp - polemass_length * thetaacc * costheta / total_mass
    x, x_dot = x + tau * x_dot, x_dot + tau * xacc
    theta, theta_dot = theta + tau * theta_dot, theta_dot + tau * thetaacc
    done = x < -2.4 or x > 2.4 or theta < -12 * 2 * math.pi / 360 or theta > 12 * 2 * math.pi / 360
    return [x, x_dot, theta, theta_dot], done


def test_cartpole_dynamics_match_gymnasium_stepped_by_hand() -> None:
    start = start_states(3, seed=5)
    assert torch.equal(start, torch.from_numpy(np.random.default_rng(5).uniform(-0.05, 0.05,
                                                                               (3, 4))))
    actions = [1, 0, 0, 1, 1, 1, 0, 1]
    ref = [list(map(float, s)) for s in start]
    state = start.clone()
    for t, a in enumerate(actions):
        state, done = cartpole_step(state, torch.tensor([a == 1] * 3))
        ref_done = []
        for e in range(3):
            ref[e], d = gym_step(ref[e], a)
            ref_done.append(d)
        assert torch.allclose(state, torch.tensor(ref, dtype=torch.float64), rtol=0, atol=1e-15)
        assert done.tolist() == ref_done == [False] * 3, t


def test_cartpole_return_counts_the_step_that_ends_it() -> None:
    # A linear policy with only a bias of +1 always pushes right: a short episode, which the
    # hand-stepped reference runs to its end from the same start state.
    right = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]])
    for seed in (0, 7):
        s, steps = [float(v) for v in start_states(1, seed)[0]], 0
        while True:
            s, done = gym_step(s, 1)
            steps += 1
            if done:
                break
        assert cartpole_returns(right, 0, 1, seed=seed).tolist() == [float(steps)]
        assert 5 < steps < 100
    # The 500-step cap, and a shorter cap from the param.
    balance = torch.tensor([[0.0, 0.0, 1.0, 0.5, 0.0]])  # push towards the pole's lean
    assert cartpole_returns(balance, 0, 8).tolist() == [500.0]
    assert cartpole_returns(balance, 0, 4, steps=37).tolist() == [37.0]


def test_cartpole_scores_a_population_as_a_loop_over_rows() -> None:
    problem = make_problem("cartpole", {"hidden": 3, "episodes": 3, "steps": 200})
    d = BUILTIN_PROBLEMS["cartpole"].dim_of({"hidden": 3})
    assert d == 5 * 3 + 4 == 19
    x = genomes(6, d, seed=3)
    batch = problem.evaluate(x)
    assert batch.shape == (6,) and batch.dtype == torch.float32
    assert torch.equal(batch, torch.stack([problem.evaluate(r[None])[0] for r in x]))
    assert torch.equal(batch, problem.evaluate(x))
    assert bool(((batch <= -1) & (batch >= -200)).all())  # minus a mean return of 1 to 200
    other = make_problem("cartpole", {"hidden": 3, "episodes": 3, "steps": 200, "seed": 1})
    assert not torch.equal(other.evaluate(x), batch)  # other start states


# ---------------------------------------------------------------------------- engine


@pytest.mark.parametrize("name, params, algorithm", [
    ("digits", {"hidden": 4}, "portfolio"),
    ("cartpole", {"hidden": 2, "episodes": 2, "steps": 200}, "snes"),
])
def test_a_short_engine_run_improves_fitness(name: str, params: dict, algorithm: str) -> None:
    spec = spec_from_flags(problem=name, params=params, islands=3, algorithm=algorithm, seed=4)
    assert spec.problem.genome.dim == BUILTIN_PROBLEMS[name].dim_of(
        BUILTIN_PROBLEMS[name].resolve(params))
    engine = Engine(spec, make_problem(name, params), torch.device("cpu"))
    engine.add_fresh([0, 1, 2])
    first = engine.best()[0]
    assert first > -200.0 if name == "cartpole" else True  # not solved before it starts
    for _ in range(15):
        engine.step()
    assert engine.best()[0] < first
