"""jDE: self-adaptive differential evolution (Brest, Greiner, Boskovic, Mernik, Zumer 2006),
vectorised over islands and individuals.

DE/rand/1/bin. Every individual carries its own F and CR (``IslandState.extra``). Each
generation, with probability ``tau_f`` an individual's trial F is redrawn uniformly from
[f_lower, f_upper], and with probability ``tau_cr`` its trial CR uniformly from [0, 1]; the
mutant is ``x_r1 + F (x_r2 - x_r3)`` with r1, r2, r3 and i mutually distinct; binomial
crossover takes each gene from the mutant with probability CR and always gene ``jrand``.

Bounds: a mutant gene outside the box is redrawn uniformly between the parent's gene and the
violated bound ("random reinitialisation between parent and bound"), which keeps the search
near the boundary where the optimum may lie (schwefel's is close to it) without piling
individuals exactly on it the way clamping does.

Selection is greedy and one-to-one: the trial replaces its target when its score is <= the
target's, and the trial F and CR are kept only then. Real genomes only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from islandsync.config import DEConfig, RealGenome
from islandsync.errors import ConfigError
from islandsync.search.algorithms.base import Evaluate, IslandState, check_settings

log = logging.getLogger(__name__)


def _rand(g: torch.Generator, *shape: int) -> Tensor:
    # float32 whatever torch's default dtype is: states are float32 by contract.
    return torch.rand(shape, generator=g, device=g.device, dtype=torch.float32)


def distinct_indices(k: int, p: int, n: int, g: torch.Generator) -> Tensor:
    """``[k, p, n]`` indices in ``[0, p)``, uniform, such that ``out[.., i, :]`` and ``i`` are
    all distinct: :func:`partners` of ``n`` float64 uniforms ``[n, k, p]``."""
    if n + 1 > p:
        raise ConfigError(f"de: needs pop >= {n + 1} to draw {n} distinct partners, got {p}")
    return partners(torch.rand((n, k, p), generator=g, device=g.device, dtype=torch.float64))


def partners(a: Tensor) -> Tensor:
    """``[k, p, n]`` distinct partners from uniforms ``a [n, k, p]`` (float64: 53 bits, so
    ``floor(a * m)`` is uniform on ``0..m-1`` to within 2**-40 for any population). Partners
    are offsets ``1..p-1`` from ``i`` (so never ``i``): the ``m``-th from the ``p - m`` offsets
    left, stepping over the earlier ones in ascending order. No rejection loop, no ``[p, p]``
    sort. Pure, so it compiles."""
    n, _, p = a.shape
    drawn: list[Tensor] = []
    for m in range(1, n + 1):  # n is 3: a loop over draws, never over individuals
        v = (a[m - 1] * (p - m)).to(torch.int64).clamp_(max=p - m - 1)
        if m == 2:
            v = v + (v >= drawn[0]).to(torch.int64)
        elif m > 2:  # earlier offsets in ascending order (min/max when there are two)
            prior = (torch.minimum(*drawn), torch.maximum(*drawn)) if m == 3 else \
                torch.sort(torch.stack(drawn, dim=-1), dim=-1).values.unbind(-1)
            for e in prior:
                v = v + (v >= e).to(torch.int64)
        drawn.append(v)
    i = torch.arange(p, device=a.device)[None, :, None]
    return torch.remainder(torch.stack(drawn, dim=-1) + (i + 1), p)


def variation(x: Tensor, small: Tensor, c: Tensor, f_old: Tensor, cr_old: Tensor,
              tau_f: float, tau_cr: float, f_lower: float, f_upper: float,
              lo: float, hi: float) -> tuple[Tensor, Tensor, Tensor]:
    """One jDE generation's trials and their F and CR, from its draws: ``small`` [9, K, P]
    float64 uniforms (F redraw and value, CR redraw and value, three partners, jrand and its
    repair uniform) and ``c`` [K, P, D] (crossover and repair). Pure apart from using ``c``
    as scratch: eager and compiled runs compute the same thing."""
    d = x.shape[2]
    redraw_f, new_f, redraw_cr, new_cr = small[:4].to(torch.float32).unbind(0)
    f = torch.where(redraw_f < tau_f, f_lower + new_f * (f_upper - f_lower), f_old)
    cr = torch.where(redraw_cr < tau_cr, new_cr, cr_old)
    r = partners(small[4:7])
    jrand = (small[7] * d).to(torch.int64).clamp_(max=d - 1)[..., None]
    u_j = small[8].to(torch.float32)[..., None]
    return trial_vectors(x, r, f, cr, c, jrand, u_j, lo, hi), f, cr


def trial_vectors(x: Tensor, r: Tensor, f: Tensor, cr: Tensor, c: Tensor, jrand: Tensor,
                  u_j: Tensor, lo: float, hi: float) -> Tensor:
    """DE/rand/1/bin trials with bound repair, from the generation's draws: partners ``r``
    [K, P, 3], F and CR [K, P], crossover uniforms ``c`` [K, P, D], the forced gene ``jrand``
    [K, P, 1] and its repair uniform ``u_j`` [K, P, 1]. Pure: ``c`` is the only input it
    writes over (its own scratch), so eager and compiled runs compute the same thing."""
    k, p, d = x.shape
    # Partners as whole rows (index_select copies rows; a gather indexes every gene).
    rows = r + (torch.arange(k, device=x.device) * p)[:, None, None]
    picked = x.reshape(k * p, d).index_select(0, rows.reshape(-1)).view(k, p, 3, d)
    p0, p1, p2 = picked.unbind(2)
    mutant = p0.addcmul_(f[..., None], p1.sub_(p2))  # x_r1 + F (x_r2 - x_r3), in place

    # One [K, P, D] draw serves crossover and bound repair: a gene is taken from the mutant
    # when c < CR, and given that, u = c / CR is uniform on [0, 1) and independent of the
    # choice, so it is the repair's uniform (drawing a second [K, P, D] tensor cost as much as
    # the rest of the step's arithmetic). Gene jrand is always taken and has its own uniform.
    # (CR is kept off 0 so u stays finite: a weight 0 * inf would be NaN. So CR = 0 also takes
    # a gene drawn exactly 0.0: probability 2**-24.)
    u = c.div_(cr.clamp(min=1e-30)[..., None])
    # Choices are 0/1 float weights for lerp, which gives exactly one end at 0 and at 1: on a
    # CPU, where() with a full bool mask costs five times a lerp.
    take = torch.lt(u, 1.0, out=torch.empty_like(u))
    take.scatter_(2, jrand, 1.0)
    u.scatter_(2, jrand, u_j)
    trial = torch.lerp(x, mutant, take)

    # Out-of-box genes: uniform between the parent's gene and the violated bound, i.e.
    # lerp(bound, parent, u); the bound is what clamping gives, so out-of-box is where
    # clamping changed the gene (weight u there, 0 elsewhere). The last clamp only guards
    # lerp's rounding.
    clamped = trial.clamp(lo, hi)
    weight = torch.ne(clamped, trial, out=take).mul_(u)
    return torch.lerp(clamped, x, weight).clamp_(lo, hi)


# On a CPU the step's dozen passes over [K, P, D] run over blocks of whole islands of about
# this many bytes, which stay in cache: 20% faster at 8 x 1024 x 1000 on one core. Partners
# come from the same island, so blocks give bit-identical results. A GPU takes all at once.
_CPU_BLOCK_BYTES = 1 << 22


def _islands_per_block(x: Tensor) -> int:
    if x.device.type != "cpu":
        return x.shape[0]
    return max(1, _CPU_BLOCK_BYTES // max(1, x[0].numel() * x.element_size()))


def _compiled(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``fn`` through torch.compile, falling back to ``fn`` itself (one warning) wherever
    compiling or running the compiled code fails: no compiler, an old torch, a platform
    inductor does not support. Compiled results may differ from eager ones in the last bit
    (fused multiply-adds); each mode is deterministic on its own."""
    state: dict[str, Callable[..., Tensor]] = {}

    def run(*args: Any) -> Tensor:
        use = state.get("fn")
        if use is fn:
            return fn(*args)
        try:  # the first call compiles; so may a later one, for new shapes
            if use is None:
                use = state["fn"] = torch.compile(fn)
            return use(*args)
        except Exception as err:  # noqa: BLE001 - any failure means: run eagerly from now on
            log.warning("de: torch.compile unavailable (%s: %s); running eagerly",
                        type(err).__name__, err)
            state["fn"] = fn
            return fn(*args)

    return run


