"""A live table of the latest events, updated as the store commits.

It listens with ``store.add_commit_listener``, so it sees the commits made
through that store object (a notebook's own commands); commits from other
processes appear on ``refresh()``. The listener runs in the committing
thread: anything that goes wrong while redrawing is shown in the widget and
never raised into the command that committed.
"""

from __future__ import annotations

import html
import threading
import traceback
from collections import deque
from typing import Any

import ipywidgets as W

from ...core.events import Event
from ...core.tenancy import TenantEventSource, split_stored_id
from ..frames import PayloadTypes, matches_event_type, payload_decoder, select_events
from ..messages import message_to_dict
from .static import StaticRendering


def _payload_text(values: dict[str, Any], limit: int = 80) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in values.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count_matching(
    store: Any, aggregate_id: str | None, event_type: str | None, shown: int
) -> int:
    """How many stored events the log's filters match, by the cheapest query the store has.

    The table holds only the last ``max_rows``; the summary says how many there are in all.
    """
    if aggregate_id and not event_type and hasattr(store, "stream_version"):
        return int(store.stream_version(aggregate_id))
    if not aggregate_id and not event_type and hasattr(store, "count_events"):
        return int(store.count_events())
    if shown == 0:
        return 0
    return sum(1 for _ in select_events(store, aggregate_id, event_type=event_type))


class EventLog(StaticRendering, W.VBox):
    """The last ``max_rows`` events (newest first), optionally of one aggregate or type."""

    def __init__(
        self,
        store: Any,
        types: PayloadTypes = None,
        *,
        aggregate_id: str | None = None,
        event_type: str | None = None,
        max_rows: int = 20,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be 1 or more, got {max_rows}")
        self.store = store
        self.aggregate_id = aggregate_id
        self._tenant_view = isinstance(store, TenantEventSource)
        self.event_type = event_type
        self.max_rows = max_rows
        self._decode = payload_decoder(types)
        self._lock = threading.Lock()
        self.events: deque[Event] = deque(maxlen=max_rows)
        #: How many events in the log match the filters (not only the ones shown).
        self.total = 0
        self.summary = W.HTML()
        self.table = W.HTML()
        self.error = W.HTML()
        head = store.head_position()
        initial = select_events(store, aggregate_id, event_type=event_type, last=max_rows)
        self.events.extend(initial)
        self.total = _count_matching(store, aggregate_id, event_type, len(initial))
        self.position = max(head, initial[-1].position if initial else 0)
        super().__init__([self.summary, self.table, self.error])
        self.add_class("eventstore-event-log")  # a stable hook for the browser tests and styles
        self._render()
        store.add_commit_listener(self._on_commit)
        self._listening = True

    def _wanted(self, event: Event) -> bool:
        # A tenant's view (TenantEventSource) is asked by plain id; its events keep their
        # stored ids (``acme::acc-1``), so compare the plain one too.
        if self.aggregate_id and self.aggregate_id not in (
            event.aggregate_id,
            split_stored_id(event.aggregate_id)[1] if self._tenant_view else None,
        ):
            return False
        return not (self.event_type and not matches_event_type(event.event_type, self.event_type))

    def _on_commit(self, head: int) -> None:
        try:
            self.refresh()
        except Exception:
            # Never raise into the command that committed: show it here instead.
            self.error.value = (
                "<pre style='color:#b00'>the event log could not update:\n"
                f"{html.escape(traceback.format_exc())}</pre>"
            )

    def refresh(self) -> int:
        """Read events committed since the last look; returns how many were new."""
        with self._lock:
            new = 0
            while True:
                page = self.store.read_all(self.position, limit=1000)
                for event in page:
                    if self._wanted(event):
                        self.events.append(event)
                        new += 1
                if page:
                    self.position = page[-1].position
                if len(page) < 1000:
                    break
            self.total += new
            self._render()
            return new

    def rows(self) -> list[dict[str, Any]]:
        """The rows shown, newest first."""
        shown = []
        for event in reversed(self.events):
            message = self._decode(event)
            payload = (
                _payload_text(message_to_dict(message)) if message is not None else event.data.hex()
            )
            shown.append(
                {
                    "position": event.position,
                    "time": event.timestamp.strftime("%H:%M:%S.%f")[:-3],
                    "aggregate": event.aggregate_id,
                    "version": event.version,
                    "event": event.event_type.rsplit(".", 1)[-1],
                    "payload": payload,
                }
            )
        return shown

    def _render(self) -> None:
        rows = self.rows()
        where = f" of {html.escape(self.aggregate_id)}" if self.aggregate_id else ""
        kind = f" ({html.escape(self.event_type)})" if self.event_type else ""
        noun = "event" if self.total == 1 else "events"
        if len(rows) < self.total:
            shown = f"showing the last {len(rows)} of {self.total} {noun}"
        else:
            shown = f"showing all {self.total} {noun}"
        self.summary.value = (
            f"<b>Event log{where}{kind}</b>: {shown}, log head at position {self.position}"
        )
        if not rows:
            self.table.value = "<i>no events yet</i>"
            return
        head = "".join(f"<th style='text-align:left;padding:2px 8px'>{c}</th>" for c in rows[0])
        body = "".join(
            "<tr>"
            + "".join(
                f"<td style='padding:2px 8px;font-family:monospace'>{html.escape(str(v))}</td>"
                for v in row.values()
            )
            + "</tr>"
            for row in rows
        )
        self.table.value = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def close(self) -> None:
        """Stop listening to the store (and close the widget)."""
        if getattr(self, "_listening", False):
            self.store.remove_commit_listener(self._on_commit)
            self._listening = False
        super().close()
