"""A custom problem's fitness function: its reference in run.json, and the checks that a
worker was given that function.

Nothing here imports code named in a bucket: a custom fitness function comes from a worker's
own caller (code, ``--fitness``, the user's own TOML) and is only *compared* with the
fingerprint recorded in run.json.

What counts as "the same function": the fingerprint covers the function's syntax tree (so
whitespace, comments and line endings do not count), without its name, decorators, docstring
or type hints, plus the values of the plain constants (numbers, strings) and the source of
the helper functions defined beside it that it uses (as globals or from an enclosing
function), and its default arguments' values. Where it is defined does not count: the same
function in a notebook cell (``__main__``), a laptop's file and an installed module has one
fingerprint. Module-level data of other kinds (tensors, arrays, objects) is not covered.
"""

from __future__ import annotations

import ast
import dis
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
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, field_validator

from islandsync.errors import ConfigError

from ._base import STRICT

if TYPE_CHECKING:
    from .spec import RunSpec

#: Set (to True) on a wrapper that turns a function of one solution into a batch function
#: (islandsync.search.per_solution); the wrapped function is its ``__wrapped__``.
PER_SOLUTION_ATTR = "islandsync_per_solution"
#: Set on a module loaded from ``--fitness path/to/file.py:fn``: the path as the user gave it.
_PATH_ATTR = "__islandsync_path__"
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_QUALNAME = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_HOW = "path/to/file.py:function or module:function"


class FitnessRef(BaseModel):
    """Which user function a custom problem's workers must be given.

    ``name`` says where it was defined when the run was created (``fit.py:score``,
    ``__main__:fitness``, ``mypkg.fit:score``), for messages only. ``covers`` says what the
    fingerprint covers: ``"source"`` (see the module's docstring), or, in a run.json written
    before islandsync fingerprinted source alone (the field absent), ``"module+source"``:
    ``module:qualname`` and the dedented source, checked the old way."""

    model_config = STRICT
    name: str = Field(min_length=1, max_length=500)
    fingerprint: str
    per_solution: bool = False
    covers: Literal["source", "module+source"] = "module+source"

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if not name.isprintable():
            raise ValueError("must be printable text (where the function was defined)")
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


def _definition(tree: ast.AST, name: str) -> ast.AST | None:
    """The def (or the one lambda) that inspect.getsource's text holds."""
    if name == "<lambda>":
        found = [n for n in ast.walk(tree) if isinstance(n, ast.Lambda)]
        return found[0] if len(found) == 1 else None
    return next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef,
                 ast.AsyncFunctionDef)) and n.name == name), None)


