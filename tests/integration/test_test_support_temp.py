"""The test helpers leave nothing in the temp folder, in the process that made their files or
in the processes it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = "import tests.support.bank as b; print(b.pb.__file__)"
PARENT = f"""
import subprocess, sys
import tests.support.bank as b
child = subprocess.run([sys.executable, "-c", {CHILD!r}], capture_output=True, text=True, check=True)
print(b.pb.__file__)
print(child.stdout.strip())
"""


def test_compiled_test_protos_are_shared_with_children_and_removed_at_exit(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "EVENTSTORE_TEST_PROTOS_DIR"}
    env.update(TMPDIR=str(temp), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", PARENT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    parent_file, child_file = done.stdout.split()
    assert parent_file == child_file  # one folder, reused by the child
    assert parent_file.startswith(str(temp))
    assert list(temp.iterdir()) == []
