"""CMA-ES (Hansen & Ostermeier 2001) with IPOP (Auger & Hansen 2005) or BIPOP (Hansen 2009)
restarts, vectorised over islands: each island's mean, step size, covariance and paths are
rows of ``[K, ...]`` tensors, and one batched ``torch.linalg.eigh`` on ``[K, D, D]`` serves
every island's sampling.

The update is pycma's ``purecma`` (its ``CMAES.tell``) term for term: positive recombination
weights ``ln((lambda+1)/2) - ln i`` over the best ``mu = lambda // 2``, cumulation for C and
sigma, the ``hsig`` stall of the rank-one path, rank-one plus rank-mu covariance update, and
its step-size rule ``sigma *= exp(min(1, cs/damps (|ps|^2/D - 1)/2))``; the eigensystem is
refreshed every generation (purecma's lazy gap set to zero), or with ``lazy_eigen`` every
``max(1, floor(1 / (10 D (c1 + cmu))))`` generations of an island (Hansen's tutorial; only
the islands due are decomposed, in one batch, and each island keeps the eigensystem it
samples from as state, so that a resumed island samples as the uninterrupted one). With
``active`` (the setting that flags and named portfolios give, see ``config.TUNED_SETTINGS``)
the covariance update is active CMA-ES as pycma's default: negative weights for the worst
lambda - mu samples (pycma's ``RecombinationWeights``), their steps scaled to Mahalanobis
length sqrt(D), none for injected samples (pycma's ``CMA_active_injected = 0``). An engine step runs
``ceil(step_evals / lambda)`` generations one after another, so that a CMA-ES island spends
about as many evaluations a step as a 64-point SHADE or DE island beside it. Above
``full_max_dim`` (or with ``diagonal``) the covariance is diagonal: sep-CMA-ES (Ros & Hansen
2008), whose c1 and cmu are scaled by (D + 2) / 3, in O(D) a sample.

State: the island tensors (``IslandState.island``, see :class:`~islandsync.config.
CMAESConfig`) hold the distribution; the population (``pop`` rows) holds the best points the
island has seen, which is what migration, elites and checkpoints see.

Box: a sample outside it is clamped onto it, and a migrant arrives from elsewhere; both enter
the update as Hansen's injected solutions (Hansen 2011, "Injecting external solutions into
CMA-ES"): their step ``(x - m) / sigma`` is shortened to Mahalanobis length at most
``sqrt(D) + 2D / (D + 2)``. Migrants (population rows whose ``injected`` flag is set, which
the engine's migration sets) replace the worst samples of the next generation, keeping
their scores, so they steer the mean and covariance without being re-evaluated.

Restarts: an island restarts from a uniform mean and C = I when its generation's scores are
flat (spread <= tol_fun), its step is converged (sigma * max sqrt(C_ii) < tol_x * sigma0), C's
condition number passes 1e14, its best has not improved for ``100 + 100 D^1.5 / lambda``
generations (pycma's tolstagnation), or anything is not finite. IPOP (``restart_mode``
"ipop"): lambda doubles, up to ``samples * 2**max_doublings``, sigma0 stays. BIPOP ("bipop",
pycma's ``fmin(bipop=True)``): each island counts the evaluations of its two regimes; a
restart goes to the large regime (lambda doubled from its last large run's, sigma0) when the
small regime, its first run included, has spent at least as many, and otherwise to a small
run with lambda_s = floor(lambda_def (lambda_l / lambda_def)^(u1^2)) (lambda_l: the last
large run's) and sigma0 10^(-2 u2), u1, u2 uniform on [0, 1); a small run also stops at half
the large regime's evaluations. The stack samples the largest lambda of its islands; an
island with a smaller one leaves its surplus samples out of its update (they are evaluated
and counted, and may join its best points): islands of one worker that restarted different
numbers of times spend up to ``2**max_doublings`` times the evaluations their own lambda
needs. Regimes and budgets count each island's own lambda, as a lone run would.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from islandsync.config import CMAESConfig, RealGenome
from islandsync.config.strategies import default_samples
from islandsync.search.state import IslandState
from islandsync.search.algorithms.base import Evaluate, check_settings
from islandsync.search.algorithms.box import Box
from islandsync.search.algorithms.sampling import clip_length, inject_samples, keep_best

_F64 = torch.float64
_MAX_CONDITION = 1e14


class Params(NamedTuple):
    """Strategy parameters of each island's lambda, ``[K]`` float64 (weights ``[K, N]``)."""

    weights: Tensor  # [K, N]: positive over the best mu, 0 beyond; each row sums to 1
    cweights: Tensor  # [K, N]: the covariance's: ``weights``, negative beyond mu if active
    mueff: Tensor
    cc: Tensor
    cs: Tensor
    c1: Tensor
    cmu: Tensor
    damps: Tensor


