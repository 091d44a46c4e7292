"""The one install line (issue 17): what `islandsync publish` prints installs islandsync with
real pip into a fresh virtual environment, from a moto S3 bucket and a fake-gcs-server one,
and the same line is refused once other bytes stand at the wheel's key. (A notebook installing
from that line on a real kernel: tests/test_notebooks.py.)

The venvs see this interpreter's packages (torch, numpy, ...) through
:func:`islandsync.testing.venvs.fresh_venv`, never islandsync itself; pip runs with no index
and no cache, so what it installs comes from the line under test, checked by pip."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest

from islandsync.cli import main
from islandsync.publish import publish_line, published
from islandsync.store import open_store
from islandsync.testing.venvs import fresh_venv, imported_from, venv_run

#: The line, as a user sees it: %pip install "[islandsync[s3] @ ]URL#sha256=HEX".
LINE = re.compile(r'^%pip install "(?P<req>(?:islandsync\[s3\] @ )?(?P<url>\S+/'
                  r'(?P<name>islandsync-[^/?#\s]+-py3-none-any\.whl)(?:\?[^#\s]*)?)'
                  r'#sha256=(?P<sha>[0-9a-f]{64}))"$')


def pip(python: Path, *args: str, cwd: Path):
    return venv_run(python, "-m", "pip", *args, cwd=cwd)


def replaced(wheel: Path) -> bytes:
    """Other bytes under the wheel's name: the same wheel plus one module, as someone holding
    the run's credentials could write at its key."""
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, src.read(item))
        dst.writestr("islandsync/_replaced.py", "print('this ran at import')\n")
    return out.getvalue()


def check_line_installs_then_refuses(line: str, store, tmp_path: Path, wheel: Path) -> None:
    m = LINE.match(line)
    assert m, line
    assert m["name"] == wheel.name
    key, = [w.key for w in published(store) if w.sha256 == m["sha"]]
    python = fresh_venv(tmp_path / "venv")
    assert imported_from(python, tmp_path) == "", "islandsync is in the fresh venv already"

    done = pip(python, "install", m["req"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    where = imported_from(python, tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where
    # pip recorded the hash it checked: what the worker's version note compares.
    done = venv_run(python, "-c", "from islandsync.publish import _installed_sha256; "
                    "print(_installed_sha256())", cwd=tmp_path)
    assert done.stdout.strip() == m["sha"], done.stdout + done.stderr

    # Other bytes at the key: the same line is refused by pip, and nothing is installed.
    assert pip(python, "uninstall", "-y", "islandsync", cwd=tmp_path).returncode == 0
    store.put(key, replaced(wheel))
    done = pip(python, "install", m["req"], cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "DO NOT MATCH THE HASHES" in out and f"Expected sha256 {m['sha']}" in out, out
    assert imported_from(python, tmp_path) == ""


@pytest.mark.s3
def test_publish_line_installs_from_s3_and_a_replaced_wheel_is_refused(
        s3_url: str, wheel: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["publish", s3_url, "--wheel", str(wheel)]) == 0
    out, err = capsys.readouterr()
    line, = out.splitlines()  # stdout holds the line alone; the explanation is on stderr
    assert "paste this line" in err and "7 days" in err
    assert line.startswith('%pip install "islandsync[s3] @ http'), line  # boto3 comes along
    assert "X-Amz-Signature=" in line and "X-Amz-Expires=604800" in line, line
    check_line_installs_then_refuses(line, open_store(s3_url), tmp_path, wheel)


@pytest.mark.gcs
def test_publish_line_installs_from_gcs_and_a_replaced_wheel_is_refused(
        gcs_url: str, fake_gcs: str, wheel: Path, signing_credentials, tmp_path: Path) -> None:
    """A GCS V4 signed URL, signed with a service-account key, pointing at the emulator
    (fake-gcs-server serves GET /bucket/object and ignores the signature's parameters)."""
    store = open_store(gcs_url, credentials=signing_credentials)
    line = publish_line(store, wheel, expires_s=3600)
    assert line.startswith(f'%pip install "{fake_gcs}/'), line
    assert "X-Goog-Algorithm=GOOG4-RSA-SHA256" in line and "X-Goog-Expires=3600" in line, line
    check_line_installs_then_refuses(line, store, tmp_path, wheel)


@pytest.mark.gcs
def test_credentials_that_cannot_sign_get_one_line_and_nothing_is_published(
        gcs_url: str, wheel: Path, capsys: pytest.CaptureFixture) -> None:
    """A user sign-in (gcloud's, Colab's) holds no private key: one line saying what works
    instead, and the run is left as it was. From the command line the emulator's anonymous
    credentials stand in (no key either)."""
    from google.oauth2.credentials import Credentials

    from islandsync.errors import ConfigError

    store = open_store(gcs_url, credentials=Credentials(token="a user's access token"))
    with pytest.raises(ConfigError) as err:
        publish_line(store, wheel)
    assert "google.oauth2.credentials.Credentials) cannot sign a URL" in str(err.value)
    assert "service-account JSON key" in str(err.value) and "\n" not in str(err.value)
    assert published(store) == []

    assert main(["publish", gcs_url, "--wheel", str(wheel)]) == 2
    out, err_text = capsys.readouterr()
    assert out == "" and len(err_text.strip().splitlines()) == 1, err_text
    assert "cannot sign a URL" in err_text and "service-account JSON key" in err_text
    assert published(open_store(gcs_url)) == []
