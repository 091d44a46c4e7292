"""A custom problem's fitness function (islandsync/config/fitness.py): a fingerprint of the
source alone, references to a file, a module or ``__main__``, the check at a worker's start,
and a TOML file or ``init --fitness`` naming the function."""

from __future__ import annotations

import functools
import hashlib
import inspect
import sys
import textwrap
import types
from pathlib import Path

import pytest

from islandsync.bucket.run import read_spec
from islandsync.cli import main
from islandsync.config import (
    FitnessRef,
    RunSpec,
    check_fitness,
    fitness_ref,
    load_fitness,
    load_toml,
    parse_spec,
    spec_from_flags,
)
from islandsync.errors import ConfigError
from islandsync.search.per_solution import per_solution
from islandsync.store import open_store


def my_fitness(x):
    return sum(v * v for v in x)


@pytest.fixture(autouse=True)
def _sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_fitness puts a file's folder first on sys.path: restored after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


# One function, with a constant and a helper beside it, as three places hold it.
LAPTOP = '''import torch

SHIFT = 0.5


def helper(x):
    return (x - SHIFT) ** 2


def score(x):
    return helper(x).sum(dim=1)
'''
INSTALLED = '''"""The same function, as a package's module holds it."""
import torch
SHIFT = 0.5
def helper(x: torch.Tensor) -> torch.Tensor:
    return (x-SHIFT)**2   # squared distance to the shift
class Problems:
    @staticmethod
    def fitness(x: torch.Tensor) -> torch.Tensor:
        """Shifted sphere: one value per row."""
        return helper(x).sum(dim = 1)
'''


def notebook_cell(source: str, folder: Path, n: int = 1) -> types.ModuleType:
    """``source`` run as a Jupyter kernel runs cell ``n``: in a module named ``__main__``
    (with no ``__spec__``), compiled from a file of its own, where inspect finds the source."""
    cell = folder / f"ipykernel_cell_{n}.py"
    cell.write_text(source)
    module = types.ModuleType("__main__")
    module.__spec__ = None
    exec(compile(source, str(cell), "exec"), module.__dict__)  # noqa: S102
    return module


def base_custom() -> dict:
    return {"problem": {"name": "custom", "genome": {"dim": 3, "lower": 0.0, "upper": 1.0}},
            "algorithm": {"name": "ga"}, "islands": 2}


def custom_spec(fn) -> RunSpec:
    data = base_custom()
    data["problem"]["fitness"] = fitness_ref(fn).model_dump()
    return parse_spec(data, source="t")