def params(lam: Tensor, n: int, d: int, diagonal: bool, active: bool = False) -> Params:
    """purecma's ``CMAESParameters`` for each island's lambda ``lam`` [K], as tensors, with
    weights padded to ``n`` samples; sep-CMA-ES's learning rates when ``diagonal``. With
    ``active``, the covariance's weights beyond mu are negative, as pycma's
    ``RecombinationWeights.finalize_negative_weights`` (Hansen's tutorial, 2016, eq. 53):
    their sum is -min(1 + c1/cmu, 1 + 2 mueff-/(mueff + 2), (1 - c1 - cmu)/(D cmu))."""
    lam = lam.to(_F64)
    mu = torch.floor(lam / 2)
    i = torch.arange(n, dtype=_F64, device=lam.device)
    raw = torch.log(lam / 2 + 0.5)[:, None] - torch.log(i + 1)
    w = torch.where(i < mu[:, None], raw, torch.zeros_like(raw))
    w = w / w.sum(1, keepdim=True)
    mueff = 1.0 / (w * w).sum(1)
    cc = (4 + mueff / d) / (d + 4 + 2 * mueff / d)
    cs = (mueff + 2) / (d + mueff + 5)
    c1 = 2 / ((d + 1.3) ** 2 + mueff)
    cmu = torch.minimum(1 - c1, 2 * (mueff - 2 + 1 / mueff) / ((d + 2) ** 2 + mueff))
    if diagonal:  # Ros & Hansen 2008: a diagonal learns (D + 2) / 3 times faster
        c1 = c1 * (d + 2) / 3
        cmu = torch.minimum(1 - c1, cmu * (d + 2) / 3)
    damps = 2 * mueff / lam + 0.3 + cs
    cw = w
    if active:
        neg = torch.where((i >= mu[:, None]) & (i < lam[:, None]), raw, torch.zeros_like(raw))
        total = -neg.sum(1)  # > 0 for every lambda >= 4
        mueff_neg = total ** 2 / (neg * neg).sum(1).clamp(min=1e-300)
        cmu_pos = cmu.clamp(min=1e-300)
        alpha = torch.minimum(torch.minimum(1 + c1 / cmu_pos, 1 + 2 * mueff_neg / (mueff + 2)),
                              (1 - c1 - cmu) / (d * cmu_pos))
        cw = w + neg * (alpha / total.clamp(min=1e-300))[:, None]
    return Params(w, cw, mueff, cc, cs, c1, cmu, damps)


class Eigen(NamedTuple):
    """C = B diag(ev) B^T for every island; ``basis`` None for a diagonal C (then ev = C)."""

    sqrt_ev: Tensor  # [K, D]
    basis: Tensor | None  # [K, D, D]


def eigen(cov: Tensor) -> Eigen:
    if cov.dim() == 2:
        return Eigen(cov.clamp(min=0).sqrt(), None)
    sym = (cov + cov.transpose(1, 2)) / 2  # as purecma's _enforce_symmetry
    ev, basis = torch.linalg.eigh(sym)
    return Eigen(ev.clamp(min=0).sqrt(), basis)


def whiten(y: Tensor, e: Eigen) -> Tensor:
    """C^(-1/2) y for ``y`` [K, ..., D] (each island's own C)."""
    if e.basis is None:
        return y / e.sqrt_ev.view(e.sqrt_ev.shape[0], *([1] * (y.dim() - 2)), -1)
    shape = y.shape
    flat = y.reshape(shape[0], -1, shape[-1])
    b = e.basis
    out = ((flat @ b) / e.sqrt_ev[:, None]) @ b.transpose(1, 2)
    return out.reshape(shape)


def clip_steps(x: Tensor, mean: Tensor, sigma: Tensor, e: Eigen, mask: Tensor) -> Tensor:
    """Hansen (2011): the points of ``x`` [K, N, D] where ``mask`` [K, N] with their step from
    the mean shortened to Mahalanobis length ``sqrt(D) + 2D / (D + 2)``; the others as they
    are (pycma's ``repair_genotype``)."""
    y = (x - mean[:, None]) / sigma[:, None, None]
    factor = torch.where(mask, clip_length(whiten(y, e).norm(dim=-1), x.shape[-1]), 1.0)
    return mean[:, None] + sigma[:, None, None] * y * factor[..., None]


