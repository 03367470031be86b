"""An altair chart as a live widget in JupyterLab, and a PNG beside it for readers with no kernel.

altair 6 writes vega-lite v6, which JupyterLab's built-in vega renderer (v3 to
v5) cannot draw; altair's ``JupyterChart`` widget draws it, and sends the
reader's selections back to Python (``.selections``). ``enable_offline()``
makes it load vega-embed from vl-convert's bundle instead of a CDN, so the
charts draw with no network. Each view renders in SVG, so every mark is an
element a test (or a screen reader) can find by its ``aria-label``.

Committed notebooks save no widget state (docs/decisions.md, "Tutorials are
MyST Markdown..."), so a chart's output also carries an ``image/png`` drawn
in the kernel by vl-convert: GitHub, nbviewer and nbconvert show that.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import altair as alt
from altair.utils.selection import PointSelection

RENDERER = "eventstore"
"""The altair renderer :func:`use_interactive_renderer` enables."""

TEXT = "altair chart (run the notebook for the interactive view; the picture beside it is static)"

EMBED_OPTIONS: dict[str, Any] = {"renderer": "svg", "actions": False}


def enable_offline() -> None:
    """Load vega-embed from vl-convert, not a CDN (about 0.9 MB of JavaScript, once per kernel)."""
    alt.JupyterChart.enable_offline()


class ChartView(alt.JupyterChart):
    """A ``JupyterChart`` drawn in SVG whose output also holds a static PNG of the chart.

    ``on_select(name, callback)`` calls ``callback(rows)`` with the selected
    rows (a list of dicts of the selection's fields) each time the reader
    selects something in the chart; an emptied selection (a click on the
    background, or the chart redrawn) is not reported, so a widget that
    follows the chart keeps showing the last thing chosen.
    """

    def __init__(self, chart: Any, **kwargs: Any) -> None:
        enable_offline()
        kwargs.setdefault("embed_options", dict(EMBED_OPTIONS))
        super().__init__(chart, **kwargs)

    def on_select(self, name: str, callback: Callable[[list[dict[str, Any]]], None]) -> None:
        """Call ``callback(rows)`` when the reader selects rows in the selection ``name``."""
        if name not in self._selection_types:
            raise ValueError(
                f"the chart has no selection named {name!r}; its selections are "
                f"{sorted(self._selection_types)}. Add one with chart.add_params("
                f"alt.selection_point(name={name!r}, ...))"
            )

        def changed(change: dict[str, Any]) -> None:
            raw = (change["new"] or {}).get(name) or {}
            rows = PointSelection.from_vega(name, raw.get("value"), raw.get("store", [])).value
            if rows:
                callback([dict(row) for row in rows])

        self.observe(changed, names="_vl_selections")

    def png(self) -> bytes:
        from ..charts import chart_png

        if self.chart is None:
            raise ValueError("this ChartView has no chart to draw; set .chart to an altair chart")
        return chart_png(self.chart)  # type: ignore[arg-type]

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[Any, Any], dict[Any, Any]] | None:
        bundle: Any = super()._repr_mimebundle_(**kwargs)
        metadata: dict[Any, Any] = {}
        if isinstance(bundle, tuple):  # anywidget answers (data, metadata)
            bundle, metadata = bundle
        data = dict(bundle or {})
        data["text/plain"] = TEXT
        metadata = dict(metadata or {})
        try:
            png = self.png()
        except Exception:  # no picture is better than no chart: the live view still draws
            return data, metadata
        data["image/png"] = base64.b64encode(png).decode("ascii")
        # Drawn at scale 2 for sharpness: shown at its natural size.
        width, height = struct.unpack(">II", png[16:24])
        metadata["image/png"] = {"width": width / 2, "height": height / 2}
        return data, metadata


_TOP_LEVEL: tuple[tuple[str, Any], ...] = (
    ("layer", alt.LayerChart),
    ("hconcat", alt.HConcatChart),
    ("vconcat", alt.VConcatChart),
    ("concat", alt.ConcatChart),
    ("repeat", alt.RepeatChart),
    ("facet", alt.FacetChart),
)


def chart_from_spec(spec: dict[str, Any]) -> Any:
    """The altair chart object of a vega-lite spec (single, layered, concatenated, ...)."""
    kind = next((cls for key, cls in _TOP_LEVEL if key in spec), alt.Chart)
    return kind.from_dict(spec, validate=False)


def _render(spec: dict[str, Any], **_metadata: Any) -> tuple[dict[Any, Any], dict[Any, Any]]:
    return ChartView(chart_from_spec(spec))._repr_mimebundle_() or ({}, {})


def use_interactive_renderer() -> None:
    """Show every altair chart displayed in this kernel as a :class:`ChartView`."""
    enable_offline()
    if RENDERER not in alt.renderers.names():
        alt.renderers.register(RENDERER, _render)
    alt.renderers.enable(RENDERER)
