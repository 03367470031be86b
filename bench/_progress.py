"""Progress lines for long benchmark parts, on stderr so results stay clean on stdout."""

from __future__ import annotations

import os
import sys
import time

_START = time.perf_counter()

QUICK_ENV = "EVENTSTORE_BENCH_QUICK"


def quick_requested() -> bool:
    """True when the runner was started with ``--quick`` (it sets this variable)."""
    return os.environ.get(QUICK_ENV, "") not in ("", "0")


def step(topic: str, message: str) -> None:
    """Print ``[  12.3s] topic: message`` to stderr at once."""
    elapsed = time.perf_counter() - _START
    print(f"[{elapsed:7.1f}s] {topic}: {message}", file=sys.stderr, flush=True)
