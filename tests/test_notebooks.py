"""The platform notebooks (notebooks/*.ipynb): their shape, and a real run of each on a Jupyter
kernel, papermill style: the ``parameters`` cell is rewritten to a temporary directory and a
few seconds, the install cell skipped (the package is already installed here), and the run
cell runs exactly as shipped.

The install cell runs on a real kernel too, in a fresh virtual environment without
islandsync: with the line ``islandsync publish`` printed pasted in, it installs the run's own
wheel (checked by pip against its sha256) and the notebook joins the run; left as shipped, it
stops with one clear message."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

import islandsync
from islandsync.bucket.run import read_spec
from islandsync.config import spec_from_flags, spec_json
from islandsync.store import open_store

# The platforms' variables that detection reads, and the service account's e-mail and secret
# marker, as tests/env/test_credentials.py uses them.
from tests.conftest import EMAIL, MARKER, PLATFORM_VARS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SECRETS = {
    "kaggle": "GCS_SERVICE_ACCOUNT",
    "colab": "GCS_SERVICE_ACCOUNT",
    "paperspace": "GOOGLE_APPLICATION_CREDENTIALS",
    "local": "GOOGLE_APPLICATION_CREDENTIALS",
}
PARAM_LINE = {"RUN": re.compile(r"^RUN = .+$"), "DURATION": re.compile(r"^DURATION = .+$")}
SPEC = {"problem": "rastrigin", "dim": 1000, "islands": 8, "pop": 64, "algorithm": "portfolio",
        "target": 1e-3, "max_evals": 1_000_000_000}
#: The install cell's line to replace with the one `islandsync publish` prints.
PLACEHOLDER = '%pip install "PASTE HERE the line islandsync publish RUN printed"'
ABOUT, PARAMS, INSTALL, RUN_CELL = range(4)
CUSTOM = "custom_problem"  # the template for a user's own fitness function: a fitness cell more
TEST_DURATION = 8  # seconds: a leader is elected and islands assigned within ~2-5 s under load


def load(name: str):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_there_is_one_notebook_per_platform() -> None:
    """One per platform, and the template for a custom problem."""
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*SECRETS, CUSTOM])


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_notebook_shape(name: str) -> None:
    nb = load(name)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata.kernelspec.name == "python3"
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "code", "code"]
    about, params, install, run = nb.cells
    for cell in (params, install, run):
        assert cell.outputs == [] and cell.execution_count is None, "outputs are stored"

    assert SECRETS[name] in about.source
    # The platform's own rules, with the date they were checked (issue 14).
    assert "This platform's rules" in about.source
    if name != "local":
        assert "checked 2026-11" in about.source
        assert f"islandsync/env/profiles/{name}.toml" in about.source
    if name == "colab":
        assert "distributed computing workers" in about.source and "Pro" in about.source
    # The install cell: the one line the user pastes, and a clear stop when it was not
    # replaced; no package-index name, no download code, no import before pip (issue 17).
    assert install.source.count(PLACEHOLDER) == 1
    assert len(re.findall(r"^%pip install ", install.source, re.M)) == 1
    code = [ln for ln in install.source.splitlines() if ln and not ln.startswith("#")]
    assert code[0] == PLACEHOLDER, code
    assert "islandsync is not installed" in install.source
    for word in ("subprocess", "pip_install", "dist/", "google.cloud", "boto3", "github.com"):
        assert word not in install.source, word
    assert "islandsync publish RUN" in about.source and "#sha256=" in about.source
    # The default run stops by itself (issue 17: quota), and the markdown says how to set
    # DURATION.
    assert "Setting `DURATION`" in about.source
    assert "target=1e-3" in run.source and "max_evals=1_000_000_000" in run.source
    assert "parameters" not in install.metadata.get("tags", [])

    assert params.metadata.get("tags") == ["parameters"]
    lines = params.source.splitlines()
    assert len(lines) == 2
    assert PARAM_LINE["RUN"].match(lines[0]) and PARAM_LINE["DURATION"].match(lines[1])
    assert "islandsync.run(" in run.source
    # The package root is the notebooks' one import: islandsync.spec_from_flags, no submodule.
    assert "spec = islandsync.spec_from_flags(" in run.source
    assert "from islandsync" not in run.source and "import islandsync\n" in run.source
    assert "print(summary)" in run.source
    # No credential code: islandsync.run finds the platform's credentials itself.
    assert "islandsync.run(RUN, spec=spec, duration=DURATION)" in run.source
    for word in ("credentials", "secret", "kaggle_secrets", "google.colab", "os.environ"):
        assert word not in run.source.lower(), word


def test_install_cells_are_the_same_everywhere() -> None:
    """One install cell for every platform (local.ipynb adds a torch hint first)."""
    cells = {load(name).cells[INSTALL].source.removeprefix(
        "# %pip install -q torch  # only if this Jupyter has no torch yet\n") for name in SECRETS}
    assert len(cells) == 1, cells


def test_the_default_spec_stops_by_itself() -> None:
    """The run cell's spec, built as the cell builds it: a target and an evaluation budget."""
    source = load("kaggle").cells[RUN_CELL].source
    definition = source.split("summary = ", 1)[0]
    namespace: dict = {}
    exec(compile(definition, "kaggle.ipynb:run", "exec"), namespace)  # noqa: S102
    stop = namespace["spec"].stop
    assert stop.target == 1e-3 and stop.max_evals == 1_000_000_000
    assert namespace["spec"] == spec_from_flags(**SPEC)


