"""Key rules shared by every store (``store/key_syntax.py``), so a key valid on one store is
valid on all: non-empty, relative, no NUL or line break, no empty/./.. segment, valid
unicode, under GCS's name limit with room for the root prefix. (tests/store/test_contract.py
checks that every store applies them.)"""

from __future__ import annotations

import pytest

from islandsync.errors import ConfigError
from islandsync.store.key_syntax import MAX_KEY_BYTES, check_key, check_range


@pytest.mark.parametrize("key", ["run.json", "islands/0/HEAD.json", "a/b.c/d-e_f", "ü/ключ",
                                 "x" * MAX_KEY_BYTES])
def test_a_valid_key_comes_back_unchanged(key: str) -> None:
    assert check_key(key) is key


@pytest.mark.parametrize("key, why", [
    ("", "non-empty"), (None, "non-empty"), (b"run.json", "non-empty"),
    ("/abs", "starts with '/'"), ("a\x00b", "NUL"), ("a\rb", "line break"),
    ("a//b", "segment"), ("a/", "segment"), ("./a", "segment"), ("a/../b", "segment"),
    ("x" * (MAX_KEY_BYTES + 1), "longer than"),
    ("é" * (MAX_KEY_BYTES // 2 + 1), "longer than"),  # bytes of UTF-8, not characters
    ("a\ud800b", "lone surrogate"),
])
def test_an_invalid_key_is_refused_naming_why(key: object, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        check_key(key)  # type: ignore[arg-type]


def test_a_range_is_normalised_and_never_wraps() -> None:
    assert check_range(None, None) == (0, None)
    assert check_range(5, 10) == (5, 10)
    for start, end in ((-1, None), (0, -1), ("1", None), (1.0, None)):
        with pytest.raises(ConfigError, match="range"):
            check_range(start, end)  # type: ignore[arg-type]
