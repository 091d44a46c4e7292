"""The one exception tree (``errors.py``): every error derives from IslandSyncError, a bad
input is also a ValueError, a missing key also a KeyError whose message reads as written; and
the one classification of a failed store request: only what certainly changed nothing
(not sent, refused, not found, a failed precondition) may not have been applied."""

from __future__ import annotations

import pytest

from islandsync import errors
from islandsync.errors import (
    CheckpointError,
    ConfigError,
    IslandSyncError,
    NotFound,
    NotSent,
    OutcomeUnknown,
    PreconditionFailed,
    Refused,
    RunNotFound,
    StoreError,
    maybe_applied,
)


def test_every_error_has_one_root() -> None:
    classes = [v for v in vars(errors).values()
               if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(classes) >= 10
    assert all(issubclass(c, IslandSyncError) for c in classes)


def test_bad_input_is_also_a_value_error_and_a_missing_key_a_key_error() -> None:
    assert issubclass(ConfigError, ValueError) and issubclass(CheckpointError, ValueError)
    assert issubclass(RunNotFound, ConfigError)
    assert issubclass(NotFound, KeyError) and issubclass(NotFound, StoreError)
    assert str(NotFound("islands/0/HEAD.json: no such blob")) == \
        "islands/0/HEAD.json: no such blob"  # not KeyError's repr
    assert str(NotFound()) == "not found"


@pytest.mark.parametrize("err, applied", [
    (NotSent("no connection"), False),
    (Refused("429"), False),
    (NotFound("k"), False),
    (PreconditionFailed("k"), False),
    (OutcomeUnknown("503"), True),
    (StoreError("who knows"), True),  # unclassified: it may have landed
    (ConfigError("bad"), False),  # not a store request at all
    (OSError("reset"), False),
])
def test_only_what_certainly_changed_nothing_was_not_applied(err: Exception,
                                                             applied: bool) -> None:
    assert maybe_applied(err) is applied
