"""The cartpole problem: gymnasium's CartPole-v1 dynamics against its equations stepped by
hand, episode returns and the step cap, a population scored as a loop over its rows would,
and a short engine run that improves it."""

from __future__ import annotations

import math

import numpy as np
import torch

from islandsync.config import BUILTIN_PROBLEMS
from islandsync.search.control import cartpole_returns, cartpole_step, start_states
from islandsync.search.problems import make_problem

from .conftest import genomes, short_run


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


def test_a_short_engine_run_improves_fitness() -> None:
    first, last = short_run("cartpole", {"hidden": 2, "episodes": 2, "steps": 200}, "snes")
    assert -200.0 < first and last < first  # not solved before it starts, then better