def parameterize(params_source: str, run: Path | str, duration: float) -> str:
    """The parameters cell with its two assignments replaced, as papermill would inject them."""
    assert len(params_source.splitlines()) == 2
    return f"RUN = {str(run)!r}\nDURATION = {duration!r}"


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory: pytest.TempPathFactory):
    """A KernelSpecManager whose python3 kernel runs this interpreter (this venv), whatever
    other kernelspecs the machine has."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(path=str(kernels / "python3"))
    argv = json.loads((kernels / "python3" / "kernel.json").read_text())["argv"]
    assert argv[0] == sys.executable
    return KernelSpecManager(kernel_dirs=[str(kernels)])


def outputs_text(cell) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("display_data", "execute_result"):
            parts.append(str(out.data.get("text/plain", "")))
        elif out.output_type == "error":
            parts.append("\n".join(out.traceback))
    return "\n".join(parts)


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_notebook_runs_on_a_kernel(name: str, tmp_path: Path, kernel_specs,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # The kernel inherits this environment: no credentials or emulator from elsewhere.
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)

    nb = load(name)
    nb.cells[INSTALL].source = "# install skipped in tests: islandsync is already installed"
    run_dir = tmp_path / "run"
    nb.cells[PARAMS].source = parameterize(nb.cells[PARAMS].source, run_dir, TEST_DURATION)
    # Test-only last cell: which interpreter and which islandsync the kernel used.
    nb.cells.append(nbformat.v4.new_code_cell(
        "import sys, islandsync\nprint(sys.executable)\nprint(islandsync.__file__)",
        id="which"))

    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(nb, km=km, kernel_name="python3", timeout=120,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()

    which = outputs_text(nb.cells[-1]).split()
    assert which == [sys.executable, islandsync.__file__]

    run_cell = nb.cells[RUN_CELL]
    text = outputs_text(run_cell)
    assert not [o for o in run_cell.outputs if o.output_type == "error"], text
    assert "Traceback" not in text, text
    # print(summary): the RunSummary repr, stopped by DURATION, with a best fitness.
    assert "RunSummary(" in text, text
    assert "stopped='duration elapsed'" in text, text
    assert re.search(r"best_fitness=\d", text), text
    # The progress display was updated in place to the final summary line.
    displays = [o for o in run_cell.outputs if o.output_type == "display_data"]
    assert displays and "stopped (duration elapsed)" in str(
        displays[-1].data.get("text/plain")), text

    # The run was created with the notebook's spec and every island checkpointed.
    assert (run_dir / "run.json").is_file()
    assert spec_json(read_spec(open_store(str(run_dir)))) == spec_json(spec_from_flags(**SPEC))
    heads = sorted(p.parent.name for p in run_dir.glob("islands/*/HEAD.json"))
    assert heads == [str(i) for i in range(SPEC["islands"])]


# The run cells hold no credential code: islandsync.run finds the platform's secret itself.
# That path runs here in this process, with stand-ins only for the platforms' own modules
# (kaggle_secrets, google.colab) and for open_store, which records the credentials it is
# given and then stops the run. Everything between the cell and open_store is the real code:
# platform detection, islandsync.env.credentials and google-auth with a freshly generated key.


class Reached(Exception):
    """Raised by the stand-in open_store: the run got as far as opening its bucket."""


def run_cell_credentials(name: str, monkeypatch: pytest.MonkeyPatch) -> object:
    """Run the notebook's run cell with RUN = gs://bucket/x; the credentials open_store got."""
    import islandsync.env.opening

    got: list[tuple[str, object]] = []

    def fake_open_store(url, credentials=None, **kwargs):
        got.append((url, credentials))
        raise Reached(url)

    monkeypatch.setattr(islandsync.env.opening, "open_store", fake_open_store)
    nb = load(name)
    source = parameterize(nb.cells[PARAMS].source, "gs://bucket/x", 60) + "\n" \
        + nb.cells[RUN_CELL].source
    with pytest.raises(Reached):
        exec(compile(source, f"{name}.ipynb:run", "exec"),  # noqa: S102
             {"__name__": "__notebook__"})
    (url, credentials), = got
    assert url == "gs://bucket/x"
    return credentials


