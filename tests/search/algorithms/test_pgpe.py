"""PGPE with ClipUp against its reference, EvoTorch 0.6's ``PGPE(optimizer="clipup")``
(evotorch/algorithms/distributed/gaussian.py, distributions.SymmetricSeparableGaussian,
optimizers.ClipUp), written out here by hand (EvoTorch is in the neuro-bench extra, not
the test one): antithetic pairs, centred ranks, its pairwise gradients, ClipUp's normalised
step with momentum and a speed limit, and sigma's 20 % change limit; step for step on the
same noise."""

from __future__ import annotations

import torch

from islandsync.config import PGPEConfig, RealGenome
from islandsync.search.algorithms import PGPE, initial_state
from islandsync.search.algorithms.pgpe import centred_utilities


def test_centred_utilities_by_hand() -> None:
    # scores 3, 1, 2 (minimised): ranks worst, best, middle -> -0.5, +0.5, 0
    got = centred_utilities(torch.tensor([[3.0, 1.0, 2.0]]))
    assert got.tolist() == [[-0.5, 0.5, 0.0]]


def _evotorch_step(mu, sigma, v, eps, f_plus, f_minus, c: PGPEConfig, width: float):
    """EvoTorch's PGPE + ClipUp update of one distribution from its directions ``eps``
    [n, D] and the scores of mu + eps / mu - eps (minimised), as its source reads; speeds
    in islandsync's settings are fractions of the box ``width``."""
    f = torch.cat([f_plus, f_minus])
    w = torch.empty_like(f)
    w[f.argsort(descending=True)] = torch.arange(len(f), dtype=f.dtype) / (len(f) - 1) - 0.5
    wp, wm, n = w[: len(f_plus)], w[len(f_plus):], len(f_plus)
    grad_mu = (((wp - wm) / 2)[:, None] * eps).sum(0) / n
    grad_sigma = (((wp + wm) / 2)[:, None] * (eps**2 - sigma**2) / sigma).sum(0) / n
    lr, vmax = c.max_speed * width / 2, c.max_speed * width
    v = c.momentum * v + grad_mu / grad_mu.norm() * lr
    v = v * (vmax / v.norm()) if v.norm() > vmax else v
    new_sigma = sigma + c.lr_sigma * grad_sigma
    new_sigma = torch.minimum(torch.maximum(new_sigma, 0.8 * sigma), 1.2 * sigma)
    return mu + v, new_sigma, v


def test_steps_match_evotorch_pgpe_with_clipup() -> None:
    # EvoTorch's digits settings (max speed 0.15, radius 2.25) on a box so wide that no
    # sample reaches it: EvoTorch has no box.
    dim, width = 7, 200.0
    config = PGPEConfig(samples=10, max_speed=0.15 / width, radius_init=2.25 / width)
    alg = PGPE(config, RealGenome(dim=dim, lower=-width / 2, upper=width / 2))
    scored: list[torch.Tensor] = []

    def ev(x: torch.Tensor) -> torch.Tensor:
        scored.append(x)
        return ((x - 0.1) ** 2 * torch.arange(1, dim + 1)).sum(-1)
    g, ids = torch.Generator().manual_seed(5), torch.tensor([0])
    state = initial_state(alg, ids, ev, g)
    mu, sigma, v = (state.island[n][0].clone() for n in ("mean", "sigma", "velocity"))
    assert torch.allclose(sigma, torch.full((dim,), 2.25 / dim**0.5))
    for _ in range(15):
        z = torch.randn((1, 5, dim), generator=torch.Generator().set_state(g.get_state()))[0]
        state = alg.step(state, ids, ev, g)
        assert float(scored[-1].abs().max()) < width / 2  # none clamped
        eps = sigma * z
        mu, sigma, v = _evotorch_step(mu, sigma, v, eps, ev(mu + eps), ev(mu - eps), config,
                                      width)
        for name, want in (("mean", mu), ("sigma", sigma), ("velocity", v)):
            assert torch.allclose(state.island[name][0], want, rtol=1e-4, atol=1e-5), name
    assert abs(float(v.norm()) - 0.15) < 1e-4  # ClipUp at its speed limit
    assert not torch.allclose(sigma, torch.full_like(sigma, 2.25 / dim**0.5))


def test_samples_are_antithetic_pairs_within_the_box() -> None:
    alg = PGPE(PGPEConfig(samples=6, radius_init=20.0), RealGenome(dim=4, lower=-1, upper=1))
    scored: list[torch.Tensor] = []

    def ev(x: torch.Tensor) -> torch.Tensor:
        scored.append(x.clone())
        return (x**2).sum(-1)
    g, ids = torch.Generator().manual_seed(0), torch.tensor([0, 1])
    state = initial_state(alg, ids, ev, g)
    mean = state.island["mean"]
    state = alg.step(state, ids, ev, g)
    x = scored[-1]
    assert x.shape == (2, 6, 4) and bool(((x >= -1) & (x <= 1)).all())
    inside = ((x[:, :3] > -1) & (x[:, :3] < 1) & (x[:, 3:] > -1) & (x[:, 3:] < 1))
    pair_mid = (x[:, :3] + x[:, 3:]) / 2
    assert bool(inside.any())  # sigma 5 per gene: most are clamped, some are not
    assert torch.allclose(pair_mid[inside], mean[:, None].expand_as(pair_mid)[inside])
