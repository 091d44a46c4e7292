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
from typing import Any, NamedTuple

import torch
from torch import Tensor

from islandsync.config import DEConfig, RealGenome
from islandsync.errors import ConfigError
from islandsync.search.state import IslandState
from islandsync.search.algorithms.base import Evaluate, Uniforms, check_settings
from islandsync.search.algorithms.box import Box

log = logging.getLogger(__name__)


def distinct_indices(k: int, p: int, n: int, g: torch.Generator) -> Tensor:
    """``[k, p, n]`` indices in ``[0, p)``, uniform, such that ``out[.., i, :]`` and ``i`` are
    all distinct: :func:`partners` of ``n`` float64 uniforms ``[n, k, p]``."""
    if n + 1 > p:
        raise ConfigError(f"de: needs pop >= {n + 1} to draw {n} distinct partners, got {p}")
    return partners(torch.rand((n, k, p), generator=g, device=g.device, dtype=torch.float64))


def partners(a: Tensor) -> Tensor:
    """``[k, p, n]`` distinct partners from uniforms ``a [n, k, p]`` (float64: 53 bits, so
    ``floor(a * m)`` is uniform on ``0..m-1`` to within 2**-40 for any population). Partners
    are offsets ``1..p-1`` from ``i`` (so never ``i``), uniform over ordered n-tuples of
    distinct ones: see :func:`offsets_`. No rejection loop, no ``[p, p]`` sort. Pure, so it
    compiles."""
    n, _, p = a.shape
    m = torch.arange(1, n + 1, device=a.device)[:, None, None]
    v = offsets_(torch.minimum((a * (p - m)).to(torch.int64), p - m - 1), p)
    return torch.remainder(v + torch.arange(1, p + 1, device=a.device), p).permute(1, 2, 0)


def offsets_(v: Tensor, p: int, one: int | Tensor = 1, wrap: int | Tensor | None = None
             ) -> Tensor:
    """In place on ``v [n, k, p]`` int64 with ``v[m]`` uniform on ``0..p-2-m``: ``n`` distinct
    offsets in ``0..p-2``, uniform over ordered n-tuples. The first is ``v[0]``; the others
    are ``(v[0] + 1 + w[m]) mod (p - 1)``, which skips ``v[0]``, where ``w[1] = v[1]`` and each
    later ``w[m]`` steps over the earlier ones in ascending order (``w[2] = v[2] + (v[2] >=
    v[1])`` for DE's three). Each step is a bijection, so the tuple is uniform. 8 small ops for
    three partners (stepping all three over each other took 14). ``one`` and ``wrap`` (``p -
    1``) may be given as 0-dim int64 tensors, which a call takes faster than Python numbers."""
    rows = v.unbind(0)
    for m in range(2, len(rows)):  # n is 3: a loop over draws, never over individuals
        prior = rows[1:2] if m == 2 else torch.sort(v[1:m], dim=0).values.unbind(0)
        for e in prior:
            rows[m].add_(rows[m] >= e)
    if len(rows) > 1:
        v[1:].add_(rows[0]).add_(one).remainder_(p - 1 if wrap is None else wrap)
    return v


class Tables(NamedTuple):
    """Constants of one ``[K, P, D]`` shape, made once instead of every generation (each
    tensor built per step was a few microseconds: at small sizes the step is a few hundred).
    """

    scale: Tensor  # [4, 1, 1] float64: p-1, p-2, p-3 (partner offsets), d (jrand)
    cap: Tensor  # [4, 1, 1] int64: the largest value of each (guards a product rounding up)
    after: Tensor  # [P] int64: i + 1, the first offset from individual i
    base: Tensor  # [K, 1] int64: k * P, island k's first row in the flattened stack
    tau: Tensor  # [2, 1, 1] float32: redraw probabilities of F and CR
    span: Tensor  # [2, 1, 1] float32: a redrawn F is f_lower + u * span; CR is u * 1 + 0
    low: Tensor  # [2, 1, 1] float32
    # 0-dim operands: a Python number costs a call a wrapping tensor (a comparison of [K, P,
    # D] with 1.0 took twice the time of one with a float32 tensor).
    one: Tensor  # int64 1
    wrap: Tensor  # int64 p - 1
    modulus: Tensor  # int64 p
    unit: Tensor  # float32 1.0