def test_the_same_function_anywhere_has_one_fingerprint(tmp_path: Path, monkeypatch) -> None:
    """A notebook cell (__main__), a laptop's file and an installed module: one fingerprint,
    whatever the module, the file, the function's name, comments, docstring or type hints."""
    (tmp_path / "laptop").mkdir()
    (tmp_path / "laptop" / "fit.py").write_text(LAPTOP)
    (tmp_path / "site" / "userpkg_fit").mkdir(parents=True)
    (tmp_path / "site" / "userpkg_fit" / "problems.py").write_text(INSTALLED)
    (tmp_path / "site" / "userpkg_fit" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.chdir(tmp_path)

    from_file = load_fitness("laptop/fit.py:score")
    installed = load_fitness("userpkg_fit.problems:Problems.fitness")
    cell = notebook_cell(LAPTOP, tmp_path).score
    refs = [fitness_ref(f) for f in (from_file, installed, cell)]
    assert [r.name for r in refs] == ["laptop/fit.py:score",
                                      "userpkg_fit.problems:Problems.fitness", "__main__:score"]
    assert len({r.fingerprint for r in refs}) == 1, refs
    assert all(r.covers == "source" and not r.per_solution for r in refs)


@pytest.mark.parametrize("change", [
    ("SHIFT = 0.5", "SHIFT = 0.7"),  # a constant it uses
    ("(x - SHIFT) ** 2", "abs(x - SHIFT)"),  # a helper it calls
    ("helper(x).sum(dim=1)", "helper(x).mean(dim=1)"),  # its own body
])
def test_what_the_fingerprint_covers(change: tuple[str, str], tmp_path: Path) -> None:
    same = notebook_cell(LAPTOP, tmp_path).score
    other = notebook_cell(LAPTOP.replace(*change), tmp_path, 2).score
    assert fitness_ref(same).fingerprint != fitness_ref(other).fingerprint
    # The same function taking one solution is another function.
    assert fitness_ref(same).fingerprint != fitness_ref(same, per_solution=True).fingerprint


# Constructs whose ast.unparse or ast.dump differ between Python 3.10, 3.11, 3.12 and 3.13
# (tuple targets, f-string quotes, empty fields): the fingerprint below was the same on each
# of them (checked with pyenv's 3.10.13, 3.11.7, 3.12.1, 3.13.0). It is stored in run.json,
# so it must never change: not with the Python version, not with islandsync's.
ACROSS_PYTHONS = r'''import torch

K = 3


def f1(x: "torch.Tensor", *, scale: float = 2.0, eps=1e-9) -> torch.Tensor:
    """Doc."""
    # comment
    z = (x - 0.5) ** 2 * scale + eps
    y = -z.sum(dim=1) if K > 2 else z.mean(1)
    w = [a @ b for a, b in zip(x, x) if a is not None and not (0 < a.sum() <= 1)]
    g = lambda t: t[..., 0] + t[:, 1:3].sum(-1)
    s = f"{K!r:>4} {'q'} {x.shape[0]}" + 'it\'s' + "say \"hi\""
    if (n := len(w)) > 0:
        pass
    a, *b = x.shape
    d = {"k": 1, **{}}
    return torch.where(x > 0, x, -x).sum(dim=1) + g(x) * 1_000 + 0x10 + 1e-3 + (1, 2)[0] + d["k"]

'''
ACROSS_PYTHONS_FINGERPRINT = "ec329a384a8bbc8b3b1c2d9a3410d4b6f090cc97e475f1a67e92904357ca2a75"


def test_the_fingerprint_is_the_same_on_every_python(tmp_path: Path) -> None:
    (tmp_path / "sample.py").write_text(ACROSS_PYTHONS)
    ref = fitness_ref(load_fitness(f"{tmp_path}/sample.py:f1"))
    assert ref.fingerprint == ACROSS_PYTHONS_FINGERPRINT


def test_a_closure_is_fingerprinted_with_what_it_encloses(tmp_path: Path) -> None:
    factory = notebook_cell("def make_fitness(shift):\n"
                            "    def fitness(x):\n"
                            "        return ((x - shift) ** 2).sum(dim=1)\n"
                            "    return fitness\n", tmp_path).make_fitness
    assert fitness_ref(factory(0.5)) == fitness_ref(factory(0.5))
    assert fitness_ref(factory(0.5)).fingerprint != fitness_ref(factory(0.7)).fingerprint


def test_a_changed_function_is_refused_naming_both(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = custom_spec(notebook_cell(LAPTOP, tmp_path).score)
    Path("fit.py").write_text(LAPTOP)
    check_fitness(spec, load_fitness("fit.py:score"))  # the same function from a file joins
    Path("changed.py").write_text(LAPTOP.replace("SHIFT = 0.5", "SHIFT = 0.25"))
    changed = load_fitness("changed.py:score")
    with pytest.raises(ConfigError) as info:
        check_fitness(spec, changed)
    recorded, given = spec.problem.fitness.fingerprint, fitness_ref(changed).fingerprint
    assert recorded != given
    assert (f"run.json records __main__:score (fingerprint {recorded[:16]}), given "
            f"changed.py:score (fingerprint {given[:16]})") in str(info.value)
    with pytest.raises(ConfigError, match="the run's takes the whole batch: pass it unwrapped"):
        check_fitness(spec, per_solution(load_fitness("fit.py:score")))


def test_check_fitness(tmp_path: Path) -> None:
    spec = custom_spec(my_fitness)
    check_fitness(spec, my_fitness)

    ns: dict = {"__name__": __name__}  # exec'd: no source, the bytecode is compared
    exec("def my_fitness(x):\n    return sum(abs(v) for v in x)\n", ns)  # noqa: S102
    with pytest.raises(ConfigError, match="its source, or a constant or helper"):
        check_fitness(spec, ns["my_fitness"])
    with pytest.raises(ConfigError) as info:
        check_fitness(spec, None)
    assert f"--fitness {__name__}:my_fitness" in str(info.value)
    assert "fitness=" in str(info.value)
    with pytest.raises(ConfigError, match="`--fitness path/to/file.py:score` on the command line"):
        check_fitness(custom_spec(notebook_cell(LAPTOP, tmp_path).score), None)

    builtin = parse_spec({**base_custom(), "problem": {"name": "rastrigin", "genome": {
        "dim": 3, "lower": 0.0, "upper": 1.0}}}, source="t")
    check_fitness(builtin, None)
    with pytest.raises(ConfigError, match="run uses built-in problem rastrigin; do not pass"):
        check_fitness(builtin, my_fitness)


def test_run_json_of_the_module_and_source_form_still_checks() -> None:
    """A run.json written before source-only fingerprints (no ``covers``): checked the old
    way, module:qualname and the dedented source."""
    name = f"{__name__}:my_fitness"
    old = hashlib.sha256(b"name\0" + name.encode() + b"\0source\0"
                         + textwrap.dedent(inspect.getsource(my_fitness)).encode()).hexdigest()
    data = base_custom()
    data["problem"]["fitness"] = {"name": name, "fingerprint": old}
    spec = parse_spec(data, source="run.json")
    assert spec.problem.fitness.covers == "module+source"
    check_fitness(spec, my_fitness)

    def my_other(x):
        return sum(v * v for v in x)

    with pytest.raises(ConfigError, match="written before source-only fingerprints"):
        check_fitness(spec, my_other)


def test_fitness_ref_shape_and_determinism() -> None:
    ref = fitness_ref(my_fitness)
    assert ref.name == f"{__name__}:my_fitness"
    assert len(ref.fingerprint) == 64 and ref == fitness_ref(my_fitness)

    def module_with(source: str) -> types.ModuleType:
        module = types.ModuleType("fitmod_test")
        exec(compile(source, "<fitmod_test>", "exec"), module.__dict__)  # no file: bytecode
        return module

    a = module_with("def f(x):\n    return x + 1\n").f
    b = module_with("def f(x):\n    return x + 2\n").f
    c = module_with("def f(x):\n    return [y for y in x]\n").f
    d = module_with("def f(x):\n    return [y for y in x]\n").f
    assert fitness_ref(a).fingerprint != fitness_ref(b).fingerprint  # differs via co_consts
    assert fitness_ref(c) == fitness_ref(d)  # nested code objects do not leak addresses
    e = module_with("import math\ndef f(x):\n    return math.sin(x)\n").f
    g = module_with("import math\ndef f(x):\n    return math.cos(x)\n").f
    assert fitness_ref(e).fingerprint != fitness_ref(g).fingerprint  # differs via co_names
    assert FitnessRef(name="a.b:c", fingerprint="0" * 64).name == "a.b:c"


def test_fitness_ref_rejects_non_functions() -> None:
    with pytest.raises(ConfigError, match="fitness must be"):
        fitness_ref(functools.partial(my_fitness))


def test_main_reference_works_in_process_and_says_what_to_do_elsewhere(monkeypatch) -> None:
    """A kernel's __main__ has no __spec__: `--fitness __main__:fitness` used to fail with
    ``__main__.__spec__ is None``."""
    kernel_main = types.ModuleType("__main__")
    kernel_main.__spec__ = None
    kernel_main.fitness = my_fitness
    monkeypatch.setitem(sys.modules, "__main__", kernel_main)
    assert load_fitness("__main__:fitness") is my_fitness
    assert spec_from_flags(problem="custom", dim=3, lower=0, upper=1,
                           fitness="__main__:fitness").problem.fitness == fitness_ref(my_fitness)
    for ref, where in (("__main__:fitness", False), ("__main__:nothing", True)):
        with pytest.raises(ConfigError, match=r"this process is another one; save the function "
                                              r"in a file and pass --fitness path/to/file.py:"):
            load_fitness(ref, main_is_users=where)


def test_load_fitness(tmp_path, monkeypatch) -> None:
    assert load_fitness(f"{__name__}:my_fitness") is my_fitness
    assert load_fitness("os.path:join") is __import__("os").path.join
    (tmp_path / "userfit_mod.py").write_text("class K:\n    @staticmethod\n    def f(x):\n"
                                             "        return 1\nVALUE = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert load_fitness("userfit_mod:K.f")([1]) == 1  # found in the current directory
    assert load_fitness("userfit_mod.py:K.f")([1]) == 1  # the file itself
    with pytest.raises(ConfigError, match="has no attribute K.g"):
        load_fitness("userfit_mod:K.g")
    with pytest.raises(ConfigError, match="not callable"):
        load_fitness("userfit_mod:VALUE")
    with pytest.raises(ConfigError, match="cannot import no_such_module_xyz"):
        load_fitness("no_such_module_xyz:f")
    with pytest.raises(ConfigError, match="no such file"):
        load_fitness("no/such/file.py:f")
    (tmp_path / "userfit_broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="raised RuntimeError: boom"):
        load_fitness("userfit_broken:f")
    with pytest.raises(ConfigError, match="running userfit_broken.py raised RuntimeError"):
        load_fitness("userfit_broken.py:f")
    for bad in ["nocolon", "a:b:c", "mod:f.<locals>.g", ":f", "mod:"]:
        with pytest.raises(ConfigError, match="expected path/to/file.py:function or module"):
            load_fitness(bad)


TOML = """islands = 2
[problem]
name = "custom"
{fitness}
[problem.genome]
dim = 3
lower = 0
upper = 1
[algorithm]
name = "ga"
"""


def test_toml_names_the_function_and_init_fingerprints_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "fit.py").write_text(LAPTOP)
    path = tmp_path / "conf" / "run.toml"
    monkeypatch.chdir(tmp_path)  # the path in the file is relative to the file
    path.write_text(TOML.format(fitness='fitness = "fit.py:score"'))
    ref = fitness_ref(load_fitness("conf/fit.py:score"))
    assert load_toml(path).problem.fitness.fingerprint == ref.fingerprint
    assert load_toml(path, fitness="conf/fit.py:score").problem.fitness.fingerprint \
        == ref.fingerprint  # the same function twice: fine
    (tmp_path / "other.py").write_text(LAPTOP.replace("0.5", "0.25"))
    with pytest.raises(ConfigError, match=r"problem.fitness names \S*fit.py:score \(fingerprint "
                                          r"\w{16}\) but --fitness gives other.py:score"):
        load_toml(path, fitness="other.py:score")
    path.write_text(TOML.format(fitness=""))
    assert load_toml(path, fitness="other.py:score").problem.fitness.name == "other.py:score"
    path.write_text(TOML.format(fitness='fitness = {ref = "fit.py:score", per_solution = true}'))
    assert load_toml(path).problem.fitness.per_solution is True


def test_init_takes_fitness_and_says_to_pass_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    Path("fit.py").write_text(LAPTOP)
    box = ["--dim", "3", "--lower", "0", "--upper", "1", "--islands", "2"]
    assert main(["init", "run", "--problem", "custom", *box]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "--fitness path/to/file.py:function" in err, err
    assert not Path("run").exists()

    assert main(["init", "run", "--fitness", "fit.py:score", *box]) == 0
    spec = read_spec(open_store("run"))
    assert spec.problem.fitness == fitness_ref(load_fitness("fit.py:score"))
    assert f"fitness fit.py:score, fingerprint {spec.problem.fitness.fingerprint[:16]}" \
        in capsys.readouterr().out
    assert main(["init", "run2", "--fitness", "fit.py:score", "--per-solution", *box]) == 0
    assert read_spec(open_store("run2")).problem.fitness.per_solution is True
    assert main(["worker", "run", "--fitness", "__main__:score", "--solo"]) == 2
    assert "save the function in a file" in capsys.readouterr().err
