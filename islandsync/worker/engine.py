"""The islands one worker hosts, stacked as ``[islands, pop, ...]``: one stack per
(algorithm, device) pair, each stepped as one tensor.

The engine owns the tensors and nothing else: no bucket, no threads, no clocks. The worker
asks it to step, to migrate, to take snapshots for checkpoints, and to add or drop islands.
A run of one algorithm on one device has one stack (:class:`~islandsync.worker.stack.Stack`),
which is the whole engine; a portfolio (islands with different algorithms) or several
devices (``--device auto`` with several GPUs) give several, each an independent search of
its own islands (:class:`Engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from islandsync.bucket.checkpoints import IslandSnapshot
from islandsync.config import RunSpec
from islandsync.errors import FitnessError, IslandSyncError  # noqa: F401 - re-exported
from islandsync.search.algorithms import IslandState
from islandsync.search.problems import Problem
from islandsync.worker.devices import resolve_device, resolve_devices  # noqa: F401 - re-exported
from islandsync.worker.stack import Stack


class Engine:
    """Every island a worker hosts: one :class:`Stack` per (algorithm, device) pair, each
    stepped as one tensor, with no Python loop over the islands of a stack.

    An island's algorithm is the spec's (``RunSpec.algorithm_of``); its device is the one
    of ``devices`` hosting the fewest islands when it arrives (ties: the first), and it stays
    there until released. Each stack is seeded from its own islands only, so a run of one
    algorithm on one device is exactly one stack (the search of earlier versions, bit for
    bit), and islands split over two devices search exactly as two workers hosting those
    islands would, apart from migration between them, which stays local: a migration draws
    on the elites of every stack (taken before any is changed) and the global elite.
    """

    def __init__(self, spec: RunSpec, problem: Problem,
                 device: torch.device | Sequence[torch.device]) -> None:
        self.spec = spec
        self.problem = problem
        self.devices = [device] if isinstance(device, torch.device) else list(device)
        if not self.devices:
            raise IslandSyncError("an engine needs at least one device")
        self.device = self.devices[0]
        self._configs = list(dict.fromkeys(spec.algorithms))  # distinct, in portfolio order
        self._stacks: dict[tuple[int, int], Stack] = {}  # (config index, device index)
        self._where: dict[int, tuple[int, int]] = {}

    # -- stacks --------------------------------------------------------------------------

    def _stack(self, key: tuple[int, int]) -> Stack:
        stack = self._stacks.get(key)
        if stack is None:
            stack = Stack(self.spec, self.problem, self.devices[key[1]], self._configs[key[0]])
            self._stacks = dict(sorted({**self._stacks, key: stack}.items()))
        return stack

    @property
    def stacks(self) -> list[Stack]:
        """The stacks hosting islands, in (algorithm, device) order."""
        return [s for s in self._stacks.values() if len(s)]

    def _place(self, island: int) -> tuple[int, int]:
        """The stack a new island joins: its algorithm's, on the least loaded device."""
        load = [0] * len(self.devices)
        for _, d in self._where.values():
            load[d] += 1
        key = (self._configs.index(self.spec.algorithm_of(island)), load.index(min(load)))
        self._where[island] = key
        return key

    def _only(self) -> Stack:
        stacks = self.stacks
        if len(stacks) > 1:
            raise IslandSyncError("this engine hosts several stacks (a portfolio or several "
                                  "devices): read each of engine.stacks")
        return stacks[0] if stacks else self._stack((0, 0))

    @property
    def state(self) -> IslandState | None:
        """The islands' state where they form one stack (a single algorithm on one device)."""
        return self._only().state

    @state.setter
    def state(self, value: IslandState | None) -> None:
        self._only().state = value

    @property
    def _state(self) -> IslandState | None:
        return self._only()._state

    @property
    def algorithm(self) -> Any:
        """The algorithm of the one stack (see :attr:`state`)."""
        return self._only().algorithm

    # -- bookkeeping ---------------------------------------------------------------------

    @property
    def islands(self) -> list[int]:
        return [i for s in self.stacks for i in s.islands]

    def __len__(self) -> int:
        return sum(len(s) for s in self._stacks.values())

    def _merged(self, name: str) -> dict[int, int]:
        return {i: v for s in self._stacks.values() for i, v in getattr(s, name).items()}

    @property
    def generations(self) -> dict[int, int]:
        return self._merged("generations")

    @property
    def evals(self) -> dict[int, int]:
        return self._merged("evals")

    @property
    def nan_counts(self) -> dict[int, int]:
        return self._merged("nan_counts")

    # -- islands in and out --------------------------------------------------------------

    def add_fresh(self, islands: list[int]) -> None:
        """Start islands from scratch (generation 0), deterministically from the run seed."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i in sorted(islands):
            groups.setdefault(self._place(i), []).append(i)
        for key, group in sorted(groups.items()):
            self._stack(key).add_fresh(group)

    def add_snapshot(self, snap: IslandSnapshot) -> None:
        """Resume an island from its checkpoint."""
        key = self._place(snap.island)
        try:
            self._stack(key).add_snapshot(snap)
        except Exception:
            del self._where[snap.island]
            raise

    def remove(self, islands: list[int]) -> None:
        gone = set(islands)
        for key, stack in self._stacks.items():
            if mine := [i for i in stack.islands if i in gone]:
                stack.remove(mine)
        for i in gone:
            self._where.pop(i, None)

    # -- the hot path --------------------------------------------------------------------

    def step(self) -> int:
        """One generation of every island, a stack at a time; returns the evaluations."""
        return sum(s.step() for s in self.stacks)

    def migrate(self, foreign: tuple[torch.Tensor, ...] | None = None) -> int:
        """Each stack's islands take migrants from every local island (all stacks' elites,
        taken before any moves) and from ``foreign``; see :meth:`Stack.migrate`."""
        stacks = self.stacks
        if len(stacks) <= 1:
            return stacks[0].migrate(foreign) if stacks else 0
        cands = [s.candidates() for s in stacks]
        moved = 0
        for j, stack in enumerate(stacks):
            others = [c for k, c in enumerate(cands) if k != j and c is not None]
            near = None if not others else tuple(
                torch.cat([c[f].to(stack.device) for c in others]) for f in range(5))
            moved += stack.migrate(foreign, near)
        return moved

    # -- views ---------------------------------------------------------------------------

    def best_scores(self) -> dict[int, float]:
        return {i: v for s in self.stacks for i, v in s.best_scores().items()}

    def best(self) -> tuple[float, np.ndarray, int] | None:
        """The best individual hosted: (minimisation score, genome on the host, island)."""
        found = None
        for s in self.stacks:
            flat = s.state.scores.reshape(-1)
            j = int(torch.argmin(flat))
            if found is None or float(flat[j]) < found[0]:
                row, col = divmod(j, s.state.scores.shape[1])
                found = (float(flat[j]), s.state.genomes[row, col].cpu().numpy(),
                         s.islands[row])
        return found

    def snapshot(self, islands: list[int] | None = None) -> list[IslandSnapshot]:
        """Host copies of islands for checkpoints, in :attr:`islands` order."""
        return [snap for s in self.stacks for snap in s.snapshot(islands)]
