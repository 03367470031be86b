"""The SDK's group-commit targets at a fixed stream length, for issue 10's owner.

``PYTHONPATH=$PWD .venv/bin/python -m bench.probe_stream_length [lengths] [rounds] [seconds]``
(defaults: ``5,20,60,150,300``, 4 rounds, 0.6 s; about 3 minutes).

In the bench's SDK modes each client deposits to one account for the whole run, so
a command replays every deposit made before it: the replay grows with the mode's
own rate, and a faster mode replays longer streams. That makes two of the issue's
targets depend on the workload more than on the code:

- one client, ``async`` handlers, grouped, against synchronous handlers on the loop
  ("today"): the async path costs two thread hand-offs a command more. With long
  replays they are a small share of a command; and "today", the faster mode,
  replays longer streams than the mode it is compared with, which flatters it.
- 64 clients, no cache, p99: 64 commands in flight on one core's worth of Python,
  so the latency is about 64 times the work of a command, most of it the replay.

Here the stream length is fixed instead: each client sends to ``ACCOUNTS_1`` (one
client) or ``ACCOUNTS_64`` (64 clients) accounts in turn, each stored with ``L``
events first, so a round adds about 20 events to each account at most, whatever
the mode's rate. The modes take turns round by round (forward, then backward), as
in ``bench_group_commit``. Not part of ``bench.run``: it prints a table of its own.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile

from ._progress import step
from .bench_group_commit import _sdk

TOPIC = "stream length"
ACCOUNTS_1 = 32  # one client at about 1,000 commands/s: about 19 deposits an account a round
ACCOUNTS_64 = 4  # 64 clients at about 6,000 commands/s: about 14 deposits an account a round


def _modes(length: int) -> dict[str, object]:
    return {
        "today, 1 client": _sdk(
            1, "FULL", group=False, handler="loop", accounts=ACCOUNTS_1, seed=length
        ),
        "async, grouped, 1 client": _sdk(1, "FULL", accounts=ACCOUNTS_1, seed=length),
        "async, grouped, 64 clients": _sdk(64, "FULL", accounts=ACCOUNTS_64, seed=length),
    }


def _quantile_ms(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def main() -> None:
    lengths = [int(n) for n in (sys.argv[1] if len(sys.argv) > 1 else "5,20,60,150,300").split(",")]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 0.6
    print(
        "| events per stream | today, 1 client | async, 1 client | ratio (target >= 0.85x) "
        "| 64 clients | p50 | p99 (target <= 25 ms) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="bench-stream-length-") as folder:
        for length in lengths:
            modes = _modes(length)
            names = list(modes)
            rates: dict[str, list[float]] = {name: [] for name in names}
            latencies: list[float] = []
            for run in modes.values():  # warm-up: imports, protos, first pages
                run(folder, 0.1)  # type: ignore[operator]
            for r in range(rounds):
                step(TOPIC, f"{length} events a stream: round {r + 1}/{rounds}")
                for name in names if r % 2 == 0 else names[::-1]:
                    if hasattr(os, "sync"):
                        os.sync()
                    done, times = modes[name](folder, seconds)  # type: ignore[operator]
                    rates[name].append(done / seconds)
                    if name.endswith("64 clients"):
                        latencies.extend(times)
            today, alone, many = (statistics.median(rates[name]) for name in names)
            print(
                f"| {length} | {today:,.0f}/s | {alone:,.0f}/s | {alone / today:.2f}x "
                f"| {many:,.0f}/s | {_quantile_ms(latencies, 50):.1f} ms "
                f"| {_quantile_ms(latencies, 99):.1f} ms |",
                flush=True,
            )


if __name__ == "__main__":
    main()