def update(island: dict[str, Tensor], x: Tensor, f: Tensor, e: Eigen, diagonal: bool,
           active: bool = False, injected: Tensor | None = None) -> dict[str, Tensor]:
    """One CMA-ES update of every island from its samples ``x`` [K, N, D] float64 and scores
    ``f`` [K, N] (minimised; samples at or beyond an island's lambda are ignored), ``e`` the
    eigensystem of the C they were drawn from. purecma's ``tell``, term for term. Returns the
    new mean, sigma, cov, pc, ps and gen; the other island tensors as they were.

    ``active``: active CMA-ES (Jastrebski & Arnold 2006; Hansen's tutorial 2016, eq. 47):
    the worst samples' outer products are subtracted from C, each scaled to Mahalanobis
    length sqrt(D) so that C stays positive definite; as pycma (``CMA_active_injected = 0``),
    an ``injected`` [K, N] sample (a migrant, a repaired point) gets no negative weight."""
    mean, sigma, cov = island["mean"], island["sigma"], island["cov"]
    lam = island["lam"]
    k, n, d = x.shape
    par = params(lam, n, d, diagonal, active)
    idx = torch.arange(n, device=x.device)
    ranked = torch.where(idx < lam[:, None], f.to(_F64), torch.inf)
    order = torch.sort(ranked, dim=1, stable=True).indices
    xs = torch.gather(x, 1, order[..., None].expand(-1, -1, d))
    new_mean = (par.weights[..., None] * xs).sum(1)
    y = new_mean - mean
    cs, cc, mueff = par.cs[:, None], par.cc[:, None], par.mueff[:, None]
    ps = (1 - cs) * island["ps"] + (cs * (2 - cs) * mueff).sqrt() / sigma[:, None] * whiten(y, e)
    gen = island["gen"] + 1
    norm2 = (ps * ps).sum(1)
    hsig = (norm2 / d / (1 - (1 - par.cs) ** (2 * gen.to(_F64))) < 2 + 4 / (d + 1)).to(_F64)
    pc = (1 - cc) * island["pc"] + (cc * (2 - cc) * mueff).sqrt() / sigma[:, None] \
        * hsig[:, None] * y
    dy = (xs - mean[:, None]) / sigma[:, None, None]
    cw = par.cweights
    if active:
        negative = cw < 0
        if injected is not None:
            cw = torch.where(negative & torch.gather(injected, 1, order), 0.0, cw)
        length2 = whiten(dy, e).pow(2).sum(-1).clamp(min=1e-300)
        scale = torch.where(negative, d / length2, 1.0)
    else:
        scale = torch.ones_like(cw)
    c1a = par.c1 * (1 - (1 - hsig) * par.cc * (2 - par.cc))
    keep = 1 - c1a - par.cmu * cw.sum(1)
    wdy = dy * (par.cmu[:, None] * cw * scale)[..., None]
    if diagonal:
        cov = keep[:, None] * cov + par.c1[:, None] * pc * pc + (wdy * dy).sum(1)
    else:
        cov = keep[:, None, None] * cov + par.c1[:, None, None] * pc[:, :, None] * pc[:, None] \
            + wdy.transpose(1, 2) @ dy
    sigma = sigma * torch.exp(torch.clamp(par.cs / par.damps * (norm2 / d - 1) / 2, max=1.0))
    return {**island, "mean": new_mean, "sigma": sigma, "cov": cov, "pc": pc, "ps": ps,
            "gen": gen}


def fresh_island(k: int, d: int, sigma0: float, lam0: int, diagonal: bool,
                 device: torch.device, bipop: bool = False,
                 lazy: bool = False) -> dict[str, Tensor]:
    """A distribution's initial tensors (mean zero: the caller sets it); with ``bipop`` its
    regime (0: the first run and small ones, 1: large), the large regime's lambda and each
    regime's evaluations; with ``lazy`` (full C) the eigensystem of C = I."""
    f = {"dtype": _F64, "device": device}
    i = {"dtype": torch.int64, "device": device}
    cov = torch.ones(k, d, **f) if diagonal else torch.eye(d, **f).expand(k, d, d).clone()
    out = {"mean": torch.zeros(k, d, **f), "sigma": torch.full((k,), sigma0, **f), "cov": cov,
           "pc": torch.zeros(k, d, **f), "ps": torch.zeros(k, d, **f),
           "gen": torch.zeros(k, **i), "lam": torch.full((k,), lam0, **i),
           "restarts": torch.zeros(k, **i), "best": torch.full((k,), torch.inf, **f),
           "stall": torch.zeros(k, **i)}
    if bipop:
        out |= {"regime": torch.zeros(k, **i), "lam_large": torch.full((k,), lam0, **i),
                "small_evals": torch.zeros(k, **i), "large_evals": torch.zeros(k, **i)}
    if lazy and not diagonal:
        out |= {"eig_sqrt": torch.ones(k, d, **f), "eig_basis": cov.clone()}
    return out


