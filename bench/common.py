"""Shared pieces of the benchmarks: figures with their baselines, timing, printing.

Every figure is printed beside a baseline measured in the same run, because
machines here are noisy and only ratios carry over.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One measured figure and the baseline it is compared with.

    ``higher_is_better`` decides how the ratio reads: for rates the ratio is
    ours/baseline, for durations baseline/ours is shown as "x faster".
    ``target`` is the ratio (or absolute bound, see ``target_text``) the issue asks for.
    """

    topic: str
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline_value: float | None = None
    higher_is_better: bool = True
    target_text: str = ""
    meets_target: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value or not self.value:
            return None
        if not self.higher_is_better:
            return self.baseline_value / self.value
        return self.value / self.baseline_value


def time_once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_seconds(fn: Callable[[], object], repeat: int = 7, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    return statistics.median(time_once(fn) for _ in range(repeat))


def format_value(value: float, unit: str) -> str:
    if unit.endswith("/s"):
        return f"{value:,.0f} {unit}"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:,.2f} {unit}"


def format_row(f: Figure) -> str:
    base = ""
    if f.baseline_value is not None:
        ratio = f.ratio
        ratio_text = f"{ratio:.2f}x" if ratio is not None else "n/a"
        base = (
            f" | {f.baseline_name}: {format_value(f.baseline_value, f.unit)} | ratio {ratio_text}"
        )
    verdict = ""
    if f.meets_target is not None:
        verdict = f" | target {f.target_text}: {'met' if f.meets_target else 'MISSED'}"
    return f"[{f.topic}] {f.name}: {format_value(f.value, f.unit)}{base}{verdict}"
