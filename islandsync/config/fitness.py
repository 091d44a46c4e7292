"""A custom problem's fitness function: its reference in run.json, and the checks that a
worker was given that function.

Nothing here imports code named in a bucket: a custom fitness function comes from a worker's
own caller and is only *compared* with the name and fingerprint recorded in run.json.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import textwrap
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, field_validator

from islandsync.errors import ConfigError

from ._base import STRICT

if TYPE_CHECKING:
    from .spec import RunSpec

# module:qualname; <locals>/<lambda> may be recorded, but load_fitness cannot import them.
_FITNESS_NAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_<][\w<>]*(\.[\w<>]+)*$")


class FitnessRef(BaseModel):
    """Which user function a custom problem's workers must be given, and a digest of its source."""

    model_config = STRICT
    name: str
    fingerprint: str

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not _FITNESS_NAME.match(name):
            raise ValueError("must be module:qualname, e.g. mypkg.fit:score")
        return name

    @field_validator("fingerprint")
    @classmethod
    def _hex(cls, fingerprint: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
            raise ValueError("must be a sha256 digest: 64 lowercase hex digits")
        return fingerprint


def _code_digest(code: types.CodeType) -> bytes:
    # Nested code objects (lambdas, comprehensions) repr with a memory address, so they are
    # digested recursively instead. co_names is included because `np.sin` -> `np.cos` changes
    # only the names table, not the bytecode.
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update(_code_digest(const) if isinstance(const, types.CodeType)
                 else repr(const).encode("utf-8", "backslashreplace"))
    h.update(repr(code.co_names).encode())
    return h.digest()


def fitness_ref(fn: Callable[..., Any]) -> FitnessRef:
    """Name (``module:qualname``) and fingerprint of a user's fitness function.

    The fingerprint is sha256 over the name and, by preference, the function's source
    (dedented, ``\\n`` line endings), so it is the same on every machine and Python version.
    Without source (defined in a REPL, or only .pyc shipped) it falls back to the bytecode,
    constants and names, which is stable only across one Python minor version; with neither,
    the name alone."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(f"fitness must be a function or class with a module and a name, "
                          f"got {fn!r}")
    name = f"{module}:{qualname}"
    h = hashlib.sha256(b"name\0" + name.encode())
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        h.update(b"\0source\0" + source.replace("\r\n", "\n").replace("\r", "\n").encode())
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            h.update(b"\0code\0" + _code_digest(code))
    return FitnessRef(name=name, fingerprint=h.hexdigest())


def check_fitness(spec: RunSpec, fn: Callable[..., Any] | None) -> None:
    """Refuse a fitness function that is not the one the run recorded (or one a built-in run
    does not take). Fingerprints in messages read ``recorded… vs given…``."""
    problem = spec.problem
    if problem.name != "custom":
        if fn is not None:
            raise ConfigError(f"run uses built-in problem {problem.name}; "
                              f"do not pass a fitness function")
        return
    recorded = problem.fitness
    assert recorded is not None  # ProblemSpec guarantees it for custom problems
    if fn is None:
        raise ConfigError(f"run uses custom fitness function {recorded.name}; pass it as "
                          f"`fitness=` (Python) or `--fitness {recorded.name}` (command line)")
    given = fitness_ref(fn)
    if given.name != recorded.name:
        raise ConfigError(f"fitness function differs from the run's: run recorded "
                          f"{recorded.name}, given {given.name}")
    if given.fingerprint != recorded.fingerprint:
        raise ConfigError(f"fitness function {given.name}: source differs from the run's "
                          f"(fingerprint {recorded.fingerprint[:12]}… vs "
                          f"{given.fingerprint[:12]}…)")


def load_fitness(ref: str) -> Callable[..., Any]:
    """Import ``module:qualname`` for a worker's OWN ``--fitness`` argument.

    Only ever call this with what a user typed on their command line or passed in code, never
    with a name read from a bucket: importing runs the module's code. Like ``uvicorn``, the
    current directory is tried when the module is not found on ``sys.path`` (console scripts
    do not put it there)."""
    if not isinstance(ref, str) or not _FITNESS_NAME.match(ref) or "<" in ref:
        raise ConfigError(f"--fitness {ref!r}: expected module:function, e.g. mypkg.fit:score")
    module_name, qualname = ref.split(":", 1)
    try:
        if importlib.util.find_spec(module_name.split(".")[0]) is None \
                and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"--fitness {ref}: cannot import {module_name}: {err}") from err
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"--fitness {ref}: importing {module_name} raised "
                          f"{type(err).__name__}: {err}") from err
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError(f"--fitness {ref}: {module_name} has no attribute {qualname}"
                              ) from err
    if not callable(obj):
        raise ConfigError(f"--fitness {ref}: {qualname} is a {type(obj).__name__}, not callable")
    return obj


__all__ = ["FitnessRef", "check_fitness", "fitness_ref", "load_fitness"]
