"""One stack: K islands of one algorithm on one device, stepped as one ``[islands, pop, ...]``
tensor (:class:`Stack`). The worker's :class:`~islandsync.worker.engine.Engine` holds one per
(algorithm, device) pair.

A stack owns its tensors and its random generator, nothing else: it evaluates (in blocks on a
CPU, with non-finite scores counted and folded to +inf), adds islands fresh or from a
checkpoint (checked against the run's shapes first), steps, migrates, and takes host
snapshots for checkpoints.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import numpy as np
import torch

from islandsync.bucket.checkpoints import IslandSnapshot
from islandsync.config import RunSpec, genome_dtype
from islandsync.config.objective import score_sign
from islandsync.errors import FitnessError, IslandSyncError
from islandsync.search import population
from islandsync.search.algorithms import IslandState, initial_state, make_algorithm
from islandsync.search.algorithms.box import DTYPES
from islandsync.search.per_solution import wrong_shape
from islandsync.search.problems import Problem


class Stack:
    """K islands of one algorithm advancing in one vectorised step on one device.

    Randomness: one generator for the whole stack, re-seeded whenever the set of islands
    changes from (run seed, each island's id and generation). So the same seed, device and
    placement history give the same search, and a checkpoint needs no RNG bytes to resume.
    """

    def __init__(self, spec: RunSpec, problem: Problem, device: torch.device,
                 config: Any = None) -> None:
        self.spec = spec
        self.problem = problem
        self.device = device
        self.config = spec.algorithms[0] if config is None else config
        #: This device's genome dtype: the run's, or for "auto" the device's own.
        self.dtype = genome_dtype(spec.dtype, device.type)
        self.algorithm = make_algorithm(self.config, spec.problem.genome, self.dtype)
        self.score_dtype = DTYPES[self.dtype] if spec.problem.genome.kind == "real" \
            else torch.float32
        self.sign = score_sign(spec.problem.direction)
        self.generator = torch.Generator(device=device)
        self.island_ids = torch.empty(0, dtype=torch.int64, device=device)
        self._state: IslandState | None = None
        self.generations: dict[int, int] = {}
        self.evals: dict[int, int] = {}
        self.nan_counts: dict[int, int] = {}
        self._evaluating: list[int] = []
        self._per_island = 0  # evaluations per island during the current call
        self._bad: torch.Tensor | None = None  # NaN/inf per row of _evaluating, on device
        self._bad_rows: torch.Tensor | None = None  # the same, per [row, genome slot]
        self._islands_of: tuple[torch.Tensor, list[int]] | None = None
        # +inf as a 0-dim tensor: a comparison with a Python number costs a wrapping tensor.
        self._inf = torch.tensor(_INF, dtype=self.score_dtype, device=device)

    # -- bookkeeping ---------------------------------------------------------------------

    @property
    def state(self) -> IslandState | None:
        """Every hosted island, with ids. A step leaves ids to be computed here, when they are
        first read after it (migration, snapshots, anyone else), and kept until the next."""
        if self._state is not None and self._state.ids is None:
            self._state = population.with_ids(self._state)
        return self._state

    @state.setter
    def state(self, value: IslandState | None) -> None:
        self._state = value

    @property
    def islands(self) -> list[int]:
        # Read every step: a device-to-host copy only when island_ids is a new tensor.
        cached = self._islands_of
        if cached is None or cached[0] is not self.island_ids:
            cached = self._islands_of = (self.island_ids,
                                         [int(i) for i in self.island_ids.tolist()])
        return list(cached[1])

    def __len__(self) -> int:
        return int(self.island_ids.numel())

    def _reseed(self) -> None:
        text = f"{self.spec.seed}|" + ",".join(
            f"{i}:{self.generations[i]}" for i in sorted(self.generations)
        )
        self.generator.manual_seed(_seed_of(text))

    def _evaluate(self, genomes: torch.Tensor) -> torch.Tensor:
        """Fitness for ``[K, N, ...]`` genomes as minimisation scores; NaN/inf become +inf
        (the worst) and are counted per island."""
        k, n = genomes.shape[:2]
        self._per_island += n
        try:
            flat = genomes.reshape(k * n, *genomes.shape[2:])
            rows = _rows_per_block(flat)
            if rows >= k * n:
                raw = self.problem.evaluate(flat)
            else:  # CPU, a big batch: blocks that stay in cache (rastrigin 1.8x faster)
                raw = torch.cat([torch.as_tensor(self.problem.evaluate(flat[a:a + rows]),
                                                 device=genomes.device)
                                 for a in range(0, k * n, rows)])
        except Exception as err:
            gens = sorted({self.generations[i] for i in self._evaluating})
            raise FitnessError(
                f"fitness function raised on islands {self._evaluating} at generation "
                f"{gens[0] if len(gens) == 1 else gens}: {type(err).__name__}: {err}"
            ) from err
        if not isinstance(raw, torch.Tensor) or raw.device != genomes.device:
            raw = torch.as_tensor(raw, device=genomes.device)
        if raw.shape != (k * n,):
            raise FitnessError(wrong_shape(tuple(raw.shape), (k * n, *genomes.shape[2:])))
        scores = raw.reshape(k, n)
        if scores.dtype != self.score_dtype:
            scores = scores.to(self.score_dtype)
        if self.sign != 1.0:
            scores = scores * self.sign
        # NaN, +inf and -inf all become +inf, so afterwards "== inf" counts exactly them.
        scores = torch.nan_to_num(scores, nan=_INF, posinf=_INF, neginf=_INF)
        # Counted on the device and read only at snapshots: no host sync per generation.
        # Per genome slot, summed over the slots only when read (one op a call fewer).
        bad = torch.eq(scores, self._inf)
        rows = self._bad_rows
        if rows is not None and rows.shape == bad.shape:
            rows.add_(bad)
        else:
            self._fold_bad()
            self._bad_rows = bad.to(torch.int32)  # this method's own tensor: added to in place
        return scores

    def _fold_bad(self) -> None:
        rows, self._bad_rows = self._bad_rows, None
        if rows is not None:
            per_island = rows.sum(dim=1)
            self._bad = per_island if self._bad is None else self._bad + per_island

    def _collect_bad(self) -> None:
        """Move the device-side NaN/inf counts into ``nan_counts``."""
        self._fold_bad()
        if self._bad is not None:
            for island, count in zip(self._evaluating, self._bad.tolist()):
                self.nan_counts[island] += int(count)
            self._bad = None

    # -- islands in and out --------------------------------------------------------------

    def add_fresh(self, islands: list[int]) -> None:
        """Start islands from scratch (generation 0), deterministically from the run seed."""
        if not islands:
            return
        ids = torch.tensor(sorted(islands), dtype=torch.int64, device=self.device)
        # Each island's first population depends on (seed, island) only, not on which other
        # islands happen to start beside it.
        genomes = []
        for j, i in enumerate(ids.tolist()):
            gen = torch.Generator(device=self.device)
            gen.manual_seed(_seed_of(f"{self.spec.seed}|init|{i}"))
            genomes.append(self.algorithm.init(ids[j : j + 1], gen))
            self.generations[i], self.evals[i], self.nan_counts[i] = 0, 0, 0
        self._collect_bad()
        self._evaluating, self._per_island = ids.tolist(), 0
        state = initial_state(self.algorithm, ids, self._evaluate, self.generator,
                              genomes=torch.cat(genomes))
        for i in ids.tolist():
            self.evals[i] += self._per_island
        self._append(ids, state)

    def add_snapshot(self, snap: IslandSnapshot) -> None:
        """Resume an island from its checkpoint."""
        a = snap.arrays
        state = IslandState(
            genomes=torch.as_tensor(a["genomes"], device=self.device)[None],
            scores=torch.as_tensor(a["scores"], device=self.device)[None],
            ids=torch.as_tensor(a["ids"], device=self.device)[None],
            origin=torch.as_tensor(a["origin"], device=self.device)[None],
            extra={
                k[6:]: torch.as_tensor(v, device=self.device)[None]
                for k, v in a.items() if k.startswith("extra.")
            },
            island={
                k[7:]: torch.as_tensor(v, device=self.device)[None]
                for k, v in a.items() if k.startswith("island.")
            },
        )
        state = self._in_own_dtype(state)
        self._check_shapes(snap, state)
        self._collect_bad()
        self.generations[snap.island] = snap.generation
        self.evals[snap.island] = snap.evals
        self.nan_counts[snap.island] = snap.nan_count
        self._append(torch.tensor([snap.island], dtype=torch.int64, device=self.device), state)

    def _in_own_dtype(self, state: IslandState) -> IslandState:
        """A checkpoint of a run of ``dtype = "auto"`` written by a worker of the other genome
        dtype (a GPU's float32 resumed on a CPU, or back), cast to this device's: genomes,
        scores and the island state the algorithm keeps in the genomes' dtype. Float32 to
        float64 is exact; back rounds, so an island resumes exactly only on its own dtype."""
        wrote = state.scores.dtype
        # (For a run of a fixed dtype the checkpoint reader refused any other already.)
        if wrote == self.score_dtype or self.spec.problem.genome.kind != "real":
            return state
        width = self.spec.problem.genome.width
        theirs = self.config.island_frames(width, "float64" if wrote == torch.float64
                                           else "float32")
        ours = self.config.island_frames(width, self.dtype)
        island = {n: t.to(_torch_dtype(ours[n][1]))
                  if n in ours and n in theirs and ours[n][1] != theirs[n][1] else t
                  for n, t in state.island.items()}
        return state._replace(genomes=state.genomes.to(self.score_dtype),
                              scores=state.scores.to(self.score_dtype), island=island)

    def _check_shapes(self, snap: IslandSnapshot, state: IslandState) -> None:
        expected = self.algorithm.init(
            torch.zeros(1, dtype=torch.int64, device=self.device), torch.Generator(self.device)
        )
        if state.genomes.shape != expected.shape or state.genomes.dtype != expected.dtype:
            raise IslandSyncError(
                f"checkpoint of island {snap.island} holds genomes {tuple(state.genomes.shape[1:])}"
                f" {state.genomes.dtype}, but the run needs {tuple(expected.shape[1:])} "
                f"{expected.dtype}"
            )
        declared = self.config.island_frames(self.spec.problem.genome.width, self.dtype)
        got = {n: (tuple(t.shape[1:]), t.dtype) for n, t in state.island.items()}
        want = {n: (shape, _torch_dtype(dt)) for n, (shape, dt) in declared.items()}
        if got != want:
            raise IslandSyncError(
                f"checkpoint of island {snap.island} holds island state {got}, but the run's "
                f"{self.config.name} needs {declared}"
            )

    def _append(self, ids: torch.Tensor, state: IslandState) -> None:
        if self.state is None:
            self.state, self.island_ids = state, ids
        else:
            self.state = _cat(self.state, state)
            self.island_ids = torch.cat([self.island_ids, ids])
        self._reseed()

    def remove(self, islands: list[int]) -> None:
        if not islands or self.state is None:
            return
        self._collect_bad()
        keep = [r for r, i in enumerate(self.islands) if i not in set(islands)]
        index = torch.tensor(keep, dtype=torch.int64, device=self.device)
        self.state = _take(self.state, index) if keep else None
        self.island_ids = self.island_ids[index]
        for i in islands:
            self.generations.pop(i, None)
            self.evals.pop(i, None)
            self.nan_counts.pop(i, None)
        self._reseed()

    # -- the hot path --------------------------------------------------------------------

    def step(self) -> int:
        """One generation of every island; returns the evaluations it made."""
        if self._state is None:
            return 0
        islands = self.islands
        if self._evaluating != islands:
            self._collect_bad()
        self._evaluating, self._per_island = islands, 0
        # _state, not state: the step needs no ids, so none are computed for it.
        self._state = self.algorithm.step(self._state, self.island_ids, self._evaluate,
                                          self.generator)
        for i in self._evaluating:
            self.generations[i] += 1
            self.evals[i] += self._per_island
        return self._per_island * len(self)

    def candidates(self) -> tuple[torch.Tensor, ...] | None:
        """This stack's migrant candidates for other stacks: each island's best ``migrants``
        as (genomes, scores, ids, origin, source: the island each lives on), flattened."""
        m = self.spec.migration.migrants
        if self._state is None or m == 0:
            return None
        g, s, ids, origin = population.elite(self.state, m)
        source = self.island_ids.to(origin.dtype)[:, None].expand(ids.shape)
        return (g.reshape(-1, *g.shape[2:]), s.reshape(-1), ids.reshape(-1),
                origin.reshape(-1), source.reshape(-1))

    def migrate(self, foreign: tuple[torch.Tensor, ...] | None = None,
                neighbours: tuple[torch.Tensor, ...] | None = None) -> int:
        """Replace each island's worst with migrants: the best of the other local islands, of
        ``neighbours`` (other stacks' :meth:`candidates`) and of ``foreign`` (genomes, scores,
        ids, origin from the global elite). Returns how many genomes moved."""
        m = self.spec.migration.migrants
        if self._state is None or m == 0:  # _state: hash nothing when nothing can move
            return 0
        g, s, ids, origin = population.elite(self.state, m)
        cand = [g.reshape(-1, *g.shape[2:]), s.reshape(-1), ids.reshape(-1), origin.reshape(-1)]
        # A local candidate is sent by the island it lives on now, whatever island it was born
        # on: otherwise, under the ring, an immigrant at the top of island i-1 could never
        # move on to island i, and good genomes would travel one hop only.
        source = self.island_ids.to(origin.dtype)[:, None].expand(ids.shape).reshape(-1)
        if neighbours is not None and neighbours[0].numel():
            cand = [torch.cat([c, f.to(c.device, c.dtype)]) for c, f in zip(cand, neighbours)]
            source = torch.cat([source, neighbours[4].to(source.device, source.dtype)])
        if foreign is not None and foreign[0].numel():
            foreign = self._in_box(foreign)
            cand = [torch.cat([c, f.to(c.device, c.dtype)]) for c, f in zip(cand, foreign)]
            source = torch.cat([source, foreign[3].to(source.device, source.dtype)])
        idx, valid = population.select_migrants(
            cand[1], cand[2], source, self.island_ids, self.state.ids, m,
            self.spec.migration.topology, self.spec.islands,
        )
        if not bool(valid.any()):
            return 0
        self.state = population.inject(
            self.state, None, cand[0][idx], cand[1][idx], cand[2][idx], cand[3][idx], valid,
            self.algorithm.extra_defaults, valid_first=True,  # select_migrants' promise
        )
        return int(valid.sum())

    def _in_box(self, foreign: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``foreign`` with the score of each genome outside the run's box (or off an integer
        gene's integers) set to +inf, which select_migrants never takes: the global elite
        comes from the bucket, and an island must never evaluate such a point (a GA child
        keeps its parents' untouched genes). No host sync: a where over the scores."""
        box = getattr(self.algorithm, "box", None)
        if box is None:
            return foreign
        inside = box.contains(foreign[0].to(self.device, self.score_dtype))
        return (foreign[0], torch.where(inside, foreign[1].to(self.device), torch.inf),
                *foreign[2:])

    # -- views ---------------------------------------------------------------------------

    def best_scores(self) -> dict[int, float]:
        if self._state is None:
            return {}
        return dict(zip(self.islands, self._state.scores.min(dim=1).values.tolist()))

    def snapshot(self, islands: list[int] | None = None) -> list[IslandSnapshot]:
        """Host copies of islands for checkpoints: the only device-to-host copy the loop does."""
        if self.state is None:
            return []
        self._collect_bad()
        wanted = self.islands if islands is None else [i for i in self.islands if i in islands]
        rows = torch.tensor([self.islands.index(i) for i in wanted], dtype=torch.int64,
                            device=self.device)
        part = _take(self.state, rows)
        host = {
            "genomes": part.genomes.cpu().numpy(),
            "scores": part.scores.cpu().numpy(),
            "ids": part.ids.cpu().numpy(),
            "origin": part.origin.cpu().numpy(),
            **{f"extra.{k}": v.cpu().numpy() for k, v in part.extra.items()},
            **{f"island.{k}": v.cpu().numpy() for k, v in part.island.items()},
        }
        return [
            IslandSnapshot(
                island=i, generation=self.generations[i], evals=self.evals[i],
                nan_count=self.nan_counts[i], arrays={k: v[r] for k, v in host.items()},
                meta={"algorithm": self.algorithm.name},
            )
            for r, i in enumerate(wanted)
        ]


# The fitness function sees a CPU batch in blocks of about this many bytes of genomes (all of
# it on a GPU): passes over a block stay in cache. Each call still gets whole genomes [B, ...].
_CPU_EVAL_BLOCK_BYTES = 1 << 22


def _torch_dtype(numpy_dtype: str) -> torch.dtype:
    """The torch dtype of a numpy dtype string ("<f8"), as checkpoint frames declare them."""
    return torch.from_numpy(np.empty(0, numpy_dtype)).dtype


def _rows_per_block(flat: torch.Tensor) -> int:
    if flat.device.type != "cpu" or flat.shape[0] == 0:
        return flat.shape[0]
    return max(1, _CPU_EVAL_BLOCK_BYTES // max(1, math.prod(flat.shape[1:]) * flat.element_size()))


_INF = float("inf")


def _seed_of(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def _cat(a: IslandState, b: IslandState) -> IslandState:
    return IslandState(
        torch.cat([a.genomes, b.genomes]), torch.cat([a.scores, b.scores]),
        torch.cat([a.ids, b.ids]), torch.cat([a.origin, b.origin]),
        {k: torch.cat([a.extra[k], b.extra[k]]) for k in a.extra},
        {k: torch.cat([a.island[k], b.island[k]]) for k in a.island},
    )


def _take(s: IslandState, rows: torch.Tensor) -> IslandState:
    return IslandState(
        s.genomes[rows], s.scores[rows], s.ids[rows], s.origin[rows],
        {k: v[rows] for k, v in s.extra.items()},
        {k: v[rows] for k, v in s.island.items()},
    )


__all__ = ["Stack"]
