"""A static HTML picture of a widget, shown where no kernel runs its view.

A saved notebook's widget output holds a widget view (a model id) that only
a live kernel, or saved widget state, can draw. The tutorials are saved
without widget state, so each widget's ``_repr_mimebundle_`` also carries a
``text/html`` picture of itself as it is when displayed, plus a one-line
``text/plain``. JupyterLab with a kernel draws the live view; GitHub,
nbviewer and ``jupyter nbconvert --to html`` show the picture instead.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import ipywidgets as W

NOTE = (
    "<div style='color:#777;font-size:smaller'>a picture of the widget when it was shown; "
    "run the notebook to use it</div>"
)


# The controls that show a label for a value: the choice made, by the name the reader saw.
_SELECTIONS = (
    W.Dropdown,
    W.Select,
    W.RadioButtons,
    W.ToggleButtons,
    W.SelectionSlider,
    W.SelectMultiple,
    W.SelectionRangeSlider,
)


def static_html(widget: W.Widget, *, skip: Iterable[W.Widget] = ()) -> str:
    """HTML showing what ``widget`` and its children display now (controls read-only)."""
    skipped = {id(w) for w in skip}
    return _render(widget, skipped)


def _label(widget: W.Widget) -> str:
    description = getattr(widget, "description", "") or ""
    return f"<b>{html.escape(description)}</b> " if description else ""


def _render(widget: W.Widget, skipped: set[int]) -> str:
    if id(widget) in skipped:
        return ""
    if isinstance(widget, W.Box):
        inner = "".join(_render(child, skipped) for child in widget.children)
        if isinstance(widget, W.HBox):
            return f"<div style='display:flex;gap:8px;align-items:flex-start'>{inner}</div>"
        return f"<div>{inner}</div>"
    if isinstance(widget, W.HTML | W.HTMLMath):
        return f"<div>{widget.value}</div>"
    if isinstance(widget, W.Label):
        return f"<div>{html.escape(str(widget.value))}</div>"
    if isinstance(widget, W.Button):
        return f"<button disabled>{html.escape(widget.description)}</button>"
    if isinstance(widget, W.Output):
        return "".join(_output_html(o) for o in widget.outputs)
    if isinstance(widget, W.IntSlider | W.FloatSlider):
        return (
            f"<div>{_label(widget)}{widget.value} "
            f"<span style='color:#777'>(of {widget.min} to {widget.max})</span></div>"
        )
    if isinstance(widget, W.Checkbox):
        return f"<div>{'☑' if widget.value else '☐'} {html.escape(widget.description)}</div>"
    if isinstance(widget, _SELECTIONS):
        # What the control shows is the chosen option's label; its value may be anything
        # (an enum dropdown's is the number).
        label = widget.label
        shown = ", ".join(map(str, label)) if isinstance(label, tuple) else label or ""
        return f"<div>{_label(widget)}<code>{html.escape(str(shown))}</code></div>"
    if hasattr(widget, "value"):
        return f"<div>{_label(widget)}<code>{html.escape(str(widget.value))}</code></div>"
    return ""


def _output_html(output: dict[str, Any]) -> str:
    data = output.get("data", {})
    if "text/html" in data:
        return str(data["text/html"])
    text = output.get("text") or data.get("text/plain") or "\n".join(output.get("traceback", []))
    return f"<pre>{html.escape(str(text))}</pre>"


class StaticRendering:
    """Mixin for a widget: its mimebundle carries a static ``text/html`` beside the live view."""

    def static_html(self) -> str:
        assert isinstance(self, W.Widget)
        return static_html(self)

    def static_text(self) -> str:
        return f"{type(self).__name__} widget (run the notebook to use it)"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        data = dict(bundle or {})
        data["text/plain"] = self.static_text()
        data["text/html"] = f"<div class='eventstore-widget'>{self.static_html()}{NOTE}</div>"
        return data
