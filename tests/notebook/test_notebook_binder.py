"""binder/: postBuild run the way repo2docker runs it, in a fresh virtual environment.

The fresh venv (no pip of its own, ``--without-pip``) sees the project venv's
installed packages through a ``.pth`` line, the same effect as
``--system-site-packages`` with the project venv as the system: the
dependencies are not downloaded again (no network, seconds instead of
minutes), while the project itself is installed into the fresh venv by
``pip install -r binder/requirements.txt`` from a copy of the repository, as
repo2docker does. ``.pth`` files of the project venv are not run, so its own
editable install of eventstore is not visible in the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def make_venv(where: Path, *, with_project_packages: bool) -> Path:
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120
    )
    if with_project_packages:
        site = where / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        (site / "site-packages" / "_project_venv.pth").write_text(
            sysconfig.get_path("purelib") + "\n"
        )
    return where / "bin"


def copy_repository(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    target.mkdir()
    for name in ("pyproject.toml", "README.md"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, target / name)
    for folder in ("eventstore", "binder", "kernels"):
        shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    return target


def run_in(bin_dir: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return subprocess.run(
        list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_postbuild_installs_the_kernel_after_the_binder_requirements(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    bin_dir = make_venv(tmp_path / "venv", with_project_packages=True)
    installed = run_in(
        bin_dir,
        repo,
        "python",
        "-m",
        "pip",
        "install",
        "--no-index",
        "--no-build-isolation",
        "--disable-pip-version-check",
        "-r",
        "binder/requirements.txt",
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    where = run_in(
        bin_dir, tmp_path, "python", "-c", "import eventstore; print(eventstore.__file__)"
    )
    assert where.stdout.strip() == str(repo / "eventstore" / "__init__.py")

    built = run_in(bin_dir, repo, "bash", "binder/postBuild")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "eventstore.notebook loads" in built.stdout
    spec = tmp_path / "venv" / "share" / "jupyter" / "kernels" / "eventsourcing" / "kernel.json"
    assert json.loads(spec.read_text())["argv"][0] == str(bin_dir / "python")


def test_postbuild_fails_the_build_when_the_extension_does_not_load(tmp_path):
    # A bare venv: eventstore is importable from the checkout, its dependencies are not.
    repo = copy_repository(tmp_path / "repo")
    bin_dir = make_venv(tmp_path / "venv", with_project_packages=False)
    built = run_in(bin_dir, repo, "bash", "binder/postBuild")
    assert built.returncode != 0
    assert "ModuleNotFoundError" in built.stderr
    assert not (tmp_path / "venv" / "share" / "jupyter" / "kernels" / "eventsourcing").exists()
