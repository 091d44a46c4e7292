"""The package's layers, held: which layer may import which, and what never imports torch.

The allowed graph (docs/design.md, "Layers"); each layer may import itself and those listed:

    errors, durations                   nothing of islandsync (durations: errors)
    config                              errors, durations
    store                               errors, durations
    bucket   (torch-free protocol)      errors, durations, config, store
    search   (torch maths, no I/O)      errors, durations, config, bucket.ids (the genome-id constants)
    worker   (role)                     errors, durations, config, store, bucket, search
    leader   (role, never torch)        errors, durations, config, store, bucket
    views    (read-only, no torch)      errors, durations, config, store, bucket, leader.merge, env
    env      (notebook environment)     errors, durations, config, store, bucket
    testing, edges (api, cli, ...)      anything

So neither role imports the other, the maths does no I/O, the protocol is one folder, and a
view (status, report, metrics, results) reads a run the way the leader does, never a worker.
``testing`` is the harness tests and benchmarks share (FaultyStore among it): it may import
every layer, and nothing outside it imports it, edges included.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import islandsync

PACKAGE = Path(islandsync.__file__).resolve().parent
TESTS = Path(__file__).resolve().parent
BASE = {"errors", "durations"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "durations": {"errors"},
    "config": BASE,
    "store": BASE,
    "bucket": BASE | {"config", "store"},
    "search": BASE | {"config", "bucket.ids"},
    "worker": BASE | {"config", "store", "bucket", "search"},
    "leader": BASE | {"config", "store", "bucket"},
    "views": BASE | {"config", "store", "bucket", "leader.merge", "env"},
    "env": BASE | {"config", "store", "bucket"},
}


def _layer(module: str) -> str:
    """``islandsync.bucket.records`` -> ``bucket``; top-level modules are their own name; a
    name the package root defines (``from islandsync import __version__``) is the root."""
    parts = module.split(".")
    if len(parts) == 1 or not ((PACKAGE / parts[1]).is_dir()
                               or (PACKAGE / f"{parts[1]}.py").exists()):
        return "islandsync"
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every islandsync module ``path`` imports, lazily or not, resolved to absolute names."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("islandsync")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.startswith("islandsync"):
                # `from islandsync.bucket import codec` imports islandsync.bucket.codec
                found |= {f"{name}.{a.name}" for a in node.names} | {name}
    return found


def _allowed(source: str, target: str) -> bool:
    src, dst = _layer(source), _layer(target)
    if dst == "islandsync" or src == dst:
        return True  # the package root itself (its __init__ re-exports), or within a layer
    if src not in ALLOWED:
        return True  # the edges and islandsync.testing compose everything
    dotted = target.split(".", 1)[1]
    return any(dotted == a or dotted.startswith(a + ".") for a in ALLOWED[src])


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_import_follows_the_layers() -> None:
    wrong = []
    for path in _package_files():
        source = _module_name(path)
        for target in sorted(_imports(path)):
            if target.count(".") >= 1 and not _allowed(source, target):
                wrong.append(f"{source} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_nothing_outside_the_harness_imports_it() -> None:
    wrong = [f"{_module_name(path)} imports {target}" for path in _package_files()
             if _layer(_module_name(path)) != "testing"
             for target in sorted(_imports(path)) if _layer(target) == "testing"]
    assert not wrong, "the package imports its test harness:\n" + "\n".join(wrong)


def test_the_layer_checker_can_fail() -> None:
    assert not _allowed("islandsync.worker.worker", "islandsync.leader.coordinator")
    assert not _allowed("islandsync.leader.coordinator", "islandsync.worker.bucket_thread")
    assert not _allowed("islandsync.search.population", "islandsync.bucket.records")
    assert not _allowed("islandsync.bucket.records", "islandsync.leader.lease")
    assert _allowed("islandsync.search.population", "islandsync.bucket.ids")
    assert _allowed("islandsync.cli", "islandsync.worker.worker")
    assert not _allowed("islandsync.store.counting", "islandsync.testing.faulty")
    assert _layer("islandsync.testing.faulty") == "testing"


def test_each_layer_is_a_folder() -> None:
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert {"store", "bucket", "search", "worker", "leader", "views", "env"} <= folders
    # what is left at the top is the edges (and the two base modules), nothing else
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= {"__init__", "__main__", "errors", "durations", "api", "cli", "cli_flags",
                   "demo", "publish", "smoke"}, top


def _torch_free_modules() -> list[str]:
    names = []
    for path in _package_files():
        name = _module_name(path)
        if _layer(name) in ("bucket", "leader", "store", "views", "env") or name in (
                "islandsync.config", "islandsync.errors"):
            names.append(name)
    return names


def test_protocol_and_leader_never_import_torch() -> None:
    """Checked in a fresh interpreter, importing one module at a time: a coordinator on a
    laptop without torch must work."""
    modules = _torch_free_modules()
    assert "islandsync.leader.coordinator" in modules and "islandsync.bucket.records" in modules
    assert "islandsync.views.status" in modules and "islandsync.env.platforms" in modules
    code = ("import sys, importlib\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "    if 'torch' in sys.modules:\n"
            "        print(name); sys.exit(1)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, f"{done.stdout.strip()} imports torch {done.stderr[-2000:]}"


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(PACKAGE)): n for p in _package_files()
           if (n := len(p.read_text().splitlines())) > 550}
    assert not big, f"modules over ~500 lines (split them by concept): {big}"


#: Functions at most this long; longer ones are split by concept (the guide says ~80).
MAX_FUNCTION_LINES = 100


def _long_functions(source: str, name: str) -> list[str]:
    """``name:function (N lines)`` for each function or method of ``source`` over
    :data:`MAX_FUNCTION_LINES` lines, decorators not counted."""
    return [f"{name}:{node.name} ({length} lines)" for node in ast.walk(ast.parse(source))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES]


def test_the_function_length_checker_can_fail() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    assert _long_functions(f"def just_short():\n{body}\n", "m") == []  # 100 lines
    method = body.replace("\n", "\n    ")
    assert _long_functions(f"class C:\n    def long(self):\n    {method}\n        return 1\n",
                           "m") == [f"m:long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_function_is_over_100_lines() -> None:
    long = [f for path in _package_files()
            for f in _long_functions(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines (split them): {long}"


#: The package's folders whose modules each have a test file of their own.
MIRRORED = ("bucket", "config", "env", "leader", "search", "store", "views", "worker")
#: Modules with behaviour whose tests live elsewhere, and why (keep this list short).
TESTED_ELSEWHERE = {
    "bucket/history.py": "the history's records, written and read by tests/leader/test_history.py",
    "config/_base.py": "the strict base of every config model: tests/config/test_config.py",
    "config/algorithms.py": "algorithm settings and their registry: tests/config/test_config.py, "
                            "test_algorithm_registry.py, tests/search/test_algorithms.py",
    "config/loading.py": "TOML and flags into a spec: tests/config/test_config.py",
    "config/spec.py": "the run spec: tests/config/test_config.py, test_portfolio.py",
    "config/strategies.py": "migration and stop settings: tests/config/test_config.py",
    "search/algorithms/base.py": "the algorithm contract, run over the whole registry by "
                                 "tests/search/test_algorithms.py",
    "search/algorithms/de.py": "registry-wide: tests/search/test_algorithms.py",
    "search/algorithms/ga.py": "registry-wide: tests/search/test_algorithms.py",
    "search/algorithms/sampling.py": "registry-wide: tests/search/test_algorithms.py",
    "store/base.py": "the BlobStore contract, one suite over every store: "
                     "tests/store/test_contract.py",
    "store/local.py": "the contract suite runs on LocalStore: tests/store/test_contract.py",
    "store/s3_credentials.py": "tests/store/test_s3.py (against moto), tests/test_secrets.py",
    "worker/stack.py": "an engine of one algorithm on one device is one Stack: "
                       "tests/worker/test_engine_*.py",
}


def _has_behaviour(path: Path) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
               for n in ast.walk(ast.parse(path.read_text())))


def _mirror(path: Path) -> list[Path]:
    """Where a module's own tests may be: ``tests/<folder>/test_<module>.py``, or split by
    aspect as ``test_<module>_<aspect>.py``."""
    folder = TESTS.joinpath(*path.relative_to(PACKAGE).parts[:-1])
    return [folder / f"test_{path.stem}.py", *folder.glob(f"test_{path.stem}_*.py")]


def test_every_module_with_behaviour_has_its_test_file() -> None:
    missing, stale = [], []
    for path in _package_files():
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.split("/")[0] not in MIRRORED or path.name == "__init__.py" \
                or not _has_behaviour(path):
            continue
        mirrored = any(p.exists() for p in _mirror(path))
        if not mirrored and rel not in TESTED_ELSEWHERE:
            missing.append(f"{rel}: tests/{Path(rel).parent.as_posix()}/test_{path.stem}.py")
        if mirrored and rel in TESTED_ELSEWHERE:
            stale.append(rel)
    assert not missing, "modules without a test file of their own:\n" + "\n".join(missing)
    assert not stale, f"drop from TESTED_ELSEWHERE (they have a test file now): {stale}"
    gone = [m for m in TESTED_ELSEWHERE if not (PACKAGE / m).exists()]
    assert not gone, f"TESTED_ELSEWHERE names modules that are gone: {gone}"


def test_importing_a_part_does_not_run_the_edges() -> None:
    """A coordinator importing the protocol does not run api, the notebook environment or
    the views (islandsync/__init__ imports its public names when first used)."""
    code = ("import sys, islandsync.bucket.layout, islandsync.leader.coordinator\n"
            "edges = sorted(m for m in sys.modules if m.startswith(('islandsync.api', "
            "'islandsync.env', 'islandsync.views', 'islandsync.cli')))\n"
            "print(edges); sys.exit(1 if edges else 0)\n"
            "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"importing the protocol ran {done.stdout.strip()}"


#: A string constant shaped like a bucket key (not prose that mentions one).
_KEY_SHAPED = __import__("re").compile(
    r"^/?((islands|workers|elite|history|dist)/\S*|smoke-\S*|\S*HEAD\.json|"
    r"(run|lease|assignment|finished|protocol)\.json)$")


def _key_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)}
    return [f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and _KEY_SHAPED.match(node.value.strip())]


def test_no_bucket_key_literal_outside_the_layout() -> None:
    """Every key is built by bucket/layout.py (one home per key); islandsync/testing is the
    harness's, checked apart (a fault injector may name keys on purpose)."""
    found = [hit for p in _package_files()
             if p != PACKAGE / "bucket" / "layout.py" and "testing" not in p.parts
             for hit in _key_literals(p)]
    assert found == [], found
    assert _key_literals(PACKAGE / "bucket" / "layout.py"), "the checker can fail"
