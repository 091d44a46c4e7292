"""Control: gymnasium's CartPole-v1 written in torch, every genome's every episode at once.

The dynamics are gymnasium's ``CartPoleEnv.step`` (Euler integration, its constants: g 9.8,
cart 1.0 kg, pole 0.1 kg, half-length 0.5, force 10, tau 0.02 s), in float64 as there. An
episode starts uniform in [-0.05, 0.05]^4, ends when |x| > 2.4 or |theta| > 12 degrees
(that step still earns its reward of 1) or after ``steps`` steps (500: CartPole-v1's cap).
Start states come from ``numpy.random.default_rng(seed)``, drawn as gymnasium's
``reset(seed=seed)`` and then ``reset()`` draw them, so episode e of a seed starts where
gymnasium's e-th reset would.

A policy is an MLP 4 -> hidden (tanh) -> 1 (``hidden`` 0: linear) on the float32
observation, in the genome's dtype; it pushes right (action 1) where its output is > 0.
Fitness is minus the mean return over the episodes: the same start states at every
evaluation, so a genome's fitness is a function of the genome. States are one tensor
[B, E, 4]: the only Python loop is over time steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from islandsync.config.problems import CARTPOLE_OBSERVATIONS
from islandsync.search.neuro import mlp_forward

GRAVITY, MASS_CART, MASS_POLE, HALF_LENGTH = 9.8, 1.0, 0.1, 0.5
FORCE, TAU = 10.0, 0.02
TOTAL_MASS = MASS_CART + MASS_POLE
POLE_MASS_LENGTH = MASS_POLE * HALF_LENGTH
X_LIMIT, THETA_LIMIT = 2.4, 12 * 2 * math.pi / 360
MAX_STEPS = 500  # CartPole-v1's TimeLimit
_CHECK_EVERY = 10  # steps between checks that some episode is still running (a device sync)


def start_states(episodes: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """[episodes, 4] float64 start states (see the module docstring)."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-0.05, 0.05, size=(episodes, 4))).to(device)


def cartpole_step(state: Tensor, push_right: Tensor) -> tuple[Tensor, Tensor]:
    """One step of gymnasium's CartPole of every state ``[..., 4]`` (x, x_dot, theta,
    theta_dot) under ``push_right`` (bool ``[...]``). Returns the next state and whether it
    ends the episode."""
    x, x_dot, theta, theta_dot = state.unbind(-1)
    force = torch.where(push_right, FORCE, -FORCE).to(state.dtype)
    cos, sin = torch.cos(theta), torch.sin(theta)
    temp = (force + POLE_MASS_LENGTH * theta_dot * theta_dot * sin) / TOTAL_MASS
    theta_acc = (GRAVITY * sin - cos * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - MASS_POLE * cos * cos / TOTAL_MASS))
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos / TOTAL_MASS
    nxt = torch.stack((x + TAU * x_dot, x_dot + TAU * x_acc,
                       theta + TAU * theta_dot, theta_dot + TAU * theta_acc), dim=-1)
    done = (nxt[..., 0].abs() > X_LIMIT) | (nxt[..., 2].abs() > THETA_LIMIT)
    return nxt, done


def cartpole_returns(genomes: Tensor, hidden: int, episodes: int, steps: int = MAX_STEPS,
                     seed: int = 0) -> Tensor:
    """Mean return [B] (float64) of each genome's policy over ``episodes`` episodes of at
    most ``steps`` steps from the start states of ``seed``."""
    genomes = genomes if genomes.is_floating_point() else genomes.to(torch.float32)
    b = genomes.shape[0]
    state = start_states(episodes, seed, genomes.device)[None].expand(b, -1, -1)
    running = torch.ones(b, episodes, dtype=torch.bool, device=genomes.device)
    returns = torch.zeros(b, episodes, dtype=torch.float64, device=genomes.device)
    for t in range(steps):
        # gymnasium hands the policy the float32 observation.
        obs = state.to(torch.float32)
        out = mlp_forward(genomes, obs, CARTPOLE_OBSERVATIONS, hidden, 1)[..., 0]
        nxt, done = cartpole_step(state, out > 0)
        returns += running  # the step that ends an episode still earns its reward
        state = torch.where(running[..., None], nxt, state)
        running = running & ~done
        if (t + 1) % _CHECK_EVERY == 0 and not bool(running.any()):
            break
    return returns.mean(1)


def cartpole_fitness(hidden: int, episodes: int, steps: int,
                     seed: int) -> Callable[[Tensor], Tensor]:
    """The cartpole problem's ``evaluate``: minus the mean return, in the genomes' dtype."""
    def evaluate(genomes: Tensor) -> Tensor:
        dtype = genomes.dtype if genomes.is_floating_point() else torch.float32
        return -cartpole_returns(genomes, hidden, episodes, steps, seed).to(dtype)
    return evaluate


__all__ = ["MAX_STEPS", "cartpole_fitness", "cartpole_returns", "cartpole_step",
           "start_states"]
