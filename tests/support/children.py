"""Child processes for fault and concurrency tests: a test file runs itself in a role.

``children(script)`` yields ``start(*args)``, which runs ``script`` with those
arguments under this checkout's ``PYTHONPATH``; every child still running at
the end is killed (a failed test never leaves writers behind).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def children(script: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }

    def start(*args: object) -> subprocess.Popen[str]:
        child = subprocess.Popen(
            [sys.executable, script, *map(str, args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(child)
        return child

    yield start
    for child in started:
        if child.poll() is None:
            child.kill()
        child.wait(10)


def finish(child: subprocess.Popen[str], timeout: float) -> str:
    """The child's stdout once it exited 0; its stderr in the failure otherwise."""
    out, err = child.communicate(timeout=timeout)
    assert child.returncode == 0, f"child failed ({child.returncode}):\n{err}"
    return out