def make_tables(k: int, p: int, d: int, tau_f: float, tau_cr: float, f_lower: float,
                f_upper: float, device: torch.device) -> Tables:
    f32 = {"dtype": torch.float32, "device": device}
    return Tables(
        scale=torch.tensor([p - 1, p - 2, p - 3, d], dtype=torch.float64,
                           device=device)[:, None, None],
        cap=torch.tensor([p - 2, p - 3, p - 4, d - 1], dtype=torch.int64,
                         device=device)[:, None, None],
        after=torch.arange(1, p + 1, dtype=torch.int64, device=device),
        base=(torch.arange(k, dtype=torch.int64, device=device) * p)[:, None],
        tau=torch.tensor([tau_f, tau_cr], **f32)[:, None, None],
        span=torch.tensor([f_upper - f_lower, 1.0], **f32)[:, None, None],
        low=torch.tensor([f_lower, 0.0], **f32)[:, None, None],
        one=torch.tensor(1, dtype=torch.int64, device=device),
        wrap=torch.tensor(p - 1, dtype=torch.int64, device=device),
        modulus=torch.tensor(p, dtype=torch.int64, device=device),
        unit=torch.tensor(1.0, **f32),
    )


# The largest float32 below 1: jrand's repair uniform, rounded from float64, stays below 1.
_BELOW_ONE = 1.0 - 2.0**-24