def canonical_form(fn: Callable[..., Any]) -> str | None:
    """The function's definition as the fingerprint sees it (None when there is no source):
    its syntax tree without its name, decorators, docstring and type hints, written out by
    :func:`_dump`."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):  # no source, or a lambda mid-expression
        return None
    node = _definition(tree, getattr(fn, "__name__", ""))
    if node is None:
        return None
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.name, node.decorator_list, node.returns = "_", [], None
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    for arg in ast.walk(node.args):
        if isinstance(arg, ast.arg):
            arg.annotation = None
    return _dump(node)


def _dump(node: Any) -> str:
    """A syntax tree as text that is the same on every Python version: ``ast.unparse`` is not
    (3.11 writes ``for a, b in`` where 3.10 wrote ``for (a, b) in``; 3.12 changed f-string
    quotes), nor is ``ast.dump`` (3.13 leaves out empty fields). Fields that are None or empty
    are left out, so a field a newer Python added (3.12's ``type_params``) changes nothing;
    positions and type comments are not fields written."""
    if isinstance(node, ast.AST):
        fields = [f"{name}={_dump(value)}" for name in node._fields
                  if name != "type_comment"
                  and (value := getattr(node, name, None)) is not None and value != []]
        return f"{type(node).__name__}({', '.join(fields)})"
    if isinstance(node, list):
        return f"[{', '.join(_dump(item) for item in node)}]"
    return repr(node)


def _global_loads(code: types.CodeType) -> set[str]:
    names = {i.argval for i in dis.get_instructions(code)
             if i.opname in ("LOAD_GLOBAL", "LOAD_NAME") and isinstance(i.argval, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_loads(const)
    return names


def _constant(value: Any) -> bool:
    if isinstance(value, (tuple, frozenset)):
        return all(_constant(v) for v in value)
    return value is None or type(value) in (bool, int, float, complex, str, bytes)


def _uses(fn: Callable[..., Any], seen: set[int]) -> list[str]:
    """``name = value`` of each plain constant and ``name = def ...`` of each helper function
    defined beside ``fn`` (same module) that ``fn`` reads as a global or from an enclosing
    function (so ``make_fitness(0.5)`` and ``make_fitness(0.7)`` differ), recursively; and
    the values of its default arguments."""
    code, scope = getattr(fn, "__code__", None), getattr(fn, "__globals__", None)
    if not isinstance(code, types.CodeType) or not isinstance(scope, dict):
        return []
    found = [(name, scope[name]) for name in sorted(_global_loads(code)) if name in scope]
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            found.append((f"(enclosing) {name}", cell.cell_contents))
        except ValueError:  # a cell not filled yet
            continue
    found += [("(defaults)", getattr(fn, "__defaults__", None)),
              ("(keyword defaults)", tuple(sorted((getattr(fn, "__kwdefaults__", None)
                                                   or {}).items())))]
    lines = []
    for name, value in found:
        if _constant(value):
            lines.append(f"{name} = {value!r}")
        elif isinstance(value, types.FunctionType) and value.__module__ == fn.__module__ \
                and id(value) not in seen:
            seen.add(id(value))
            lines.append(f"{name} = def {canonical_form(value)}")
            lines += _uses(value, seen)
    return lines


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    if getattr(fn, PER_SOLUTION_ATTR, False) is True:
        return fn.__wrapped__, True  # type: ignore[attr-defined]
    return fn, False


def _place(fn: Callable[..., Any]) -> str:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(f"fitness must be a function or class with a module and a name, "
                          f"got {fn!r}")
    path = getattr(sys.modules.get(module), _PATH_ATTR, None)
    return f"{path if isinstance(path, str) else module}:{qualname}"


def fitness_ref(fn: Callable[..., Any], *, per_solution: bool = False) -> FitnessRef:
    """Where a user's fitness function is defined, and its fingerprint: sha256 over its
    canonical form (:func:`canonical_form`) and the constants and helper functions beside
    it that it uses, and whether it takes one solution (wrapped by ``islandsync.per_solution``,
    or ``per_solution=True``, ``--per-solution``: the same fingerprint).

    Without source (defined by ``exec``, or only .pyc shipped) it falls back to the bytecode,
    constants and names, which is stable only across one Python minor version."""
    inner, wrapped = _unwrap(fn)
    per_solution = per_solution or wrapped
    name = _place(inner)
    h = hashlib.sha256(b"islandsync fitness source\0"
                       + (b"per-solution" if per_solution else b"batch"))
    source = canonical_form(inner)
    code = getattr(inner, "__code__", None)
    if source is not None:
        h.update(b"\0source\0" + source.encode("utf-8", "backslashreplace"))
    elif isinstance(code, types.CodeType):
        h.update(b"\0code\0" + _code_digest(code))
    else:  # a builtin: its name is all there is
        h.update(b"\0name\0" + f"{inner.__module__}:{inner.__qualname__}".encode())
    for line in _uses(inner, {id(inner)}):
        h.update(b"\0uses\0" + line.encode("utf-8", "backslashreplace"))
    return FitnessRef(name=name, fingerprint=h.hexdigest(), per_solution=per_solution,
                      covers="source")


def _module_source_fingerprint(fn: Callable[..., Any]) -> tuple[str, str]:
    """``module:qualname`` and the fingerprint of a run.json written before source-only
    fingerprints (``covers = "module+source"``): sha256 over that name and the dedented
    source, else the bytecode."""
    name = f"{fn.__module__}:{fn.__qualname__}"
    h = hashlib.sha256(b"name\0" + name.encode())
    try:
        source = textwrap.dedent(inspect.getsource(fn))
        h.update(b"\0source\0" + source.replace("\r\n", "\n").replace("\r", "\n").encode())
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        if isinstance(code, types.CodeType):
            h.update(b"\0code\0" + _code_digest(code))
    return name, h.hexdigest()


def check_fitness(spec: RunSpec, fn: Callable[..., Any] | None) -> None:
    """Refuse a fitness function that is not the one the run recorded (or one a built-in run
    does not take); a refusal names both places and both fingerprints."""
    problem = spec.problem
    if problem.name != "custom":
        if fn is not None:
            raise ConfigError(f"run uses built-in problem {problem.name}; "
                              f"do not pass a fitness function")
        return
    recorded = problem.fitness
    assert recorded is not None  # ProblemSpec guarantees it for custom problems
    if fn is None:
        where, _, qualname = recorded.name.rpartition(":")
        # A notebook's __main__ is no file another process can name: the same source in one.
        ref = f"path/to/file.py:{qualname}" if where == "__main__" else recorded.name
        raise ConfigError(f"run uses custom fitness function {recorded.name}; pass the same "
                          f"function: `fitness=` in Python, `--fitness {ref}` on the command "
                          f"line" + (" with --per-solution" if recorded.per_solution else ""))
    if recorded.covers == "module+source":
        _check_module_source(recorded, fn)
        return
    given = fitness_ref(fn)
    if given.fingerprint == recorded.fingerprint:
        return
    if given.per_solution != recorded.per_solution:
        why = ("the run's takes one solution: wrap it with islandsync.per_solution(fn) or "
               "pass --per-solution" if recorded.per_solution else
               "the run's takes the whole batch: pass it unwrapped, without --per-solution")
    else:
        why = ("its source, or a constant or helper beside it that it uses, differs (not "
               "counted: comments, docstring, type hints, its name, where it is defined)")
    raise ConfigError(f"fitness function differs from the run's: run.json records "
                      f"{recorded.name} (fingerprint {recorded.fingerprint[:16]}), given "
                      f"{given.name} (fingerprint {given.fingerprint[:16]}); {why}")


def _check_module_source(recorded: FitnessRef, fn: Callable[..., Any]) -> None:
    inner, _ = _unwrap(fn)
    _place(inner)  # a clear error for what has no module and name
    name, fingerprint = _module_source_fingerprint(inner)
    if (name, fingerprint) != (recorded.name, recorded.fingerprint):
        raise ConfigError(f"fitness function differs from the run's: this run.json was written "
                          f"before source-only fingerprints and records {recorded.name} "
                          f"(fingerprint {recorded.fingerprint[:16]}, covering its module "
                          f"name too), given {name} (fingerprint {fingerprint[:16]}); pass "
                          f"that same module:function unchanged, or create a new run")


def load_fitness(ref: str, *, base: str | os.PathLike[str] | None = None,
                 main_is_users: bool = True) -> Callable[..., Any]:
    """The function ``path/to/file.py:fn``, ``module:fn`` or ``__main__:fn`` names, for a
    worker's OWN ``--fitness`` argument (or the user's own TOML; a relative path is relative
    to ``base``, default the current directory).

    Only ever call this with what a user typed or wrote, never with a name read from a bucket:
    importing runs the module's code. A module not found on ``sys.path`` is tried in the current
    directory (console scripts do not put it there), as ``uvicorn`` does. ``__main__`` is looked
    up, not imported: it works in the process that defined the function (a notebook's kernel),
    and says what to do instead in any other (``main_is_users=False``: the islandsync command,
    whose ``__main__`` is its own)."""
    where, _, qualname = ref.rpartition(":") if isinstance(ref, str) else ("", "", "")
    if not where or not _QUALNAME.match(qualname):
        raise ConfigError(f"--fitness {ref!r}: expected {_HOW}, e.g. fit.py:score")
    if where == "__main__":
        module = sys.modules.get("__main__")
        if not main_is_users or not hasattr(module, qualname.split(".")[0]):
            raise ConfigError(
                f"--fitness {ref}: __main__ is the notebook or script that defined "
                f"{qualname}, and this process is another one; save the function in a file "
                f"and pass --fitness path/to/file.py:{qualname} (only its source is "
                f"fingerprinted, so the same function in a file matches)")
    elif where.endswith(".py") or "/" in where or os.sep in where:
        module = _load_file(ref, where, base)
    elif _MODULE.match(where):
        module = _import(ref, where)
    else:
        raise ConfigError(f"--fitness {ref!r}: expected {_HOW}, e.g. fit.py:score")
    obj: Any = module
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as err:
            raise ConfigError(f"--fitness {ref}: {where} has no attribute {qualname}") from err
    if not callable(obj):
        raise ConfigError(f"--fitness {ref}: {qualname} is a {type(obj).__name__}, not callable")
    return obj


def _import(ref: str, module_name: str) -> types.ModuleType:
    try:
        if importlib.util.find_spec(module_name.split(".")[0]) is None \
                and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"--fitness {ref}: cannot import {module_name}: {err}") from err
    except Exception as err:  # the user's module raised while importing
        raise ConfigError(f"--fitness {ref}: importing {module_name} raised "
                          f"{type(err).__name__}: {err}") from err


def _load_file(ref: str, path: str, base: str | os.PathLike[str] | None) -> types.ModuleType:
    full = os.path.abspath(os.path.join(base or os.getcwd(), os.path.expanduser(path)))
    if not os.path.isfile(full):
        raise ConfigError(f"--fitness {ref}: no such file {full}")
    # One module per file, under a name of its own: the file's name could shadow a package.
    name = "islandsync_fitness_" + hashlib.sha256(full.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, full)
    assert spec is not None and spec.loader is not None  # a .py file that exists
    module = importlib.util.module_from_spec(spec)
    setattr(module, _PATH_ATTR, path)
    sys.modules[name] = module
    # Its own imports of files beside it work, as `python path/to/file.py` finds them.
    if os.path.dirname(full) not in sys.path:
        sys.path.insert(0, os.path.dirname(full))
    try:
        spec.loader.exec_module(module)
    except Exception as err:  # the user's file raised while running
        del sys.modules[name]
        raise ConfigError(f"--fitness {ref}: running {path} raised "
                          f"{type(err).__name__}: {err}") from err
    return module


def resolve_fitness(fitness: FitnessRef | Callable[..., Any] | str, *,
                    base: str | os.PathLike[str] | None = None) -> FitnessRef:
    """A run spec's fitness reference from a function, a reference string (loaded by
    :func:`load_fitness`) or a ready :class:`FitnessRef`."""
    if isinstance(fitness, FitnessRef):
        return fitness
    if isinstance(fitness, str):
        fitness = load_fitness(fitness, base=base)
    if not callable(fitness):
        raise ConfigError(f"fitness must be a function or {_HOW}, got {fitness!r}")
    return fitness_ref(fitness)


__all__ = ["PER_SOLUTION_ATTR", "FitnessRef", "canonical_form", "check_fitness",
           "fitness_ref", "load_fitness", "resolve_fitness"]
