"""Every JSON record of a run, and the one hardened boundary that reads them.

A bucket is shared and untrusted: a crafted or corrupted blob must never crash a reader, nor
slip a value past it that a later computation chokes on. So every JSON record is read here,
by :func:`read_record`, and nowhere else:

* at most :data:`MAX_RECORD_BYTES` are fetched (a ranged read: a hostile gigabyte is never
  downloaded) and a larger blob is refused;
* :func:`parse_record` turns *any* failure — bad UTF-8, bad JSON, deep nesting
  (``RecursionError``), ``Infinity``/``1e999``/``2**64`` where a number belongs, a key that
  fails the layout's parser, a wrong type — into one :class:`CheckpointError` naming the blob;
* each record is validated into its pydantic model: numbers finite and bounded, strings and
  lists bounded, keys of the right shape for the record that names them.

Callers skip a bad record with one warning (never the whole poll, never the thread).

Records are written by :func:`write_record` only, which stamps a fresh ``nonce`` (so that a
conditional write whose reply was lost can be recognised by reading it back: an S3 ETag or a
content hash of equal bodies would be equal) and ``written_at`` (the writer's wall clock, for
display only: correctness never compares clocks across machines).

| record | key | writer | CAS rule |
| --- | --- | --- | --- |
| :class:`LeaseRecord` | ``lease.json`` | candidates | create-only claim, CAS renew/takeover |
| :class:`Heartbeat` | ``workers/<id>.json`` | that worker | plain overwrite |
| :class:`Assignment` | ``assignment.json`` | the leader | CAS on the generation it read |
| :class:`Head` | ``islands/<i>/HEAD.json`` | the island's owner | CAS on its last write |
| :class:`EliteHead` | ``elite/HEAD.json`` | the leader | CAS on the generation it read |
| :class:`Finished` | ``finished.json`` | first worker/leader | create-only |
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from islandsync.bucket.layout import (
    ASSIGNMENT_KEY,
    ELITE_HEAD_KEY,
    FINISHED_KEY,
    LEASE_KEY,
    PROTOCOL_KEY,
    PROTOCOL_VERSION,
    WORKER_ID_RE,
    head_key,
    heartbeat_key,
    parse_checkpoint_key,
    parse_elite_key,
)
from islandsync.errors import (
    CheckpointError,
    ConfigError,
    NotFound,
    PreconditionFailed,
    StoreError,
    maybe_applied,
)
from islandsync.store.base import BlobStore

#: No record is larger than this; a bigger blob is refused unread.
MAX_RECORD_BYTES = 256 * 1024
#: Deepest nesting any record has (a heartbeat's histogram is 3 deep); deeper is refused
#: before json.loads recurses, so 200 KB of brackets costs a scan, not a RecursionError.
MAX_DEPTH = 8
#: Integers in records stay below 2**62: a count, generation or epoch never gets near it,
#: and anything larger (2**64, say) would overflow numpy or a metric.
MAX_INT = 1 << 62
MAX_PREVIOUS = 3
#: At most this many islands' live numbers in one heartbeat (about 70 bytes each, so the
#: heartbeat stays far below MAX_RECORD_BYTES); a worker hosting more reports these first.
MAX_LIVE_ISLANDS = 1024
#: Terms stay below this, far below :data:`MAX_INT`: a takeover every second would need 68
#: years to reach it, so a record at or above it is forged, and a takeover that would reach it
#: starts again at term 1 (:func:`next_term`) instead of computing a term no record may hold.
MAX_TERM = 1 << 31
#: Upper bounds (seconds) of the cumulative upload-time histogram heartbeats carry.
UPLOAD_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

RECORD_CONFIG = ConfigDict(extra="ignore", frozen=True, allow_inf_nan=False)

Count = Annotated[int, Field(ge=0, le=MAX_INT)]
Positive = Annotated[int, Field(ge=1, le=MAX_INT)]
#: A lease term (the fencing token): see :data:`MAX_TERM` and :func:`next_term`.
Term = Annotated[int, Field(ge=1, lt=MAX_TERM)]
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e300, le=1e300)]
Seconds = Annotated[float, Field(allow_inf_nan=False, ge=0.0, le=1e10)]
#: Evaluations per second: a GPU on a tiny problem makes ~1e9; beyond 1e12 is a lie that
#: would only skew placement (2**64 once killed every leader).
Rate = Annotated[float, Field(allow_inf_nan=False, ge=0.0, le=1e12)]
Text = Annotated[str, Field(max_length=256)]
Nonce = Annotated[str, Field(max_length=64)]


def _worker_id(value: str) -> str:
    if not WORKER_ID_RE.match(value):
        raise ValueError("not a worker id (letters, digits, '_', '.', '-'; 1 to 128)")
    return value


def _checkpoint(value: str) -> str:
    if parse_checkpoint_key(value) is None:
        raise ValueError("not a checkpoint key (islands/<i>/<generation>-<tag>.isz)")
    return value


WorkerId = Annotated[str, Field(max_length=128), AfterValidator(_worker_id)]
CheckpointKey = Annotated[str, Field(max_length=512), AfterValidator(_checkpoint)]


class Record(BaseModel):
    """Base of every JSON record: unknown fields ignored (newer writers may add some)."""

    model_config = RECORD_CONFIG

    nonce: Nonce = ""
    written_at: Seconds = 0.0  # the writer's wall clock, for display only


class LeaseRecord(Record):
    """``lease.json``: who leads, in which term (the fencing token)."""

    holder: WorkerId
    term: Term
    # Bounded: a candidate waits max(its own, this) before taking over, so a crafted lease
    # of a day must not freeze the run's leadership for a day.
    lease_s: Annotated[float, Field(allow_inf_nan=False, gt=0.0, le=600.0)]
    #: Given up by a holder that stopped cleanly: taken over at once, with the next term.
    released: bool = False


def next_term(term: int) -> int:
    """The term a takeover of a lease of ``term`` writes: one more, or 1 again where that
    would reach :data:`MAX_TERM` (only a forged lease gets there; readers follow the current
    lease's term, not the highest ever seen, so starting again fences as well)."""
    return term + 1 if term + 1 < MAX_TERM else 1


class IslandProgress(BaseModel):
    """One hosted island's numbers as its worker's loop last saw them (a heartbeat's
    ``live``): what ``status`` shows between checkpoints, which come far less often."""

    model_config = RECORD_CONFIG

    generation: Count = 0
    evals: Count = 0
    best: Finite | None = None  # in the problem's own direction


class Heartbeat(Record):
    """``workers/<id>.json``: a worker's liveness (by blob version, never by its clock) and
    what it reports. Every field is optional and bounded: the leader, metrics and ``status``
    read only these validated values."""

    worker: WorkerId | None = None
    state: Annotated[str, Field(max_length=32)] = "running"
    platform: Text | None = None
    device: Text | None = None
    islands: Annotated[list[Count], Field(max_length=100_000)] = Field(default_factory=list)
    rate: Rate = 0.0
    generations: Count = 0
    evaluations: Count = 0
    checkpoint_blocked_s: Seconds = 0.0
    checkpoint: dict[Text, Any] = Field(default_factory=dict, max_length=16)
    store: dict[Text, Any] = Field(default_factory=dict, max_length=8)
    store_errors: Count = 0
    max_islands: Count | None = None
    deadline_in_s: Annotated[float, Field(allow_inf_nan=False, ge=-1e10, le=1e10)] | None = None
    assignment_epoch: Count = 0
    solo: bool = False
    version: Text | None = None
    protocol: Count | None = None
    # Absent from older heartbeats (read as empty): status then shows the HEADs' numbers.
    live: Annotated[dict[Count, IslandProgress], Field(max_length=MAX_LIVE_ISLANDS)] = Field(
        default_factory=dict)


class Assignment(Record):
    """``assignment.json``: which worker hosts which island, as decided by the leader of
    ``term``. ``workers`` are the workers the leader believed alive: an island's new owner
    takes it at once from an owner not on that list, and waits for a listed owner to release
    it first."""

    term: Term
    epoch: Positive
    leader: WorkerId
    islands: Annotated[dict[Count, WorkerId], Field(max_length=100_000)] = Field(
        default_factory=dict)
    workers: Annotated[list[WorkerId], Field(max_length=10_000)] = Field(default_factory=list)
    draining: Annotated[list[WorkerId], Field(max_length=10_000)] = Field(default_factory=list)
    # The run's totals as the leader last saw them, so followers never read every HEAD.
    evaluations: Count | None = None
    best: Finite | None = None

    def of(self, worker: str) -> set[int]:
        return {i for i, w in self.islands.items() if w == worker}


class Head(Record):
    """``islands/<i>/HEAD.json``: the island's latest checkpoint, its owner, and its lineage.

    ``previous`` are the checkpoints before ``checkpoint`` on this island's lineage, newest
    first: where a reader falls back to when ``checkpoint`` is corrupt. A blob that no HEAD
    named (a killed owner's last upload) is a branch off the lineage, never a fallback.
    """

    island: Count
    checkpoint: CheckpointKey | None = None
    generation: Count = 0
    evals: Count = 0
    best: Finite | None = None  # in the problem's own direction
    owner: WorkerId | None = None
    released: bool = False
    previous: Annotated[list[CheckpointKey], Field(max_length=MAX_PREVIOUS)] = Field(
        default_factory=list)

    def lineage(self) -> list[str]:
        return ([self.checkpoint] if self.checkpoint else []) + list(self.previous)


class EliteHead(Record):
    """``elite/HEAD.json``: names the newest merged global top-N."""

    epoch: Positive
    key: Annotated[str, Field(max_length=64)]
    term: Annotated[int, Field(ge=0, lt=MAX_TERM)]
    size: Count
    best: Finite | None = None  # in the problem's own direction
    duplicates: Count = 0  # duplicate ids removed while merging this epoch
    candidates: Count = 0


class Finished(Record):
    """``finished.json``: the run's stop decision; the first writer wins, others agree."""

    reason: Annotated[str, Field(max_length=64)]
    by: WorkerId | None = None
    evals: Count | None = None
    best: Finite | None = None


class ProtocolRecord(Record):
    """``protocol.json``: the bucket protocol the run speaks, fixed by its first worker
    (create-only); a worker of another protocol refuses to join (:func:`check_protocol`)."""

    protocol: Positive
    version: Text | None = None  # the islandsync that wrote it, for the message only


M = TypeVar("M", bound=Record)


#: A JSON string (escapes included), and every byte that is not a bracket: what
#: :func:`_depth` strips before it counts, so that its Python loop sees brackets only.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _depth(data: bytes) -> int:
    """The deepest nesting of brackets outside strings: linear, no recursion (the regex
    engine strips strings, so a 200 KB record costs milliseconds, not a byte loop)."""
    depth = deepest = 0
    for byte in _STRING.sub(b"", data).translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_record(data: bytes, model: type[M], *, name: str) -> M:
    """``data`` validated into ``model``; any failure is one CheckpointError naming ``name``."""
    def fail(why: str) -> CheckpointError:
        return CheckpointError(f"{name}: not a valid {model.__name__} record ({why})")

    if len(data) > MAX_RECORD_BYTES:
        raise fail(f"larger than {MAX_RECORD_BYTES} bytes")
    if _depth(data) > MAX_DEPTH:
        raise fail(f"nested deeper than {MAX_DEPTH}")
    try:
        # json.loads first: it refuses NaN/Infinity constants, which some JSON parsers take.
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise fail(f"bad JSON: {str(err)[:80]}") from None
    if not isinstance(value, dict):
        raise fail("not a JSON object")
    try:
        # Strict: "12" is not a number and true is not a count, whatever lax coercion says.
        return model.model_validate_json(data, strict=True)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        raise fail(f"{err.error_count()} problem(s), first at {where}: {first['msg']}") from None
    except (ValueError, TypeError, OverflowError, RecursionError) as err:
        raise fail(f"{type(err).__name__}") from None


def read_record(store: BlobStore, key: str, model: type[M]) -> tuple[M, int] | None:
    """``(record, its blob generation)``, or None when the blob does not exist.

    At most :data:`MAX_RECORD_BYTES` + 1 bytes are fetched; anything that is not a valid
    ``model`` raises CheckpointError naming the blob. StoreError passes through (the bucket
    is unreachable: retry later)."""
    try:
        blob = store.get(key, start=0, end=MAX_RECORD_BYTES + 1)
    except NotFound:
        return None
    return parse_record(blob.data, model, name=f"{store.url.rstrip('/')}/{key}"), blob.generation


R = TypeVar("R", bound=Record)


def stamp(record: R) -> R:
    """``record`` with a fresh nonce and this machine's wall clock (for display only). Keep
    the stamped copy when a write's reply may be lost: reading the blob back and finding its
    nonce tells whether that write landed."""
    return record.model_copy(update={"nonce": secrets.token_hex(8), "written_at": time.time()})


def write_record(store: BlobStore, key: str, record: Record, *,
                 if_generation: int | None = None) -> int:
    """Write ``record`` (stamped with a fresh nonce unless it already carries one); returns
    the new generation. PreconditionFailed when ``if_generation`` does not hold."""
    body = record if record.nonce else stamp(record)
    return store.put(key, body.model_dump_json().encode(), if_generation=if_generation)


def landed(store: BlobStore, key: str, record: Record, model: type[M]) -> int | None:
    """After a conditional write of ``record`` failed (a lost reply, then 412 on a retry):
    the blob's generation if it holds our write (same nonce), else None. Unreadable or
    missing blobs count as not ours; StoreError passes through."""
    try:
        found = read_record(store, key, model)
    except CheckpointError:
        return None
    if found is not None and record.nonce and found[0].nonce == record.nonce:
        return found[1]
    return None


def write_fenced(store: BlobStore, key: str, record: Record, model: type[M], *,
                 if_generation: int) -> int | None:
    """A conditional write of ``record`` (stamp it first) that decides by outcome: the new
    generation when it landed, also when its reply was lost or a resend of it met its own
    412 (read back by nonce); None when another writer holds the key (a lost race). A
    failure whose outcome is unknown and whose write is not found raises it (retry later)."""
    try:
        return write_record(store, key, record, if_generation=if_generation)
    except (PreconditionFailed, StoreError) as err:
        if not isinstance(err, PreconditionFailed) and not maybe_applied(err):
            raise  # not sent, or refused: nothing changed
        found = landed(store, key, record, model)
        if found is None and not isinstance(err, PreconditionFailed):
            raise
        return found


def read_head(store: BlobStore, island: int) -> tuple[Head, int] | None:
    """(HEAD, its generation), None when the island was never claimed. A HEAD that is not
    valid, or that names another island's checkpoints, raises CheckpointError naming it."""
    found = read_record(store, head_key(island), Head)
    if found is None:
        return None
    head = found[0]
    bad = [k for k in head.lineage() if (parsed := parse_checkpoint_key(k)) and parsed[0] != island]
    if head.island != island or bad:
        raise CheckpointError(f"{store.url.rstrip('/')}/{head_key(island)}: not a valid Head "
                              f"record (names island {head.island} or another island's "
                              f"checkpoints)")
    return found


def write_head(store: BlobStore, head: Head, *, if_generation: int) -> int:
    """CAS the island's HEAD; PreconditionFailed means the island is someone else's now."""
    return write_record(store, head_key(head.island), head, if_generation=if_generation)


def read_elite_head(store: BlobStore) -> tuple[EliteHead, int] | None:
    found = read_record(store, ELITE_HEAD_KEY, EliteHead)
    if found is not None and parse_elite_key(found[0].key) != found[0].epoch:
        raise CheckpointError(f"{store.url.rstrip('/')}/{ELITE_HEAD_KEY}: not a valid EliteHead "
                              f"record (key does not name epoch {found[0].epoch})")
    return found


def write_elite_head(store: BlobStore, head: EliteHead, *, if_generation: int) -> int:
    return write_record(store, ELITE_HEAD_KEY, head, if_generation=if_generation)


def read_assignment(store: BlobStore) -> tuple[Assignment, int] | None:
    return read_record(store, ASSIGNMENT_KEY, Assignment)


def write_assignment(store: BlobStore, assignment: Assignment, *, if_generation: int) -> int:
    return write_record(store, ASSIGNMENT_KEY, assignment, if_generation=if_generation)


def read_lease(store: BlobStore) -> tuple[LeaseRecord, int] | None:
    return read_record(store, LEASE_KEY, LeaseRecord)


def read_heartbeat(store: BlobStore, worker: str) -> tuple[Heartbeat, int] | None:
    return read_record(store, heartbeat_key(worker), Heartbeat)


def read_finished(store: BlobStore) -> tuple[Finished, int] | None:
    return read_record(store, FINISHED_KEY, Finished)


class ProtocolMismatch(ConfigError):
    """This islandsync speaks another bucket protocol than the run: it must not join."""


def check_protocol(store: BlobStore, *, version: str | None = None) -> int:
    """The run's protocol, fixing it to ours when the run has none yet (create-only, so the
    first writer wins); :class:`ProtocolMismatch` when it is another one. A record that names
    no protocol number at all (garbage: nobody's rules) is replaced by ours, by CAS on the
    version read, so that one careless write cannot keep every new worker out, and so is one
    naming our own number that our parser refuses; one that names another number we cannot
    otherwise read is refused (a newer protocol's, maybe)."""
    mine = ProtocolRecord(protocol=PROTOCOL_VERSION, version=version)
    for _ in range(3):
        try:
            blob = store.get(PROTOCOL_KEY, start=0, end=MAX_RECORD_BYTES + 1)
        except NotFound:
            blob = None
        if blob is None or (theirs := _protocol_of(store, blob.data)) is None:
            try:
                write_record(store, PROTOCOL_KEY, stamp(mine),
                             if_generation=0 if blob is None else blob.generation)
                return PROTOCOL_VERSION
            except PreconditionFailed:
                continue  # someone (maybe our own lost first attempt) wrote it: read it
        if theirs.protocol != PROTOCOL_VERSION:
            by = f" (written by islandsync {theirs.version})" if theirs.version else ""
            raise ProtocolMismatch(
                f"run {store.url} speaks bucket protocol {theirs.protocol}{by}, this "
                f"islandsync {version or ''} speaks protocol {PROTOCOL_VERSION}: refusing to "
                f"join. Install the run's own version (see `islandsync publish`).")
        return theirs.protocol
    raise ProtocolMismatch(f"run {store.url}: {PROTOCOL_KEY} keeps changing; not joining")


def _protocol_of(store: BlobStore, data: bytes) -> ProtocolRecord | None:
    """``protocol.json``'s record; None when it is garbage that names no protocol number."""
    name = f"{store.url.rstrip('/')}/{PROTOCOL_KEY}"
    try:
        return parse_record(data, ProtocolRecord, name=name)
    except CheckpointError as err:
        try:
            value = json.loads(data) if len(data) <= MAX_RECORD_BYTES and \
                _depth(data) <= MAX_DEPTH else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            value = None
        number = value.get("protocol") if isinstance(value, dict) else None
        # A record naming our own protocol that our own parser refuses was written by no
        # writer of our rules, and a number past any count's bound (2**64) names no protocol:
        # garbage like any other (the soak's byzantine writer made both, and left there each
        # kept every late joiner out). Another plausible number is another protocol's.
        if isinstance(number, int) and not isinstance(number, bool) \
                and 0 < number <= MAX_INT and number != PROTOCOL_VERSION:
            raise ProtocolMismatch(f"{err}; it names protocol {number}: refusing to join. "
                                   f"Install the run's own version (see `islandsync "
                                   f"publish`).") from None
        logging.getLogger(__name__).warning("%s; replacing it with protocol %d", err,
                                            PROTOCOL_VERSION)
        return None


__all__ = [
    "MAX_LIVE_ISLANDS", "MAX_PREVIOUS", "MAX_RECORD_BYTES", "MAX_TERM", "UPLOAD_BUCKETS",
    "Assignment", "EliteHead", "Finished", "Head", "Heartbeat", "IslandProgress", "LeaseRecord", "Record",
    "parse_record", "read_assignment", "read_elite_head", "read_finished", "read_head",
    "read_heartbeat", "read_lease", "read_record", "landed", "stamp", "write_assignment",
    "write_elite_head", "write_fenced", "write_head", "write_record", "next_term",
    # the protocol version (the history's records: islandsync.bucket.history)
    "ProtocolMismatch", "ProtocolRecord", "check_protocol",
    # the field types other records' modules build on
    "RECORD_CONFIG", "Count", "Finite", "Rate", "Seconds", "Text", "WorkerId",
]
