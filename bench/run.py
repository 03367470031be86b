"""Run the benchmarks: ``.venv/bin/python -m bench.run [--quick] [--only store,projections]``.

Discovers every ``bench/bench_*.py`` module, runs its ``run()`` (passing
``quick=`` when it takes that argument; ``--quick`` also sets
``EVENTSTORE_BENCH_QUICK=1``), prints every figure beside its baseline as it
comes, then a Markdown table for the README, also written to
``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import pkgutil
import platform
import shlex
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ._progress import QUICK_ENV, step
from .common import Figure, format_row, format_value

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "latest.md"


def discover() -> dict[str, str]:
    """``{short name: module name}`` of every bench/bench_*.py, in name order."""
    found = {}
    for info in sorted(pkgutil.iter_modules([str(BENCH_DIR)]), key=lambda i: i.name):
        if info.name.startswith("bench_") and not info.ispkg:
            found[info.name.removeprefix("bench_")] = f"{__package__ or 'bench'}.{info.name}"
    return found


def _call_run(module: object, quick: bool) -> list[Figure]:
    run = getattr(module, "run", None)
    if not callable(run):
        raise TypeError(f"{module!r} has no run() -> list[Figure]; add one to be benchmarked")
    takes_quick = "quick" in inspect.signature(run).parameters
    figures = run(quick=quick) if takes_quick else run()
    bad = [f for f in figures if not isinstance(f, Figure)]
    if bad:
        raise TypeError(f"run() returned {len(bad)} items that are not bench.common.Figure")
    return list(figures)


def ratio_text(f: Figure) -> str:
    r = f.ratio
    return f"{r:.2f}x" if r is not None else ""


def markdown_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | ours | baseline | ratio | target | met? |",
        "|---|---:|---|---:|---|---|",
    ]
    for f in figures:
        baseline = ""
        if f.baseline_value is not None:
            baseline = f"{f.baseline_name}: {format_value(f.baseline_value, f.unit)}"
        met = "" if f.meets_target is None else ("yes" if f.meets_target else "**no**")
        lines.append(
            f"| [{f.topic}] {f.name} | {format_value(f.value, f.unit)} | {baseline} | "
            f"{ratio_text(f)} | {f.target_text} | {met} |"
        )
    return "\n".join(lines)


RATIO_NOTE = (
    "Ratio: ours/baseline for rates, baseline/ours for times, so above 1 means "
    "ours is faster. Ratios within one run are what count: the machine is shared and noisy."
)


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _python() -> str:
    """The interpreter as the reader would type it: relative to the repo root when inside it."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(BENCH_DIR.parent))
    except ValueError:
        return str(exe)


def _load_average() -> str:
    """The 1-minute load average: how busy the shared machine was (2 cores here)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "n/a"


def write_results(
    path: Path,
    command: str,
    figures: Sequence[Figure],
    timings: dict[str, float],
    failures: dict[str, str],
    load_at_start: str,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "# Benchmark results",
        "",
        f"- command: `{command}`",
        f"- when: {when}, commit {_git_commit()}",
        f"- Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs",
        "- wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        f"- load average at start and end: {load_at_start} / {_load_average()}",
        "",
        markdown_table(figures),
        "",
        RATIO_NOTE,
        "",
    ]
    if failures:
        parts += ["## Failed benchmarks", ""]
        for name, text in failures.items():
            parts += [f"### {name}", "", "```", text.rstrip(), "```", ""]
    path.write_text("\n".join(parts))


def main(argv: Sequence[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Run the eventstore benchmarks and print each figure beside its baselines.",
    )
    parser.add_argument("--quick", action="store_true", help="short run (smaller sizes)")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated benchmarks to run, of: {', '.join(available) or '(none found)'}",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument(
        "--output", type=Path, default=RESULTS, help=f"results file (default {RESULTS})"
    )
    args = parser.parse_args(argv)

    if args.list:
        for name, module_name in available.items():
            print(f"{name}\t{module_name}")
        return 0
    selected = list(available)
    if args.only:
        wanted = [w.strip().removeprefix("bench_") for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in available]
        if unknown:
            parser.error(
                f"--only names unknown benchmarks {unknown}; the benchmarks found in "
                f"{BENCH_DIR} are: {', '.join(available)}"
            )
        selected = wanted
    if args.quick:
        os.environ[QUICK_ENV] = "1"

    command = f"{_python()} -m bench.run" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    load_at_start = _load_average()
    step("run", f"load average {load_at_start} on {os.cpu_count()} CPUs")
    figures: list[Figure] = []
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    for n, name in enumerate(selected, start=1):
        step("run", f"benchmark {name} ({n}/{len(selected)}) starting")
        start = time.perf_counter()
        try:
            module = importlib.import_module(available[name])
            got = _call_run(module, args.quick)
        except Exception:
            failures[name] = traceback.format_exc()
            print(f"[{name}] FAILED:\n{failures[name]}", file=sys.stderr, flush=True)
            got = []
        timings[name] = time.perf_counter() - start
        step("run", f"benchmark {name} done in {timings[name]:.1f} s")
        for f in got:
            print(format_row(f), flush=True)
        figures.extend(got)

    print()
    print(markdown_table(figures))
    print()
    print(RATIO_NOTE)
    missed = [f for f in figures if f.meets_target is False]
    met = [f for f in figures if f.meets_target]
    print(f"\ntargets: {len(met)} met, {len(missed)} missed; failed benchmarks: {len(failures)}")
    write_results(args.output, command, figures, timings, failures, load_at_start)
    print(f"results written to {args.output}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