class CMAES:
    """CMA-ES with IPOP restarts on real genomes. See the module docstring."""

    name = "cmaes"
    Config = CMAESConfig

    def __init__(self, config: CMAESConfig, genome: RealGenome, dtype: str = "float32") -> None:
        check_settings(self, config, genome)
        self.config = config
        self.dim, self.lower, self.upper = genome.dim, genome.lower, genome.upper
        self.box = Box(genome, dtype)
        self.pop_size = config.pop
        self.diagonal = config.is_diagonal(genome.dim)
        self.samples = config.samples or default_samples(genome.dim)
        self.max_samples = self.samples * 2 ** config.max_doublings if config.restarts \
            else self.samples
        # Per-gene bounds: sigma0 of the mean width, an isotropic start whose covariance
        # learns the genes' scales (pycma would rescale by CMA_stds).
        self.sigma0 = config.sigma_init * self.box.width
        self.updates = max(1, math.ceil(config.step_evals / self.samples))
        self.bipop = config.restart_mode == "bipop"
        self.lazy = config.lazy_eigen and not self.diagonal
        # The gap shrinks as lambda grows (cmu grows with mueff): where the first run's is one
        # generation, every run's is, and no island needs the per-island schedule.
        self.lazy_gaps = self.lazy and int(self._gaps(torch.tensor([self.samples]))[0]) > 1
        self.extra_defaults: dict[str, float] = {"injected": 1.0}

    def __repr__(self) -> str:
        return (f"CMAES(dim={self.dim}, pop={self.pop_size}, lambda={self.samples}, "
                f"updates={self.updates}, active={self.config.active}, "
                f"diagonal={self.diagonal}, restarts={self.config.restart_mode}, "
                f"lazy_eigen={self.lazy}, sigma0={self.sigma0:.4g})")

    def init(self, island_ids: Tensor, generator: torch.Generator) -> Tensor:
        return self.box.uniform(generator, (island_ids.shape[0], self.pop_size, self.dim))

    def start(self, state: IslandState) -> IslandState:
        """The first distribution: centred on each island's best initial point."""
        k, _, d = state.genomes.shape
        island = fresh_island(k, d, self.sigma0, self.samples, self.diagonal,
                              state.genomes.device, self.bipop, self.lazy)
        best = state.scores.argmin(1)
        island["mean"] = state.genomes[torch.arange(k), best].to(_F64)
        island["best"] = state.scores.min(1).values.to(_F64)
        extra = {name: torch.zeros_like(t) for name, t in state.extra.items()}
        return state._replace(island=island, extra=extra)

    def step(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
             generator: torch.Generator) -> IslandState:
        """``updates`` generations (see ``CMAESConfig.step_evals``), one after another, each
        of every island at once."""
        for _ in range(self.updates):
            state = self._generation(state, island_ids, evaluate, generator)
        return state

    def _generation(self, state: IslandState, island_ids: Tensor, evaluate: Evaluate,
                    g: torch.Generator) -> IslandState:
        k, _, d = state.genomes.shape
        st, n, refresh = self._checked(state)
        st, e = self._eigen(st, refresh)
        z = torch.randn((k, n, d), generator=g, device=g.device, dtype=_F64)
        y = z * e.sqrt_ev[:, None]
        if e.basis is not None:
            y = y @ e.basis.transpose(1, 2)
        raw = st["mean"][:, None] + st["sigma"][:, None, None] * y
        lo, hi = self.box.bounds(raw.device, _F64)
        # Clamped onto the box, integer genes rounded: a moved sample enters the update as
        # an injected one, its step clipped. Moved is judged in float64: float32 genomes
        # differ from their float64 sample by rounding alone, which is no repair.
        clamped = raw.clamp(lo, hi)
        repaired = (self.box.repair(clamped) != raw).any(-1)
        genomes = self.box.repair(clamped.to(state.genomes.dtype))
        f = evaluate(genomes).to(state.scores.dtype)
        x = genomes.to(_F64)
        x, fu, replaced = inject_samples(state, x, f, st["lam"])
        x = clip_steps(x, st["mean"], st["sigma"], e, repaired | replaced)
        island = update(st, x, fu, e, self.diagonal, self.config.active, repaired | replaced)
        island = self._restart(island, fu, e, g)
        # Surplus samples (beyond an island's lambda) stay out of its update but were
        # evaluated all the same: they may join its best points.
        out = keep_best(state, genomes, f, ~replaced, island_ids)
        return out._replace(island=island)

    def _checked(self, state: IslandState) -> tuple[dict[str, Tensor], int, Tensor | None]:
        """The island state as this step may use it, the batch's size (lambda's largest) and,
        with lazy eigen, which islands refresh their eigensystem now (None: every island).

        It came from a checkpoint, which the bucket may have garbled, or from a run that
        broke down numerically: lambda (and BIPOP's counters) are kept to what this run can
        ask for (a forged 10**15 must not size the batch), and an island whose distribution
        is not finite (or whose sigma is not positive) starts afresh at its best point,
        before anything is sampled (eigh refuses NaN)."""
        st = {**state.island, "lam": state.island["lam"].clamp(self.samples, self.max_samples)}
        if self.bipop:
            st |= {"regime": st["regime"].clamp(0, 1),
                   "lam_large": st["lam_large"].clamp(self.samples, self.max_samples),
                   **{n: st[n].clamp(0, 2 ** 53) for n in ("small_evals", "large_evals")}}
        k = st["lam"].shape[0]
        ok = torch.isfinite(st["sigma"]) & (st["sigma"] > 0) & ~torch.isnan(st["best"])
        for name in ("mean", "cov", "pc", "ps", *(("eig_sqrt", "eig_basis") if self.lazy else ())):
            ok &= torch.isfinite(st[name].reshape(k, -1)).all(1)
        refresh = None
        if self.lazy_gaps:  # a fresh island (gen 0) decomposes its new C at once
            refresh = (st["gen"] % self._gaps(st["lam"]) == 0) | ~ok
        n, broken = torch.stack([st["lam"].max(), (~ok).sum()]).tolist()  # one host sync
        if broken:
            fresh = self.start(state).island
            fresh["lam"] = st["lam"]
            st = {name: torch.where(ok.view(k, *([1] * (t.dim() - 1))), t, fresh[name])
                  for name, t in st.items()}
        return st, int(n), refresh

    def _gaps(self, lam: Tensor) -> Tensor:
        """Lazy eigen's generations between decompositions for lambdas ``lam`` [K]:
        max(1, floor(1 / (10 D (c1 + cmu)))), Hansen's tutorial."""
        d = self.dim
        par = params(lam, self.max_samples, d, False, self.config.active)
        return torch.floor(1 / (10 * d * (par.c1 + par.cmu))).clamp(min=1).to(torch.int64)

    def _eigen(self, st: dict[str, Tensor],
               refresh: Tensor | None) -> tuple[dict[str, Tensor], Eigen]:
        """C's eigensystem for this generation's samples: every island's, decomposed now
        (``refresh`` None); with lazy eigen the one an island holds, decomposed anew only
        where ``refresh`` (one batched eigh of those islands' C), and held for the next
        generations."""
        k = st["lam"].shape[0]
        count = k if refresh is None else int(refresh.sum())  # a host sync, lazy gaps' only
        if count == k:
            e = eigen(st["cov"])
            if not self.lazy:
                return st, e
        elif count == 0:
            return st, Eigen(st["eig_sqrt"], st["eig_basis"])
        else:
            rows = refresh.nonzero().squeeze(1)
            part = eigen(st["cov"][rows])
            e = Eigen(st["eig_sqrt"].index_copy(0, rows, part.sqrt_ev),
                      st["eig_basis"].index_copy(0, rows, part.basis))
        return {**st, "eig_sqrt": e.sqrt_ev, "eig_basis": e.basis}, e

    def _restart(self, island: dict[str, Tensor], f: Tensor, e: Eigen,
                 g: torch.Generator) -> dict[str, Tensor]:
        """Stagnated islands start afresh, each with lambda and sigma0 of its restart mode
        (IPOP: lambda doubled; BIPOP: see :meth:`_bipop`). See the module docstring."""
        c = self.config
        lam, k, d = island["lam"], *island["mean"].shape
        live = torch.arange(f.shape[1], device=f.device) < lam[:, None]
        fl = f.to(_F64)
        gen_best = torch.where(live, fl, torch.inf).min(1).values
        spread = torch.where(live, fl, -torch.inf).max(1).values - gen_best
        improved = gen_best < island["best"] - c.tol_fun
        best = torch.minimum(island["best"], gen_best)
        stall = torch.where(improved, 0, island["stall"] + 1)
        sigma, cov = island["sigma"], island["cov"]
        diag = cov if cov.dim() == 2 else torch.diagonal(cov, dim1=1, dim2=2)
        width = sigma * diag.clamp(min=0).max(1).values.sqrt()
        cond = (e.sqrt_ev.max(1).values / e.sqrt_ev.min(1).values.clamp(min=1e-300)) ** 2
        finite = torch.isfinite(island["mean"]).all(1) & torch.isfinite(sigma) \
            & torch.isfinite(cov.reshape(k, -1)).all(1)
        stuck = (spread <= c.tol_fun) | (width < c.tol_x * self.sigma0) \
            | (cond > _MAX_CONDITION) | (stall > 100 + 100 * d ** 1.5 / lam) \
            | (width > 1e3 * self.box.max_width)
        out = {**island, "best": best, "stall": stall}
        if self.bipop:
            out = _charge(out)
            # pycma: a small run stops at half the large regime's evaluations so far.
            stuck |= (out["regime"] == 0) & (out["large_evals"] > 0) \
                & (2 * out["gen"] * lam >= out["large_evals"])
        again = ~finite | (stuck & c.restarts)
        # Drawn every generation, used where an island restarts: the stream does not depend
        # on which islands restart.
        u = torch.rand((k, d), generator=g, device=g.device, dtype=_F64)
        new = fresh_island(k, d, self.sigma0, 0, self.diagonal, u.device, False, self.lazy)
        lo, hi = self.box.bounds(u.device, _F64)
        new["mean"] = lo + (hi - lo) * u
        new["lam"] = torch.clamp(lam * 2, max=self.max_samples) if c.restarts else lam
        new["restarts"] = island["restarts"] + 1
        if self.bipop:
            nxt = self._bipop(out, torch.rand((k, 2), generator=g, device=g.device,
                                              dtype=_F64))
            # Without restarts only a broken island starts afresh: in its regime, as it was.
            new |= nxt if c.restarts else {n: out[n] for n in nxt if n not in ("lam", "sigma")}
        return {name: torch.where(again.view(k, *([1] * (t.dim() - 1))), new[name], t)
                for name, t in out.items()}

    def _bipop(self, island: dict[str, Tensor], u: Tensor) -> dict[str, Tensor]:
        """The next run of each island were it to restart now (Hansen 2009; pycma's ``fmin``
        with ``bipop``): the large regime when the small one (the first run included) has
        spent at least as many evaluations, lambda doubled from its last large run's, sigma0;
        otherwise a small run, lambda_s = floor(lambda_def (lambda_l / lambda_def)^(u1^2))
        with lambda_l the last large run's lambda (pycma's popsize0 * incpopsize**(large
        runs); Hansen's (lambda_l / 2) where lambda_l is the next one), sigma0 10^(-2 u2)."""
        large = island["small_evals"] >= island["large_evals"]
        lam_large = torch.where(large, torch.clamp(island["lam_large"] * 2,
                                                   max=self.max_samples), island["lam_large"])
        ratio = lam_large.to(_F64) / self.samples
        lam_small = torch.floor(self.samples * ratio ** (u[:, 0] ** 2)).to(torch.int64)
        small_sigma = self.sigma0 * 10 ** (-2 * u[:, 1])
        return {"lam": torch.where(large, lam_large, torch.minimum(lam_small, lam_large)),
                "sigma": torch.where(large, self.sigma0, small_sigma),
                "regime": large.to(torch.int64), "lam_large": lam_large,
                "small_evals": island["small_evals"], "large_evals": island["large_evals"]}


def _charge(island: dict[str, Tensor]) -> dict[str, Tensor]:
    """BIPOP's budgets: this generation's lambda evaluations to its run's regime."""
    large = island["regime"] == 1
    lam = island["lam"]
    return {**island, "small_evals": island["small_evals"] + torch.where(large, 0, lam),
            "large_evals": island["large_evals"] + torch.where(large, lam, 0)}


__all__ = ["CMAES", "Eigen", "Params", "clip_steps", "eigen", "params", "update"]
