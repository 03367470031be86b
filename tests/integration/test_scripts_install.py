"""scripts/run and scripts/test install the project only when pyproject.toml changed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CALL = ". scripts/_python.sh && install_project notebook && echo ready"


def project_copy(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "_python.sh", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


def run(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", CALL], cwd=folder, capture_output=True, text=True, timeout=120
    )


def test_an_install_stamped_with_pyprojects_hash_is_not_repeated(tmp_path):
    folder = project_copy(tmp_path)
    digest = hashlib.sha256((folder / "pyproject.toml").read_bytes()).hexdigest()
    (folder / ".venv" / ".eventstore-all").write_text(digest + "\n")  # `all` covers notebook

    done = run(folder)

    assert (done.returncode, done.stdout, done.stderr) == (0, "ready\n", "")
    assert not (folder / ".venv" / "pip-install.log").exists()


def test_a_changed_pyproject_installs_again_and_shows_pips_log_only_on_failure(tmp_path):
    folder = project_copy(tmp_path)
    (folder / ".venv" / ".eventstore-notebook").write_text("an older hash\n")
    (folder / "pyproject.toml").write_text("[project\nbroken")  # pip fails on it, quickly

    done = run(folder)

    assert done.returncode == 1
    assert "Installing eventstore[notebook] into .venv" in done.stderr
    assert "pip install failed" in done.stderr
    assert (folder / ".venv" / ".eventstore-notebook").read_text() == "an older hash\n"
