"""FaultyStore: a BlobStore wrapper that injects the faults a real bucket and its other users
inflict, for anyone testing a deployment (the soak, :mod:`islandsync.testing.soak`, run by
``tests/chaos`` and ``benchmarks/soak.py``, uses it). Part of the test harness, not of the
store layer: nothing in the package's own code paths wraps a store in it.

Faults are rules, small named dataclasses passed as ``rules=[...]``; each one applies to the
calls whose operation is in ``ops`` and whose key (a listing's prefix) matches ``keys`` (an
``fnmatch`` pattern, or ``"re:<regex>"`` searched in the key), and fires on the matching calls
``calls`` names (1-based, counted per rule) or else with probability ``rate``:

* :class:`ErrorBefore` — :class:`~islandsync.errors.NotSent` before the call: nothing
  happened;
* :class:`LostReply` — the call happens, then :class:`~islandsync.errors.OutcomeUnknown`: the
  caller cannot tell it landed;
* :class:`Latency` — the call is ``seconds`` slower;
* :class:`Outage` — windows in which every call fails (by call count or by seconds since the
  store was made, once or every ``every``); :meth:`FaultyStore.start_outage` /
  :meth:`FaultyStore.end_outage` switch one on and off by hand;
* :class:`Byzantine` — after a matching call succeeds, another party replaces the blob in the
  *inner* store (an unconditional write, as a careless or hostile writer would) with garbage of
  one of the :data:`JSON_GARBAGE` or :data:`ISZ_GARBAGE` kinds, chosen per key type
  (:mod:`islandsync.testing.garbage`: broken bytes, fields and keys; forged terms, far above the
  lease's or at a cap; oversized records; padded blobs and decompression bombs).

Every decision is drawn from a per-rule ``random.Random`` seeded from ``seed``, one draw per
matching call, so a given seed and sequence of calls injects the same faults. ``counts()``
tells how many of each kind were injected; ``corrupted()`` which keys the byzantine writer
wrote. Thread-safe: the lock guards only draws and counters, never a store call or a sleep.
"""

from __future__ import annotations

import fnmatch
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from islandsync.errors import ConfigError, NotFound, NotSent, OutcomeUnknown
from islandsync.store.base import BlobStore
from islandsync.store.forwarding import ForwardingStore
from islandsync.testing.garbage import ISZ_GARBAGE, JSON_GARBAGE, SIZE_GARBAGE

T = TypeVar("T")

OPERATIONS = ("get", "put", "stat", "list", "delete")


@dataclass(frozen=True)
class Call:
    """One call through the store: its operation, key (a listing's prefix), 1-based number
    among all calls of this store, and seconds since the store was made."""

    op: str
    key: str
    number: int
    elapsed: float


@dataclass
class _RuleState:
    rng: random.Random
    matched: int = 0


@dataclass(frozen=True)
class Rule:
    """Which calls a fault applies to, and how often (see module doc)."""

    ops: tuple[str, ...] = OPERATIONS
    keys: str = "*"
    rate: float = 0.0
    calls: tuple[int, ...] = ()

    kind: ClassVar[str] = "rule"
    after: ClassVar[bool] = False  # injected after the call succeeded, not before it

    def __post_init__(self) -> None:
        unknown = set(self.ops) - set(OPERATIONS)
        if unknown:
            raise ConfigError(f"{type(self).__name__}: unknown operations {sorted(unknown)}")
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"{type(self).__name__}: rate must be in [0, 1], got {self.rate!r}")
        if self.keys.startswith("re:"):
            try:  # a bad pattern fails here, not deep in a soak
                re.compile(self.keys[3:])
            except re.error as err:
                raise ConfigError(f"{type(self).__name__}: bad regex {self.keys!r}: {err}") \
                    from None

    def applies(self, call: Call) -> bool:
        if call.op not in self.ops:
            return False
        if self.keys.startswith("re:"):
            return re.search(self.keys[3:], call.key) is not None
        return fnmatch.fnmatchcase(call.key, self.keys)

    def decide(self, state: _RuleState, call: Call) -> bool:
        """Whether to fire on this matching call; exactly one draw each time."""
        state.matched += 1
        draw = state.rng.random()
        return state.matched in self.calls or draw < self.rate

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class ErrorBefore(Rule):
    kind: ClassVar[str] = "error_before"

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        raise NotSent(f"{store.url}: {call.op} {call.key!r} failed (injected, not done)")


@dataclass(frozen=True)
class LostReply(Rule):
    kind: ClassVar[str] = "lost_reply"
    after: ClassVar[bool] = True

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        raise OutcomeUnknown(f"{store.url}: {call.op} {call.key!r}: reply lost (injected; the call "
                         f"may have happened)")


@dataclass(frozen=True)
class Latency(Rule):
    seconds: float = 0.5
    kind: ClassVar[str] = "latency"

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        time.sleep(self.seconds)


@dataclass(frozen=True)
class Outage(Rule):
    """Every call fails from ``start`` for ``length`` (``unit``: "calls" of this store or
    "seconds" since it was made), again every ``every`` units when given."""

    start: float = 0.0
    length: float = float("inf")
    every: float | None = None
    unit: str = "seconds"
    kind: ClassVar[str] = "outage"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unit not in ("calls", "seconds"):
            raise ConfigError(f"Outage: unit must be 'calls' or 'seconds', got {self.unit!r}")
        if self.every is not None and self.every <= 0:
            raise ConfigError(f"Outage: every must be > 0, got {self.every!r}")

    def decide(self, state: _RuleState, call: Call) -> bool:
        t = (call.number if self.unit == "calls" else call.elapsed) - self.start
        if t < 0:
            return False
        return (t % self.every if self.every else t) < self.length

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        _unreachable(store, call)


