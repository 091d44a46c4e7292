"""A fresh virtual environment for tests about installing, without reinstalling torch.

:func:`fresh_venv` makes a venv (no pip of its own) whose only extra path is a folder of
symbolic links to this interpreter's installed packages, minus the ones named in ``hide``
(islandsync itself, always: what the venv has of it must come from the install under test).
Real pip (this interpreter's, importable through the links) then installs into the venv's own
site-packages, which come first on its ``sys.path``. So a package installed there, an older
google-cloud-storage say, wins over the linked one, and pip's view of what is installed is
the venv's, as it would be on a notebook platform with its packages preinstalled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def _hidden(name: str, hide: tuple[str, ...]) -> bool:
    stem = name.lower().replace("-", "_")
    return name.endswith(".pth") or stem.startswith("__editable__") \
        or any(stem == h or stem.startswith(h + "-") or stem.startswith(h + ".")
               for h in hide)


def fresh_venv(path: Path, *, hide: tuple[str, ...] = ()) -> Path:
    """Create a venv at ``path`` seeing this interpreter's packages except islandsync and
    ``hide`` (distribution names with ``_``, e.g. ``google_cloud_storage``); its python."""
    hide = ("islandsync", *(h.lower().replace("-", "_") for h in hide))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    links = path / "linked-site-packages"
    links.mkdir()
    here = Path(sysconfig.get_paths()["purelib"])
    for entry in here.iterdir():
        if not _hidden(entry.name, hide):
            (links / entry.name).symlink_to(entry)
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # A path line in a .pth file: appended after the venv's own site-packages.
    (Path(site) / "linked-site-packages.pth").write_text(f"{links}\n")
    return python


def venv_env(**extra: str) -> dict[str, str]:
    """This process's environment for a command in a fresh venv: no PYTHONPATH (it would put
    a checkout's islandsync back), no pip cache or index (what is installed comes from the
    line under test, checked by pip, nothing from elsewhere), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("PIP_")}
    return {**env, "PIP_NO_CACHE_DIR": "1", "PIP_NO_INDEX": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", **extra}


def venv_run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python *args`` in :func:`venv_env`, from ``cwd``: a folder with no islandsync in it
    (``python -m``/``-c`` put the working directory first on ``sys.path``)."""
    return subprocess.run([str(python), *args], capture_output=True, text=True,
                          env=venv_env(), cwd=cwd, timeout=300)


def imported_from(python: Path, cwd: Path) -> str:
    """Where ``import islandsync`` in that venv finds it, or "" when it does not."""
    done = venv_run(python, "-c", "import islandsync; print(islandsync.__file__)", cwd=cwd)
    return done.stdout.strip() if done.returncode == 0 else ""


__all__ = ["fresh_venv", "imported_from", "venv_env", "venv_run"]
