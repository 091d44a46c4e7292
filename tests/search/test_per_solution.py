"""A fitness of one solution (islandsync.per_solution): vectorised with torch.func.vmap where
it can be, else a loop; and the wrong-shape error that says to use it."""

from __future__ import annotations

import pytest
import torch

import islandsync
from islandsync.config import fitness_ref
from islandsync.errors import ConfigError
from islandsync.search.problems import make_problem


def sphere_of_one(x):  # tensor operations only: vmap can batch it
    return (x ** 2).sum()


def branching_of_one(x):  # .item() and an `if` on a value: only a loop can run it
    s = (x ** 2).sum().item()
    return s if s > 0 else 0.0


def first_genes_of_one(x):  # written for one solution; given a batch, it returns a row
    return x[0] ** 2 + x[1] ** 2


@pytest.mark.parametrize(("fn", "vectorised"), [(sphere_of_one, True),
                                                (branching_of_one, False)])
def test_per_solution_vectorises_or_loops(fn, vectorised: bool) -> None:
    x = torch.rand(16, 5, generator=torch.Generator().manual_seed(1)) - 0.5
    wrapped = islandsync.per_solution(fn)
    problem = make_problem("custom", fitness=wrapped)
    assert torch.allclose(problem.evaluate(x), (x ** 2).sum(dim=1))
    assert wrapped.vectorised is vectorised
    assert torch.allclose(problem.evaluate(x[:3]), (x[:3] ** 2).sum(dim=1))  # decided once
    # It fingerprints as the function it wraps, marked as taking one solution.
    ref = fitness_ref(wrapped)
    assert ref.per_solution and ref.name.endswith(f":{fn.__name__}")
    assert ref == fitness_ref(fn, per_solution=True)
    assert islandsync.per_solution(wrapped) is wrapped  # a decorated function given twice


def test_wrong_shape_says_to_use_per_solution() -> None:
    x = torch.rand(16, 5)
    with pytest.raises(ConfigError) as info:
        make_problem("custom", fitness=first_genes_of_one).evaluate(x)
    assert "fitness returned shape (5,) for a batch of 16; expected [16]" in str(info.value)
    assert "islandsync.per_solution(fn)" in str(info.value)
    assert "--per-solution" in str(info.value)
    got = make_problem("custom", fitness=islandsync.per_solution(first_genes_of_one)).evaluate(x)
    assert torch.allclose(got, x[:, 0] ** 2 + x[:, 1] ** 2)


def test_per_solution_refuses_a_function_that_returns_many_values() -> None:
    def row_of_one(x):
        return x * 2

    with pytest.raises(ConfigError, match=r"returned shape \(5,\) for one solution"):
        islandsync.per_solution(row_of_one)(torch.rand(4, 5))