def _unreachable(store: FaultyStore, call: Call) -> None:
    raise NotSent(f"{store.url}: {call.op} {call.key!r} failed: the bucket is unreachable "
                     f"(injected outage)")


@dataclass(frozen=True)
class Byzantine(Rule):
    """After a matching call succeeds, replace that blob in the inner store with garbage of one
    of ``kinds`` (all that fit the key's type by default). The ``.isz`` kinds that re-encode a
    blob (wrong_shape, non_finite, wrong_type, other_island) need ``codec``: pass
    ``islandsync.bucket.codec``; without it only truncated and random bytes reach a
    checkpoint."""

    ops: tuple[str, ...] = ("put",)
    kinds: tuple[str, ...] = field(default_factory=lambda: tuple(
        sorted(set(JSON_GARBAGE) | set(ISZ_GARBAGE))))
    codec: Any = None
    kind: ClassVar[str] = "byzantine"
    after: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if set(self.ops) - {"get", "put"}:
            raise ConfigError("Byzantine: only get and put name a blob to replace")
        unknown = set(self.kinds) - set(JSON_GARBAGE) - set(ISZ_GARBAGE)
        if unknown:
            raise ConfigError(f"Byzantine: unknown garbage kinds {sorted(unknown)}")

    def inject(self, store: FaultyStore, call: Call, seed: int) -> None:
        rng = random.Random(seed)
        table = ISZ_GARBAGE if call.key.endswith(".isz") else JSON_GARBAGE \
            if call.key.endswith(".json") else {k: ISZ_GARBAGE[k] for k in ("truncated", "random")}
        try:
            data = store.inner.get(call.key).data
        except NotFound:
            return
        kinds = [k for k in self.kinds if k in table]
        rng.shuffle(kinds)
        for name in kinds:  # the first kind that fits this blob
            garbage = table[name](data, call.key, rng, self.codec)
            if garbage is not None:
                store.inner.put(call.key, garbage)
                store._note(f"byzantine.{name}", call.key)
                return


class FaultyStore(ForwardingStore):
    """Forwards to ``inner``, injecting the faults of ``rules`` (see module doc)."""

    def __init__(self, inner: BlobStore, *, seed: int = 0, rules: list[Rule] | tuple = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(inner)
        self.seed, self.rules = seed, tuple(rules)
        self.clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._states = [_RuleState(random.Random(f"{seed}/{i}/{r.kind}"))
                        for i, r in enumerate(self.rules)]
        self._calls = 0
        self._down = False
        self._counts: dict[str, int] = {}
        self._corrupted: dict[str, str] = {}
        self._events: list[tuple[float, str, str]] = []

    # -- control and reports -------------------------------------------------------------

    def start_outage(self) -> None:
        """Every call fails from now until :meth:`end_outage`."""
        self._down = True

    def end_outage(self) -> None:
        self._down = False

    def counts(self) -> dict[str, int]:
        """Faults injected so far by kind (``byzantine.<garbage kind>`` for garbage)."""
        with self._lock:
            return dict(self._counts)

    def corrupted(self) -> dict[str, str]:
        """Keys the byzantine writer replaced: the garbage kind each one got last."""
        with self._lock:
            return dict(self._corrupted)

    def corruptions(self) -> list[tuple[float, str, str]]:
        """Every replacement so far as ``(clock() just after it, key, garbage kind)``."""
        with self._lock:
            return list(self._events)

    def _note(self, kind: str, key: str | None = None) -> None:
        with self._lock:
            self._counts[kind] = self._counts.get(kind, 0) + 1
            if key is not None:
                self._corrupted[key] = kind.split(".", 1)[1]
                self._events.append((self.clock(), key, self._corrupted[key]))

    # -- the calls -----------------------------------------------------------------------

    def _plan(self, op: str, key: str) -> tuple[Call, list[tuple[Rule, int]]]:
        """This call's number and the rules that fire on it (with a seed for each), drawn
        under the lock so that one sequence of calls gives one plan."""
        with self._lock:
            self._calls += 1
            call = Call(op, key, self._calls, self.clock() - self._started)
            fired = []
            for rule, state in zip(self.rules, self._states):
                if rule.applies(call) and rule.decide(state, call):
                    fired.append((rule, state.rng.getrandbits(32)))
        return call, fired

    def _call(self, op: str, key: str, fn: Callable[[], T]) -> T:
        call, fired = self._plan(op, key)
        if self._down:
            self._note("outage")
            _unreachable(self, call)
        for rule, seed in fired:
            if not rule.after:
                self._note(rule.kind)
                rule.inject(self, call, seed)  # may raise: the call never happens
        result = fn()
        # A lost reply raises: the byzantine writer, which does not, goes first.
        for rule, seed in sorted(fired, key=lambda f: isinstance(f[0], LostReply)):
            if rule.after:
                if rule.kind != "byzantine":
                    self._note(rule.kind)
                rule.inject(self, call, seed)
        return result

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, seed={self.seed})"


__all__ = [
    "ISZ_GARBAGE", "JSON_GARBAGE", "OPERATIONS", "SIZE_GARBAGE", "Byzantine", "Call", "ErrorBefore",
    "FaultyStore", "Latency", "LostReply", "Outage", "Rule",
]
