"""The notebook layer: ``%%es_generate`` in a real IPython shell, and the tutorial suite's runtime.

1. ``%%es_generate`` on the bank-account proto, run through
   ``InteractiveShell.run_cell`` (what a notebook cell does: magic parsing,
   generation, binding the names, the printed summary), against
   ``generate_module`` alone on the same source in the same run. The issue's
   target is a median under 100 ms.
2. The tutorial notebooks run by nbval in a subprocess (a fresh kernel per
   notebook, outputs compared), the wall time of the whole run and the time
   per notebook (from pytest's JUnit report: each test case is one cell,
   including the kernel start in its first cell). No baseline: the figure is
   reported so that the suite stays within its budget (about 2 minutes).

    .venv/bin/python -m bench.bench_notebook [--repeat N] [--skip-suite]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._progress import step
from bench.common import Figure, format_row, median_seconds

TOPIC = "notebook"
ROOT = Path(__file__).resolve().parent.parent
BANK = ROOT / "proto" / "examples" / "bank" / "account.proto"
NOTEBOOKS = ROOT / "notebooks"
TARGET_MS = 100.0
SUITE_BUDGET_S = 120.0


def _shell():  # type: ignore[no-untyped-def]
    from IPython.core.history import HistoryAccessor
    from IPython.core.interactiveshell import InteractiveShell

    HistoryAccessor.enabled = False  # else "too many open files" over many shells
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "eventstore.notebook")
    return shell


def generate_figures(repeat: int) -> list[Figure]:
    from IPython.utils.capture import capture_output

    from eventstore.codegen import generate_module

    source = BANK.read_text(encoding="utf-8")
    cell = "%%es_generate --name bank\n" + source
    shell = _shell()

    def magic() -> None:
        with capture_output():
            result = shell.run_cell(cell, store_history=False)
        if not result.success:
            raise RuntimeError(f"%%es_generate failed: {result.error_in_exec!r}")

    def alone() -> None:
        generate_module(source, name="bank")

    # Interleave the two so that machine noise falls on both alike.
    ours_ms: list[float] = []
    base_ms: list[float] = []
    for _ in range(3):
        ours_ms.append(median_seconds(magic, repeat=repeat, warmup=2) * 1000)
        base_ms.append(median_seconds(alone, repeat=repeat, warmup=2) * 1000)
    ours = sorted(ours_ms)[1]
    base = sorted(base_ms)[1]
    return [
        Figure(
            TOPIC,
            f"%%es_generate (bank account) in InteractiveShell, median of {repeat} (x3)",
            ours,
            "ms",
            "generate_module alone, same source",
            base,
            higher_is_better=False,
            target_text=f"< {TARGET_MS:.0f} ms",
            meets_target=ours < TARGET_MS,
        )
    ]


def run_suite() -> tuple[float, dict[str, float], int, int]:
    """Run nbval on notebooks/; returns (wall seconds, seconds per notebook, passed, failed)."""
    with tempfile.TemporaryDirectory(prefix="bench-nbval-") as tmp:
        report = Path(tmp) / "junit.xml"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with",
            str(NOTEBOOKS / "sanitize.cfg"),
            str(NOTEBOOKS),
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
        ]
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env={**os.environ}, check=False
        )
        wall = time.perf_counter() - started
        per_notebook: dict[str, float] = defaultdict(float)
        passed = failed = 0
        if report.is_file():
            for case in ET.parse(report).getroot().iter("testcase"):
                # classname is "notebooks.01_quickstart.ipynb": the notebook's file name.
                name = case.get("classname", "?").removesuffix(".ipynb").rsplit(".", 1)[-1]
                per_notebook[name] += float(case.get("time", "0"))
                if case.find("failure") is not None or case.find("error") is not None:
                    failed += 1
                else:
                    passed += 1
        if done.returncode != 0 and not failed:
            raise RuntimeError(f"nbval did not run:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return wall, dict(per_notebook), passed, failed


def suite_figures() -> list[Figure]:
    wall, per_notebook, passed, failed = run_suite()
    figures = [
        Figure(
            TOPIC,
            f"tutorial notebooks under nbval, whole suite ({passed} cells passed, {failed} failed)",
            wall,
            "s",
            target_text=f"< {SUITE_BUDGET_S:.0f} s, all cells pass",
            meets_target=wall < SUITE_BUDGET_S and failed == 0,
        )
    ]
    for name, seconds in sorted(per_notebook.items()):
        figures.append(Figure(TOPIC, f"  notebook {name} (cells incl. kernel start)", seconds, "s"))
    return figures


def run(repeat: int = 15, *, quick: bool = False, suite: bool = True) -> list[Figure]:
    if quick:
        repeat = 5
    step(TOPIC, f"%%es_generate vs generate_module, {repeat} runs x3 each")
    figures = generate_figures(repeat)
    if suite:
        step(TOPIC, "running the notebook suite under nbval (about 20 s)")
        figures += suite_figures()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--skip-suite", action="store_true", help="only the %%es_generate figure")
    args = parser.parse_args()
    for figure in run(args.repeat, quick=args.quick, suite=not args.skip_suite):
        print(format_row(figure))


if __name__ == "__main__":
    main()