class DifferentialEvolution:
    """jDE on real genomes. See the module docstring.

    Defaults are Brest et al.'s: F starts at 0.5 and CR at 0.9, both re-drawn with
    probability 0.1 per generation, F in [0.1, 1.0].
    """

    name = "de"
    Config = DEConfig

    def __init__(self, config: DEConfig, genome: RealGenome) -> None:
        """``config`` is the run spec's ``algorithm`` (it holds every limit); ``genome`` its
        ``problem.genome``, which must be real."""
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.pop_size = config.pop
        self.f_init, self.cr_init = config.f_init, config.cr_init
        self.tau_f, self.tau_cr = config.tau_f, config.tau_cr
        self.f_lower, self.f_upper = config.f_lower, config.f_upper
        self.extra_defaults: dict[str, float] = {"F": self.f_init, "CR": self.cr_init}
        self._variation = _compiled(variation) if config.compile else variation

    def __repr__(self) -> str:
        return (f"DifferentialEvolution(dim={self.dim}, pop={self.pop_size}, "
                f"F=[{self.f_lower}, {self.f_upper}], tau=({self.tau_f}, {self.tau_cr}))")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        k = island_ids.shape[0]
        return self.lower + (self.upper - self.lower) * _rand(generator, k, self.pop_size,
                                                              self.dim)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        g = generator
        x = state.genomes
        k, p, d = x.shape
        lo, hi = self.lower, self.upper
        f_old, cr_old = state.extra["F"], state.extra["CR"]
        if p < 4:
            raise ConfigError(f"de: needs pop >= 4 to draw 3 distinct partners, got {p}")
        # Two draws a generation: every per-individual uniform in one [9, K, P] tensor (at
        # small sizes each call's overhead counts), and the [K, P, D] one. The arithmetic
        # after them is pure (and can be compiled: ``compile`` in the settings).
        small = torch.rand((9, k, p), generator=g, device=g.device, dtype=torch.float64)
        c = _rand(g, k, p, d)
        consts = (self.tau_f, self.tau_cr, self.f_lower, self.f_upper, lo, hi)
        step = _islands_per_block(x)
        if step >= k:
            trial, f, cr = self._variation(x, small, c, f_old, cr_old, *consts)
        else:  # CPU, big islands: a few islands at a time, so each pass stays in cache
            parts = [self._variation(x[a:a + step], small[:, a:a + step], c[a:a + step],
                                     f_old[a:a + step], cr_old[a:a + step], *consts)
                     for a in range(0, k, step)]
            trial, f, cr = (torch.cat(t) for t in zip(*parts))

        trial_scores = evaluate(trial).to(torch.float32)
        win = trial_scores <= state.scores
        born = island_ids.to(device=x.device, dtype=torch.int64)[:, None].expand(k, p)
        return IslandState(
            genomes=torch.where(win[..., None], trial, x),
            scores=torch.where(win, trial_scores, state.scores),
            # Ids are left to the engine, which hashes genomes only where ids are read
            # (migration, snapshots): hashing every trial was half the step's time.
            ids=None,
            origin=torch.where(win, born, state.origin),
            extra={"F": torch.where(win, f, f_old), "CR": torch.where(win, cr, cr_old)},
        )


__all__ = ["DifferentialEvolution", "distinct_indices", "partners", "trial_vectors",
           "variation"]