@pytest.fixture
def on_platform(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process with no credentials from elsewhere and no platform yet: no credentials
    variable, no emulator, no platform variables, no platform modules."""
    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST",
                "ISLANDSYNC_SESSION_LIMIT", *PLATFORM_VARS):
        monkeypatch.delenv(var, raising=False)
    for mod in ("kaggle_secrets", "google.colab"):
        monkeypatch.setitem(sys.modules, mod, None)  # `import` raises ImportError
    return monkeypatch


def platform_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs) -> None:
    import importlib.machinery
    import types

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # found by find_spec
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


@pytest.fixture(scope="module")
def sa_json() -> str:
    """A valid service-account JSON key, as tests/env/test_credentials.py builds it: a fresh RSA
    key (never written to the repository) with the marker ahead of its PEM block."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return json.dumps({
        "type": "service_account", "project_id": "islandsync-test",
        "private_key_id": f"{MARKER}-id", "private_key": f"{MARKER}\n{pem}",
        "client_email": EMAIL, "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    })


def assert_planted(credentials: object, caplog: pytest.LogCaptureFixture, where: str) -> None:
    from google.oauth2 import service_account

    assert isinstance(credentials, service_account.Credentials)
    assert credentials.service_account_email == EMAIL
    assert where in caplog.text
    assert MARKER not in caplog.text and "PRIVATE KEY" not in caplog.text


def test_kaggle_run_cell_reads_the_secret(on_platform, sa_json: str,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="islandsync")
    asked: list[str] = []

    class UserSecretsClient:
        def get_secret(self, label: str) -> str:
            asked.append(label)
            return sa_json

    on_platform.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")  # as Kaggle sets it
    platform_module(on_platform, "kaggle_secrets", UserSecretsClient=UserSecretsClient)
    credentials = run_cell_credentials("kaggle", on_platform)
    assert asked == ["GCS_SERVICE_ACCOUNT"]
    assert_planted(credentials, caplog, "Kaggle secret GCS_SERVICE_ACCOUNT (service account)")


def test_colab_run_cell_reads_the_secret(on_platform, sa_json: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    import types

    caplog.set_level(logging.INFO, logger="islandsync")
    asked: list[str] = []
    signed_in: list[bool] = []

    class SecretNotFoundError(Exception):
        pass

    class NotebookAccessError(Exception):
        pass

    def get(key: str) -> str:
        asked.append(key)
        return sa_json

    userdata = types.SimpleNamespace(get=get, SecretNotFoundError=SecretNotFoundError,
                                     NotebookAccessError=NotebookAccessError)
    auth = types.SimpleNamespace(authenticate_user=lambda: signed_in.append(True))
    platform_module(on_platform, "google.colab", userdata=userdata, auth=auth)
    credentials = run_cell_credentials("colab", on_platform)
    assert asked == ["GCS_SERVICE_ACCOUNT"] and signed_in == []
    assert_planted(credentials, caplog, "Colab secret GCS_SERVICE_ACCOUNT (service account)")


def test_package_root_exports_what_notebooks_use() -> None:
    import islandsync
    import islandsync.config

    assert {"spec_from_flags", "fitness_ref", "run"} <= set(islandsync.__all__)
    assert islandsync.spec_from_flags is islandsync.config.spec_from_flags
    assert islandsync.fitness_ref is islandsync.config.fitness_ref


# -- the install cell: the pasted line, on a real kernel in a fresh venv --------------------

WHICH = ("import importlib.metadata, islandsync, google.cloud.storage as gcs\n"
         "print(islandsync.__file__)\n"
         "print(gcs.__version__, importlib.metadata.version('google-cloud-storage'))\n"
         "print(gcs is gcs_before)")


def execute_in_venv(nb, python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute ``nb`` on a kernel run by ``python`` (a fresh venv's), which inherits this
    environment less a checkout on PYTHONPATH, and with pip's index and cache off."""
    import os

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from islandsync.testing.venvs import venv_env

    for var in [v for v in os.environ if v.startswith("PIP_")] + [
            "PYTHONPATH", "GOOGLE_APPLICATION_CREDENTIALS"]:
        monkeypatch.delenv(var, raising=False)
    for var, value in venv_env().items():
        if var.startswith("PIP_"):
            monkeypatch.setenv(var, value)
    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fresh venv", "language": "python"}))
    km = KernelManager(kernel_name="python3",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
    NotebookClient(nb, km=km, kernel_name="python3", timeout=180,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()


@pytest.mark.gcs
def test_notebook_installs_from_the_pasted_line_and_joins_the_run(
        gcs_url: str, wheel: Path, old_gcs_wheel: Path, signing_credentials, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kaggle's notebook in a kernel set up like Kaggle's: torch and an older
    google-cloud-storage preinstalled, and already imported. The install cell is the shipped
    one with the line `islandsync publish` printed pasted in. It installs the run's own wheel
    and leaves google-cloud-storage alone (no upgrade under a kernel that imported it), and
    the worker joins the run."""
    from islandsync.publish import publish_line
    from islandsync.testing.venvs import fresh_venv, venv_run

    python = fresh_venv(tmp_path / "venv", hide=("google_cloud_storage",))
    done = venv_run(python, "-m", "pip", "install", "--no-deps", str(old_gcs_wheel), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    store = open_store(gcs_url, credentials=signing_credentials)
    line = publish_line(store, wheel)

    nb = load("kaggle")
    about, params, install, run = nb.cells
    install.source = install.source.replace(PLACEHOLDER, line)  # what the user pastes
    params.source = parameterize(params.source, gcs_url, TEST_DURATION)
    before = nbformat.v4.new_code_cell("import google.cloud.storage as gcs_before")
    nb.cells = [about, params, before, install, run, nbformat.v4.new_code_cell(WHICH)]
    execute_in_venv(nb, python, tmp_path, monkeypatch)

    installed = outputs_text(nb.cells[3])
    assert "Successfully installed islandsync-" in installed, installed
    where, versions, same = outputs_text(nb.cells[-1]).split("\n")[:3]
    assert where.startswith(str(tmp_path / "venv")), where
    assert versions == "2.19.0 2.19.0" and same == "True", installed
    text = outputs_text(nb.cells[4])
    assert "RunSummary(" in text and "stopped='duration elapsed'" in text, text
    assert "newest published wheel" not in text  # it runs the run's own version
    heads = [i.key for i in store.list("islands/") if i.key.endswith("/HEAD.json")]
    assert len(heads) == SPEC["islands"], heads


def test_install_cell_left_as_shipped_stops_with_one_clear_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The line not pasted: pip refuses the placeholder without asking any index, the cell
    stops "Run all" with one message saying what to paste, and the run cell never runs."""
    from nbclient.exceptions import CellExecutionError

    from islandsync.testing.venvs import fresh_venv

    python = fresh_venv(tmp_path / "venv")
    nb = load("local")
    nb.cells[PARAMS].source = parameterize(nb.cells[PARAMS].source, tmp_path / "run", 8)
    with pytest.raises(CellExecutionError):
        execute_in_venv(nb, python, tmp_path, monkeypatch)
    text = outputs_text(nb.cells[INSTALL])
    assert "Invalid requirement: 'PASTE HERE the line islandsync publish RUN printed'" in text
    assert "islandsync is not installed: replace the %pip line above with the line " \
           "`islandsync publish RUN` printed" in text, text
    assert "Traceback" not in text and "CalledProcessError" not in text, text
    assert nb.cells[RUN_CELL].outputs == [] and not (tmp_path / "run").exists()


# -- your own problem: the template notebook, joined from a file --------------------------

def test_custom_problem_notebook_shape() -> None:
    nb = load(CUSTOM)
    nbformat.validate(nb)
    assert [c.id for c in nb.cells] == ["about", "parameters", "install", "fitness", "run"]
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code"), "outputs are stored"
    assert nb.cells[PARAMS].metadata.get("tags") == ["parameters"]
    # The same install cell as the platform notebooks (Kaggle's, whose secrets it reads).
    assert nb.cells[INSTALL].source == load("kaggle").cells[INSTALL].source
    assert "def fitness(x):" in nb.cells[3].source
    assert "--fitness fit.py:fitness" in nb.cells[ABOUT].source
    assert "islandsync.per_solution(" in nb.cells[ABOUT].source
    run = nb.cells[4].source
    assert "fitness=fitness" in run and "islandsync.run(RUN, spec=spec, fitness=fitness" in run
    assert "max_evals=" in run  # a budget: a forgotten run does not burn a platform's quota


def island_generations(store) -> dict[int, int]:
    from islandsync.bucket.records import read_head

    spec = read_spec(store)
    return {i: read_head(store, i)[0].generation for i in range(spec.islands)}


def test_custom_problem_from_a_notebook_joined_by_a_worker_with_the_function_in_a_file(
        tmp_path: Path, kernel_specs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the run is created by the template notebook on a real kernel, its fitness
    defined in a cell (``__main__``); `islandsync worker RUN --fitness fit.py:fitness`, a
    process on "a laptop" with the same function in a file, advances its islands. The same
    file with one constant changed is refused, naming both places and both fingerprints."""
    import subprocess

    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    from islandsync.testing.processes import child_env, islandsync_argv

    for var in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    nb = load(CUSTOM)
    nb.cells[INSTALL].source = "# install skipped in tests: islandsync is already installed"
    run_dir = tmp_path / "run"
    nb.cells[PARAMS].source = parameterize(nb.cells[PARAMS].source, run_dir, TEST_DURATION)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    NotebookClient(nb, km=km, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = outputs_text(nb.cells[4])
    assert "RunSummary(" in text and "stopped='duration elapsed'" in text, text

    store = open_store(str(run_dir))
    recorded = read_spec(store).problem.fitness
    assert recorded is not None and recorded.name == "__main__:fitness"
    before = island_generations(store)

    # The laptop's copy of the fitness cell: a file, with a comment and a docstring of its own.
    cell = nb.cells[3].source
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "fit.py").write_text("# my laptop's copy\n" + cell.replace(
        "def fitness(x):\n", 'def fitness(x):\n    """Shifted Rastrigin."""\n'))
    (laptop / "changed.py").write_text(cell.replace("SHIFT = 1.25", "SHIFT = 1.5"))
    env = child_env(Path(__file__).resolve().parent.parent)
    args = [str(run_dir), "--solo", "--quiet"]
    # Both at once: a joining worker, and one with the changed function (refused at start).
    joins = subprocess.Popen(islandsync_argv("worker", *args, "--fitness", "fit.py:fitness",
                                             "--duration", "3"),
                             cwd=laptop, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    refused = subprocess.run(islandsync_argv("worker", *args, "--fitness",
                                             "changed.py:fitness"),
                             cwd=laptop, env=env, capture_output=True, text=True, timeout=120)
    out, _ = joins.communicate(timeout=120)
    assert joins.returncode == 0, out

    after = island_generations(store)
    assert all(after[i] > before[i] for i in before), (before, after)

    from islandsync.config import fitness_ref, load_fitness

    monkeypatch.setattr(sys, "path", list(sys.path))  # load_fitness puts laptop/ first
    given = fitness_ref(load_fitness(str(laptop / "changed.py") + ":fitness")).fingerprint
    assert refused.returncode == 2, refused.stderr
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert (f"run.json records __main__:fitness (fingerprint {recorded.fingerprint[:16]}), "
            f"given changed.py:fitness (fingerprint {given[:16]})") in line, line
