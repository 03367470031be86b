"""Time travel: slide through an aggregate's versions and see its state at each.

Each position of the slider loads the aggregate with ``repo.load(id,
at_version=v)``, which starts from the nearest snapshot at or below ``v`` and
replays the events after it (DESIGN decision 8), so what is shown is exactly
what the repository would rebuild. Beside the state: the event that made
this version, the fields it changed, and a strip of all versions with the
ones that have a snapshot marked. ``timeline()`` gives a chart of the
stream's events linked to the widget: clicking the event of version N moves
the slider to N and shows the state and the change it made.

The widget follows the store: every move of the slider first re-reads the
stream's last version and its snapshot versions, and while the kernel's
event loop runs it also polls them every ``poll_interval`` seconds (2 by
default; ``None`` turns polling off). When they changed (a snapshot taken or
deleted, an event appended), the strip, the slider's range and the "loaded
from the snapshot at version N" line are redrawn from the store.

With a tenant-isolated repository the widget takes the tenant's plain id, as
``repo.load`` does, and keeps the tenant that was current when it was made:
moving the slider later, outside the ``with with_tenant(...)`` block, still
shows that tenant's aggregate.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ipywidgets as W

from ...core.aggregate import AggregateRoot
from ...core.errors import AggregateNotFoundError, EventDecodeError, VersionNotFoundError
from ...core.repository import Repository
from ...core.tenancy import current_tenant, with_tenant
from ..charts import EVENT_SELECTION, version_timeline
from ..frames import stream_frame
from ..messages import message_to_dict
from ..state import MISSING, Change, aggregate_state, diff_states
from .chart_view import ChartView
from .static import StaticRendering

_STRIP_LIMIT = 80


@dataclass(frozen=True, slots=True)
class VersionView:
    """What the widget shows for one version."""

    version: int
    state: dict[str, Any]
    changes: list[Change]
    event_type: str
    event: dict[str, Any] | None
    snapshot_version: int
    """The snapshot the load started from (0: replayed from the first event)."""


class TimeTravel(StaticRendering, W.VBox):
    _task: asyncio.Task[None] | None = None
    """The polling task. Set here, not only in ``__init__``: when ``__init__`` rejects an
    argument, ``Widget.__del__`` still calls ``close()``, whose ``stop()`` reads it."""

    def __init__(
        self,
        repo: Repository[Any],
        aggregate_id: str,
        *,
        version: int | None = None,
        state: Callable[[AggregateRoot], dict[str, Any]] = aggregate_state,
        poll_interval: float | None = 2.0,
    ) -> None:
        _check_poll_interval(poll_interval)
        self.repo = repo
        self.poll_interval = poll_interval
        self._task = None
        self.aggregate_id = aggregate_id
        # The id the store keeps (``<tenant>::<id>`` with tenant isolation), and the
        # tenant every later load runs in: slider moves and polls come from callbacks
        # that do not run inside the caller's ``with with_tenant(...)`` block.
        self.stream_id = repo.stored_id(aggregate_id)
        self.tenant: str | None = current_tenant() if repo.tenant_isolation else None
        self.state_of = state
        self._cache: dict[int, tuple[dict[str, Any], int]] = {}
        last = repo.store.stream_version(self.stream_id)
        if last == 0:
            raise AggregateNotFoundError(aggregate_id)
        if version is not None:
            _check_version(aggregate_id, version, last)
        self.last_version = last
        self.snapshot_versions = self._snapshot_versions()
        self.slider = W.IntSlider(
            min=1,
            max=last,
            value=int(version) if version is not None else last,
            description="version",
            continuous_update=False,
            layout=W.Layout(width="600px"),
        )
        self.strip = W.HTML()
        self.event_view = W.HTML()
        self.state_view = W.HTML()
        self.changes_view = W.HTML()
        self.view: VersionView | None = None
        self.slider.observe(self._on_slide, names="value")
        title = W.HTML(f"<b>Time travel</b>: aggregate <code>{html.escape(aggregate_id)}</code>")
        panes = W.HBox(
            [
                W.VBox([W.HTML("<b>state</b>"), self.state_view], layout=W.Layout(width="50%")),
                W.VBox(
                    [W.HTML("<b>changed by this event</b>"), self.changes_view],
                    layout=W.Layout(width="50%"),
                ),
            ]
        )
        super().__init__([title, self.slider, self.strip, self.event_view, panes])
        self.add_class("eventstore-time-travel")  # a stable hook for the browser tests and styles
        self.show(self.slider.value)
        if poll_interval is not None:
            with contextlib.suppress(RuntimeError):  # no running loop: follow on moves only
                self.start()

    # -- data --------------------------------------------------------------------------
    def _snapshot_versions(self) -> list[int]:
        snapshots = self.repo.snapshot_store
        lister = getattr(snapshots, "list_snapshots", None)
        if lister is None:
            return []
        return [s.version for s in lister(self.stream_id)]

    @contextlib.contextmanager
    def _in_tenant(self) -> Iterator[None]:
        """Run a ``repo.load`` in the tenant the widget was made in (with tenant isolation)."""
        if self.tenant is None:
            yield
        else:
            with with_tenant(self.tenant):
                yield

    def state_at(self, version: int) -> tuple[dict[str, Any], int]:
        """The state at ``version`` and the snapshot version its load started from."""
        if version not in self._cache:
            with self._in_tenant():
                aggregate = self.repo.load(self.aggregate_id, at_version=version)
            self._cache[version] = (self.state_of(aggregate), aggregate.snapshot_version)
        return self._cache[version]

    def view_at(self, version: int) -> VersionView:
        state, from_snapshot = self.state_at(version)
        before = self.state_at(version - 1)[0] if version > 1 else {}
        stored = self.repo.store.load_stream(
            self.stream_id, after_version=version - 1, up_to_version=version
        )
        event_type, payload = "", None
        if stored:
            event_type = stored[0].event_type
            try:
                payload = message_to_dict(self.repo.decode(stored[0]))
            except EventDecodeError:
                payload = None
        changes = diff_states(before, state)
        return VersionView(version, state, changes, event_type, payload, from_snapshot)

    # -- showing -----------------------------------------------------------------------
    def _on_slide(self, change: dict[str, Any]) -> None:
        # show() puts any error in the widget; a callback has nowhere else to raise it.
        with contextlib.suppress(Exception):  # a failure here shows in show() just below
            self._follow_store()
        with contextlib.suppress(Exception):
            self.show(int(change["new"]))

    def show(self, version: int) -> VersionView:
        try:
            view = self.view_at(version)
        except Exception as exc:  # shown, never lost in a callback
            self.event_view.value = (
                f"<pre style='color:#b00'>cannot show version {version}: "
                f"{html.escape(f'{type(exc).__name__}: {exc}')}</pre>"
            )
            raise
        self.view = view
        if self.slider.value != version:
            self.slider.value = version
        self.strip.value = self._strip_html(version)
        short = view.event_type.rsplit(".", 1)[-1] or "?"
        source = (
            f"loaded from the snapshot at version {view.snapshot_version}, then "
            f"{version - view.snapshot_version} event(s) replayed"
            if view.snapshot_version
            else f"replayed {version} event(s) from the start"
        )
        payload = (
            ", ".join(f"{k}={v!r}" for k, v in view.event.items())
            if view.event is not None
            else "(payload not decodable: register its message class)"
        )
        self.event_view.value = (
            f"<div>version <b>{version}</b> of {self.last_version}: "
            f"<b>{html.escape(short)}</b>({html.escape(payload)})<br>"
            f"<span style='color:#777'>{html.escape(source)}</span></div>"
        )
        self.state_view.value = _table(
            [(k, _show(v)) for k, v in view.state.items()], ("field", "value")
        )
        self.changes_view.value = (
            _table(
                [(c.path, f"{_show(c.before)} → {_show(c.after)}") for c in view.changes],
                ("field", "before → after"),
            )
            if view.changes
            else "<i>no state change</i>"
        )
        return view

    def _strip_html(self, current: int) -> str:
        snaps = set(self.snapshot_versions)
        legend = (
            f"snapshots at versions {', '.join(map(str, sorted(snaps)))}"
            if snaps
            else "no snapshots"
        )
        if self.last_version > _STRIP_LIMIT:
            return f"<div style='color:#555'>◆ {html.escape(legend)}</div>"
        cells = []
        for v in range(1, self.last_version + 1):
            border = "2px solid #1f77b4" if v == current else "1px solid #ccc"
            background = "#ffe8a3" if v in snaps else "#fff"
            mark = "◆" if v in snaps else ""
            cells.append(
                f"<span title='version {v}{' (snapshot)' if mark else ''}' "
                f"style='display:inline-block;min-width:22px;text-align:center;margin:1px;"
                f"border:{border};background:{background};font-size:11px'>{mark}{v}</span>"
            )
        return f"<div>{''.join(cells)}</div><div style='color:#555'>◆ {html.escape(legend)}</div>"

    def _follow_store(self) -> bool:
        """Re-read the last version and the snapshot versions; True when they changed."""
        last = self.repo.store.stream_version(self.stream_id)
        snapshots = self._snapshot_versions()
        if last == self.last_version and snapshots == self.snapshot_versions:
            return False
        self.last_version = last
        self.snapshot_versions = snapshots
        self._cache.clear()  # a state's "loaded from the snapshot at N" may have changed
        self.slider.max = last
        return True

    def refresh(self) -> None:
        """Pick up versions and snapshots stored or deleted since the widget was drawn."""
        self._follow_store()
        self.show(self.slider.value)

    # -- the linked timeline -----------------------------------------------------------------------
    def timeline(self) -> ChartView:
        """A chart of the stream's events; clicking one shows its version here.

        Tooltips give each event's type, version, time and payload; the wheel
        zooms along the versions. The selection comes back through the
        chart's ``selections`` (altair's ``JupyterChart``).
        """
        frame = stream_frame(self.repo.store, self.stream_id, self.repo)
        view = ChartView(version_timeline(frame))
        view.on_select(EVENT_SELECTION, self._on_timeline_select)
        return view

    def _on_timeline_select(self, rows: list[dict[str, Any]]) -> None:
        version = int(rows[-1]["version"])
        with contextlib.suppress(Exception):  # a failure shows in the widget (show())
            self._follow_store()
        with contextlib.suppress(Exception):
            self.show(version)

    # -- polling while the kernel runs ---------------------------------------------------------
    @property
    def polling(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Poll the store every ``poll_interval`` seconds on the running event loop."""
        if self._task is not None and not self._task.done():
            return self._task
        loop = asyncio.get_running_loop()  # RuntimeError outside a kernel or async code
        self._task = loop.create_task(self._poll(self.poll_interval or 2.0))
        return self._task

    async def _poll(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                if self._follow_store():
                    self.show(self.slider.value)
            except Exception as exc:  # the store was closed, say: say so and stop polling
                self.event_view.value = (
                    "<pre style='color:#b00'>stopped following the store: "
                    f"{html.escape(f'{type(exc).__name__}: {exc}')}</pre>"
                )
                return

    def stop(self) -> None:
        """Stop polling (moving the slider still re-reads the store)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        self.stop()
        super().close()

    # -- without a kernel ------------------------------------------------------------------------
    def static_html(self) -> str:
        with contextlib.suppress(Exception):  # shown again later: draw what the store holds now
            if self._follow_store():
                self.show(self.slider.value)
        return super().static_html()

    def static_text(self) -> str:
        snaps = ", ".join(map(str, self.snapshot_versions)) or "none"
        return (
            f"TimeTravel: aggregate {self.aggregate_id!r} at version {self.slider.value} "
            f"of {self.last_version} (snapshots: {snaps})"
        )


def _check_poll_interval(poll_interval: object) -> None:
    """``poll_interval`` is None or a positive, finite number of seconds."""
    if poll_interval is None:
        return
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, numbers.Real):
        raise TypeError(
            "TimeTravel: poll_interval must be a number of seconds or None (no polling), got "
            f"{type(poll_interval).__name__} {poll_interval!r}"
        )
    if not math.isfinite(poll_interval) or poll_interval <= 0:
        raise ValueError(
            "TimeTravel: poll_interval must be a positive, finite number of seconds, or None "
            f"to turn polling off; got {poll_interval!r}"
        )


def _check_version(aggregate_id: str, version: object, last: int) -> None:
    """``version`` is one of the stream's versions, 1 to ``last``: ``show`` raises the same."""
    if isinstance(version, bool) or not isinstance(version, numbers.Integral):
        raise TypeError(
            f"TimeTravel of aggregate {aggregate_id!r}: version must be a whole number (an int "
            f"from 1 to {last}), got {type(version).__name__} {version!r}. Leave it out for the "
            "latest version."
        )
    if not 1 <= int(version) <= last:
        raise VersionNotFoundError(aggregate_id, int(version), last)


def _show(value: Any) -> str:
    return "—" if value is MISSING else repr(value)


def _table(rows: list[tuple[str, str]], header: tuple[str, str]) -> str:
    head = "".join(f"<th style='text-align:left;padding:2px 8px'>{h}</th>" for h in header)
    body = "".join(
        f"<tr><td style='padding:2px 8px'>{html.escape(a)}</td>"
        f"<td style='padding:2px 8px;font-family:monospace'>{html.escape(b)}</td></tr>"
        for a, b in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
