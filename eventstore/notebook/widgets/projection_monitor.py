"""Projection monitor: each projection's status, checkpoint against head, last error, lag chart.

It reads statuses from a ``ProjectionManager`` (its ``statuses()``), or from
any function returning objects with ``name``, ``status``, ``checkpoint``,
``head_position`` (or ``head``), ``lag_positions`` (or ``lag``) and
``last_error``, so a runner on the NATS bus can be watched the same way.
``start()`` refreshes it on the kernel's running event loop every
``interval`` seconds while the manager runs; ``stop()`` takes one last
reading, so the widget never ends on an old status; ``refresh()`` does one
reading. An error is shown in red while its projection is FAILED, and in
grey, as resolved, once the projection runs again.

The lag chart is a live :class:`~.chart_view.ChartView`: clicking a
projection's line, point or legend entry selects it, and the pane under the
chart shows that projection's status, progress and last error (``selected``
names it; ``select(name)`` does the same from code).
"""

from __future__ import annotations

import asyncio
import html
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import ipywidgets as W

from ..charts import PROJECTION_SELECTION, LagSample, projection_lag
from .chart_view import ChartView
from .static import StaticRendering, static_html


class StatusSource(Protocol):
    def statuses(self) -> Sequence[Any]: ...


def _get(status: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if hasattr(status, name):
            return getattr(status, name)
    return default


def _error_text(error: Any) -> str:
    if error is None:
        return ""
    describe = getattr(error, "describe", None)
    return str(describe()) if callable(describe) else str(error)


class ProjectionMonitor(StaticRendering, W.VBox):
    _task: asyncio.Task[None] | None = None
    """The refresh task. Set here, not only in ``__init__``: when ``__init__`` rejects an
    argument, ``Widget.__del__`` still calls ``close()``, whose ``stop()`` reads it."""

    def __init__(
        self,
        source: StatusSource | Callable[[], Sequence[Any]],
        *,
        interval: float = 1.0,
        history: int = 3600,
        show_chart: bool = True,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be positive, got {interval}")
        self.source = source
        self.interval = interval
        self.show_chart = show_chart
        self.samples: deque[LagSample] = deque(maxlen=history)
        self.statuses: list[Any] = []
        self.refreshes = 0
        self.table = W.HTML()
        self.errors = W.HTML()
        self.chart = W.VBox()
        """Holds the lag chart (a ChartView) once there are samples."""
        self.chart_view: ChartView | None = None
        self.selected: str | None = None
        """The projection picked in the lag chart (or by ``select``)."""
        self.detail = W.HTML()
        self.problem = W.HTML()
        self._task = None
        super().__init__(
            [
                W.HTML("<b>Projections</b>"),
                self.table,
                self.errors,
                self.chart,
                self.detail,
                self.problem,
            ]
        )
        self.add_class("eventstore-projection-monitor")  # a hook for browser tests and styles
        self.refresh()

    def _read(self) -> list[Any]:
        statuses = getattr(self.source, "statuses", None)
        if callable(statuses):
            return list(statuses())
        if callable(self.source):
            return list(self.source())
        raise TypeError(
            f"ProjectionMonitor needs a ProjectionManager (with statuses()) or a function "
            f"returning statuses; got {type(self.source).__name__}"
        )

    def refresh(self) -> list[LagSample]:
        """Read every projection's status once; returns the lag samples taken."""
        self.statuses = self._read()
        now = datetime.now(UTC)
        taken = []
        for status in self.statuses:
            checkpoint = int(_get(status, "checkpoint", default=0))
            head = int(_get(status, "head_position", "head", default=checkpoint))
            lag = _get(status, "lag_positions", "lag", default=None)
            sample = LagSample(
                str(status.name), now, checkpoint, head, int(lag) if lag is not None else -1
            )
            self.samples.append(sample)
            taken.append(sample)
        self.refreshes += 1
        self._render()
        return taken

    def _render(self) -> None:
        header = (
            "projection",
            "status",
            "checkpoint",
            "head",
            "lag",
            "lag (s)",
            "handled",
            "errors",
        )
        rows = []
        problems: list[str] = []
        resolved: list[str] = []
        for status in self.statuses:
            state = str(_get(status, "status", default=""))
            color = {"READY": "#080", "FAILED": "#b00", "PAUSED": "#a60"}.get(state, "#555")
            lag_seconds = _get(status, "lag_seconds", default=None)
            cells = [
                html.escape(str(status.name)),
                f"<span style='color:{color};font-weight:bold'>{html.escape(state)}</span>",
                str(_get(status, "checkpoint", default="")),
                str(_get(status, "head_position", "head", default="")),
                str(_get(status, "lag_positions", "lag", default="")),
                f"{lag_seconds:.2f}" if isinstance(lag_seconds, int | float) else "",
                str(_get(status, "events_handled", default="")),
                str(_get(status, "errors", default="")),
            ]
            rows.append(cells)
            error = _error_text(_get(status, "last_error", default=None))
            if error:
                line = f"<b>{html.escape(str(status.name))}</b>: {html.escape(error)}"
                (problems if state == "FAILED" else resolved).append(line)
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in header)
        body = "".join(
            "<tr>" + "".join(f"<td style='padding:2px 8px'>{c}</td>" for c in cells) + "</tr>"
            for cells in rows
        )
        self.table.value = (
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            if rows
            else "<i>no projections registered</i>"
        )
        self.errors.value = (
            "<div style='color:#b00'>failed at:<br>" + "<br>".join(problems) + "</div>"
            if problems
            else ""
        ) + (
            "<div style='color:#777'>earlier errors, since resolved (the projection runs "
            "again):<br>" + "<br>".join(resolved) + "</div>"
            if resolved
            else ""
        )
        if self.show_chart and self.samples:
            # A new view each time, not a new spec for the old one: in the browser
            # tests (under coverage, so slower) a click on a view re-embedded under
            # a new spec was drawn but never reached Python; a new view's does.
            old = self.chart_view
            self.chart_view = ChartView(projection_lag(list(self.samples)))
            self.chart_view.on_select(PROJECTION_SELECTION, self._on_chart_select)
            self.chart.children = (self.chart_view,)
            if old is not None:
                old.close()
        self._render_detail()

    # -- the projection picked in the chart ------------------------------------------------------
    def _on_chart_select(self, rows: list[dict[str, Any]]) -> None:
        self.select(str(rows[-1]["projection"]))

    def select(self, name: str) -> None:
        """Show ``name``'s status and last error under the chart (what a click on it does)."""
        if not any(str(s.name) == name for s in self.statuses):
            known = ", ".join(str(s.name) for s in self.statuses) or "none"
            self.detail.value = (
                f"<div style='color:#b00'>no projection named {html.escape(name)!s}; "
                f"known: {html.escape(known)}</div>"
            )
            return
        self.selected = name
        self._render_detail()

    def _render_detail(self) -> None:
        if self.selected is None:
            self.detail.value = (
                "<div style='color:#777'>click a projection in the chart to see its status "
                "and last error</div>"
                if self.chart_view is not None
                else ""
            )
            return
        status = next((s for s in self.statuses if str(s.name) == self.selected), None)
        if status is None:
            self.detail.value = ""
            return
        state = str(_get(status, "status", default=""))
        error = _error_text(_get(status, "last_error", default=None)) or "none"
        self.detail.value = (
            f"<div class='eventstore-projection-detail'><b>selected: "
            f"{html.escape(self.selected)}</b> status <b>{html.escape(state)}</b>, checkpoint "
            f"{_get(status, 'checkpoint', default='')} of head "
            f"{_get(status, 'head_position', 'head', default='')}, lag "
            f"{_get(status, 'lag_positions', 'lag', default='')}<br>last error: "
            f"{html.escape(error)}</div>"
        )

    # -- refreshing while the manager runs ---------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Refresh every ``interval`` seconds on the running event loop until ``stop()``."""
        if self.running:
            assert self._task is not None
            return self._task
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError as exc:
            raise RuntimeError(
                "ProjectionMonitor.start() needs a running event loop: call it from a notebook "
                "cell (the kernel's loop runs there) or from async code; or call refresh() "
                "yourself"
            ) from exc
        self._task = loop.create_task(self._run())
        return self._task

    async def _run(self) -> None:
        while True:
            try:
                self.refresh()
                self.problem.value = ""
            except Exception:
                self.problem.value = (
                    "<pre style='color:#b00'>the monitor could not refresh:\n"
                    f"{html.escape(traceback.format_exc())}</pre>"
                )
            await asyncio.sleep(self.interval)

    def stop(self) -> None:
        """Stop refreshing, after one last reading (so the widget shows the status now)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
            try:
                self.refresh()
                self.problem.value = ""
            except Exception:
                self.problem.value = (
                    "<pre style='color:#b00'>the monitor could not refresh:\n"
                    f"{html.escape(traceback.format_exc())}</pre>"
                )

    # -- without a kernel ------------------------------------------------------------------------
    def static_html(self) -> str:
        return static_html(
            self, skip=[self.chart, self.detail]
        )  # a chart of clock times: the live view has it

    def static_text(self) -> str:
        parts = [
            f"{s.name} {_get(s, 'status', default='')} lag {_get(s, 'lag_positions', 'lag')}"
            for s in self.statuses
        ]
        return "ProjectionMonitor: " + ("; ".join(parts) or "no projections registered")

    def close(self) -> None:
        self.stop()
        super().close()
