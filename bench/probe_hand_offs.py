"""CPU time and context switches per command, 64 concurrent clients at FULL, grouped.

``PYTHONPATH=$PWD .venv/bin/python -m bench.probe_hand_offs [seconds]``

Latency on this shared 2-core machine swings with the other jobs; the work a
command costs the process swings much less: CPU time (``time.process_time``, all
threads) and voluntary context switches (``getrusage``: each a thread that went
to sleep, mostly a hand-off between the event loop and a worker thread) per
command. To compare two versions, run this in two worktrees, alternating.
Not part of ``bench.run`` (it has no baseline of its own).
"""

from __future__ import annotations

import resource
import statistics
import sys
import tempfile
import time

from .bench_group_commit import _sdk, _store_tasks


def _quantile_ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def _measure(name: str, run: object, seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hand-offs-") as folder:
        run(folder, 0.1)  # type: ignore[operator]  # warm-up: imports, protos
        before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        done, latencies = run(folder, seconds)  # type: ignore[operator]
        after, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time() - cpu
    print(
        f"{name}: {done / seconds:,.0f} commands/s, "
        f"CPU {cpu / done * 1e6:.0f} µs/command, "
        f"{(after.ru_nvcsw - before.ru_nvcsw) / done:.2f} voluntary context switches/command, "
        f"p50 {_quantile_ms(latencies, 50):.1f} ms, p99 {_quantile_ms(latencies, 99):.1f} ms"
    )


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    _measure("store FULL 64 tasks, grouped", _store_tasks(64, "FULL", True), seconds)
    _measure("SDK FULL 64 clients, grouped", _sdk(64, "FULL"), seconds)
    _measure("SDK FULL 64 clients, grouped, cache", _sdk(64, "FULL", cache=1024), seconds)


if __name__ == "__main__":
    main()