def draws(small: Tensor, fc_old: Tensor, t: Tables) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Everything per individual of one generation, from ``small`` [9, K, P] float64 uniforms
    (F redraw and value, CR redraw and value, three partners, jrand, jrand's repair uniform)
    and the parents' ``fc_old`` [2, K, P] (F and CR). Returns the trials' ``fc`` [2, K, P],
    the partners' ``rows`` [3, K, P] into the stack flattened to ``[K * P, D]``, ``jrand``
    [K, P, 1] and its repair uniform ``u_j`` [K, P, 1]. A dozen small ops in all: at small
    sizes each op's call costs as much as its arithmetic."""
    f32 = small.to(torch.float32)
    fc = torch.where(f32[0:4:2] < t.tau, torch.addcmul(t.low, f32[1:4:2], t.span), fc_old)
    v = torch.minimum((small[4:8] * t.scale).to(torch.int64), t.cap)
    p = t.after.shape[0]
    rows = offsets_(v[:3], p, t.one, t.wrap).add_(t.after).remainder_(t.modulus).add_(t.base)
    return fc, rows, v[3].unsqueeze(-1), f32[8].unsqueeze(-1).clamp_(max=_BELOW_ONE)


def trial_vectors(x: Tensor, rows: Tensor, f: Tensor, cr: Tensor, c: Tensor, jrand: Tensor,
                  u_j: Tensor, lo: float | Tensor, hi: float | Tensor,
                  out: Tensor | None = None) -> Tensor:
    """DE/rand/1/bin trials with bound repair of parents ``x`` [B, P, D], from the
    generation's draws: the partners' ``rows`` [3, B, P] into ``source`` (all of the stack's
    genomes flattened to [K * P, D]; ``x`` when omitted), F and CR [B, P], crossover uniforms
    ``c`` [B, P, D], the forced gene ``jrand`` [B, P, 1] and its repair uniform ``u_j``
    [B, P, 1]. Writes into ``out`` when given. ``c`` is the only input it writes over (its own
    scratch), so eager and compiled runs compute the same thing."""
    return _trials(x, x, rows, f, cr, c, jrand, u_j, lo, hi, out)


def _trials(source: Tensor, x: Tensor, rows: Tensor, f: Tensor, cr: Tensor, c: Tensor,
            jrand: Tensor, u_j: Tensor, lo: float | Tensor, hi: float | Tensor,
            out: Tensor | None, unit: float | Tensor = 1.0) -> Tensor:
    b, p, d = x.shape
    # Partners as whole rows (index_select copies rows; a gather indexes every gene).
    picked = source.reshape(-1, d).index_select(0, rows.reshape(-1)).view(3, b, p, d)
    p0, p1, p2 = picked.unbind(0)
    mutant = p0.addcmul_(f.unsqueeze(-1), p1.sub_(p2))  # x_r1 + F (x_r2 - x_r3), in place

    # One [K, P, D] draw serves crossover and bound repair: a gene is taken from the mutant
    # when c < CR, and given that, u = c / CR is uniform on [0, 1) and independent of the
    # choice, so it is the repair's uniform (drawing a second [K, P, D] tensor cost as much as
    # the rest of the step's arithmetic). Gene jrand is always taken: its u is its own uniform,
    # below 1. (CR is kept off 0 so u stays finite: a weight 0 * inf would be NaN. So CR = 0
    # also takes a gene drawn exactly 0.0: probability 2**-23.)
    u = c.div_(cr.clamp(min=1e-30).unsqueeze(-1))
    u.scatter_(2, jrand, u_j)
    # Choices are 0/1 float weights for lerp, which gives exactly one end at 0 and at 1: on a
    # CPU, where() with a full bool mask costs five times a lerp (and a bool result of a
    # comparison four times a float one).
    take = torch.lt(u, unit, out=p2)  # unit: 1.0 (Tables.unit, a float32 tensor)
    trial = torch.lerp(x, mutant, take, out=mutant)

    # Out-of-box genes: uniform between the parent's gene and the violated bound, i.e.
    # lerp(bound, parent, u); the bound is what clamping gives, so out-of-box is where
    # clamping changed the gene (weight u there, 0 elsewhere). The last clamp only guards
    # lerp's rounding.
    clamped = torch.clamp(trial, lo, hi, out=p1)
    weight = torch.ne(clamped, trial, out=take).mul_(u)
    return torch.lerp(clamped, x, weight, out=clamped if out is None else out).clamp_(lo, hi)


def variation(x: Tensor, small: Tensor, c: Tensor, fc_old: Tensor, t: Tables,
              lo: float | Tensor, hi: float | Tensor) -> tuple[Tensor, Tensor]:
    """One jDE generation of the stack ``x`` [K, P, D]: its trials and their F and CR
    (``fc`` [2, K, P]), from the draws ``small`` [9, K, P] float64 and ``c`` [K, P, D] (see
    :func:`draws`). Pure apart from using ``c`` as scratch: eager and compiled runs compute
    the same thing."""
    fc, rows, jrand, u_j = draws(small, fc_old, t)
    return _trials(x, x, rows, fc[0], fc[1], c, jrand, u_j, lo, hi, None, t.unit), fc


def select_genomes(win: Tensor, trial: Tensor, x: Tensor) -> Tensor:
    """``where(win[..., None], trial, x)`` for float genomes, in three integer passes over
    their bits, ``x ^ ((trial ^ x) * win)``: exact (NaN and -0.0 included), and a half of
    where()'s time on a CPU."""
    bits = torch.int32 if x.dtype == torch.float32 else torch.int64
    xb = x.view(bits)
    out = torch.bitwise_xor(trial.view(bits), xb)
    return out.mul_(win.unsqueeze(-1)).bitwise_xor_(xb).view(x.dtype)


# On a CPU the step's dozen passes over [K, P, D] run over blocks of whole islands of about
# this many bytes, which stay in cache: 20% faster at 8 x 1024 x 1000 on one core. Partners
# come from the same island, so blocks give bit-identical results. A GPU takes all at once.
_CPU_BLOCK_BYTES = 1 << 22


def _islands_per_block(x: Tensor) -> int:
    k = x.shape[0]
    if x.device.type != "cpu" or k == 0:
        return k
    return max(1, _CPU_BLOCK_BYTES // max(1, x.numel() // k * x.element_size()))


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` through torch.compile, falling back to ``fn`` itself (one warning) wherever
    compiling or running the compiled code fails: no compiler, an old torch, a platform
    inductor does not support. Compiled results may differ from eager ones in the last bit
    (fused multiply-adds); each mode is deterministic on its own."""
    state: dict[str, Callable[..., Any]] = {}

    def run(*args: Any) -> Any:
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

    def __init__(self, config: DEConfig, genome: RealGenome, dtype: str = "float32") -> None:
        """``config`` is the run spec's ``algorithm`` (it holds every limit); ``genome`` its
        ``problem.genome``, which must be real; ``dtype`` the run's."""
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.f_init, self.cr_init = config.f_init, config.cr_init
        self.tau_f, self.tau_cr = config.tau_f, config.tau_cr
        self.f_lower, self.f_upper = config.f_lower, config.f_upper
        self.extra_defaults: dict[str, float] = {"F": self.f_init, "CR": self.cr_init}
        self._compile = _compiled(variation) if config.compile else None
        # Per-shape constants (with the islands a CPU block takes), the [K, P, D] uniforms'
        # buffer (scratch: never returned), the islands' ids as a column, and the last step's
        # F and CR with the views of them it returned: kept from one step to the next (each
        # tensor made, or op called, per step costs microseconds: at small sizes the step is a
        # few hundred). Calls are never concurrent for one object.
        self._tables: dict[tuple[Any, ...], tuple[Tables, int]] = {}
        self._scratch: tuple[Uniforms, Uniforms] | None = None
        self._born: tuple[Tensor, Tensor] | None = None
        self._fc: tuple[Tensor, Tensor, Tensor] | None = None

    def __repr__(self) -> str:
        return (f"DifferentialEvolution(dim={self.dim}, pop={self.pop_size}, "
                f"F=[{self.f_lower}, {self.f_upper}], tau=({self.tau_f}, {self.tau_cr}))")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def _constants(self, x: Tensor) -> tuple[Tables, int]:
        """The tables of ``x``'s shape, and the islands a CPU block takes."""
        key = (*x.shape, x.device)
        got = self._tables.get(key)
        if got is None:
            if len(self._tables) > 8:  # the islands hosted changed many times: start afresh
                self._tables.clear()
            got = self._tables[key] = (make_tables(*x.shape, self.tau_f, self.tau_cr,
                                                   self.f_lower, self.f_upper, x.device),
                                       _islands_per_block(x))
        return got

    def _uniforms(self, g: torch.Generator, x: Tensor) -> tuple[Tensor, Tensor]:
        """The generation's two draws (:class:`~islandsync.search.algorithms.base.Uniforms`,
        in buffers kept while the shape stays): the [9, K, P] float64 per individual, then
        the [K, P, D] float32."""
        u = self._scratch
        if u is None or u[1].out.shape != x.shape or u[1].out.device != x.device:
            k, p, _ = x.shape
            u = self._scratch = (Uniforms((9, k, p), x.device, torch.float64),
                                 Uniforms(x.shape, x.device))
        return u[0].draw(g), u[1].draw(g)

    def _parents_fc(self, state: IslandState) -> Tensor:
        """The parents' F and CR as one [2, K, P] tensor: the last step's own where they are
        still the views it returned (states are replaced, never changed in place), so the
        usual step stacks nothing."""
        f, cr = state.extra["F"], state.extra["CR"]
        last = self._fc
        if last is not None and last[1] is f and last[2] is cr:
            return last[0]
        return torch.stack((f, cr))

    def _born_column(self, island_ids: Tensor) -> Tensor:
        """``island_ids`` as an int64 [K, 1] column (a new genome's origin), kept while the
        stack's ids tensor stays the same."""
        born = self._born
        if born is None or born[0] is not island_ids:
            born = self._born = (island_ids, island_ids.to(torch.int64).unsqueeze(-1))
        return born[1]

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        # The arithmetic around the fitness call runs in inference mode: no autograd
        # bookkeeping in each of its ~65 torch calls, 8% of a small generation. The fitness
        # runs outside it, as before. The step's tensors are inference tensors: they may be
        # read and computed from anywhere, but torch refuses to change them in place outside
        # inference mode (and states are replaced, never changed in place).
        with torch.inference_mode():
            trial, fc, fc_old = self._offspring(state, generator)
        trial_scores = evaluate(trial)
        with torch.inference_mode():
            return self._select(state, island_ids, trial, trial_scores, fc, fc_old)

    def _offspring(self, state: IslandState, g: torch.Generator
                   ) -> tuple[Tensor, Tensor, Tensor]:
        """The generation's trials, their F and CR, and the parents' F and CR."""
        x = state.genomes
        k, p, d = x.shape
        lo, hi = self.box.bounds(x.device)
        if p < 4:
            raise ConfigError(f"de: needs pop >= 4 to draw 3 distinct partners, got {p}")
        t, step = self._constants(x)
        # Two draws a generation: every per-individual uniform in one [9, K, P] tensor (at
        # small sizes each call's overhead counts), and the [K, P, D] one. The arithmetic
        # after them is pure (and can be compiled: ``compile`` in the settings).
        small, c = self._uniforms(g, x)
        fc_old = self._parents_fc(state)
        if self._compile is not None:
            trial, fc = self._compile(x, small, c, fc_old, t, lo, hi)
        elif step >= k:
            trial, fc = variation(x, small, c, fc_old, t, lo, hi)
        else:  # CPU, big islands: a few islands at a time, so each pass stays in cache
            fc, rows, jrand, u_j = draws(small, fc_old, t)
            trial = torch.empty_like(x)
            f, cr = fc
            for a in range(0, k, step):
                b = slice(a, a + step)
                _trials(x, x[b], rows[:, b], f[b], cr[b], c[b], jrand[b], u_j[b], lo, hi,
                        trial[b], t.unit)
        return self.box.repair(trial), fc, fc_old  # integer genes, after the bound repair

    def _select(self, state: IslandState, island_ids: Tensor, trial: Tensor,
                trial_scores: Tensor, fc: Tensor, fc_old: Tensor) -> IslandState:
        """Greedy one-to-one selection: a trial replaces its parent when it scores <= it."""
        if trial_scores.dtype != state.scores.dtype:
            trial_scores = trial_scores.to(state.scores.dtype)
        win = trial_scores <= state.scores
        fc = torch.where(win, fc, fc_old)
        extra = {"F": fc[0], "CR": fc[1]}
        self._fc = (fc, extra["F"], extra["CR"])
        return IslandState(
            genomes=select_genomes(win, trial, state.genomes),
            scores=torch.where(win, trial_scores, state.scores),
            # Ids are left to the engine, which hashes genomes only where ids are read
            # (migration, snapshots): hashing every trial was half the step's time.
            ids=None,
            origin=torch.where(win, self._born_column(island_ids), state.origin),
            extra=extra,
        )

__all__ = ["DifferentialEvolution", "Tables", "distinct_indices", "draws", "make_tables",
           "partners", "select_genomes", "trial_vectors", "variation"]
