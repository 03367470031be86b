"""Interactive charts without a browser: ChartView's output, selections, and the linked widgets.

A selection made in the browser reaches Python as a change of the widget's
``_vl_selections`` (what altair's JupyterChart front end sets); these tests
set it the same way and check what the linked widgets then show. The same
links are clicked for real in tests/browser.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import altair as alt
import pandas as pd
import pytest

from eventstore.notebook import charts, frames
from eventstore.notebook.widgets import ChartView, ProjectionMonitor, TimeTravel
from eventstore.notebook.widgets.chart_view import (
    RENDERER,
    TEXT,
    chart_from_spec,
    use_interactive_renderer,
)
from tests.notebook.test_notebook_live_widgets import (  # noqa: F401 (fixtures)
    deposit,
    history,
    manager,
    open_account,
)
from tests.support.bank import account_repository


def click(view: ChartView, name: str, *rows: dict[str, Any]) -> None:
    """What the front end sends when the reader clicks ``rows`` in the selection ``name``."""
    view._vl_selections = {
        **view._vl_selections,
        name: {"value": {"vlPoint": {"or": list(rows)}}, "store": []},
    }


def a_stream() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "aggregate_id": "acc-1",
            "version": [1, 2, 3],
            "event_type": ["bank.v1.Opened", "bank.v1.Deposited", "bank.v1.Deposited"],
            "timestamp": pd.to_datetime([1, 2, 3], unit="s", utc=True),
            "payload": [{"owner": "Ada"}, {"amount": 5}, "0a0b"],
        }
    )


def test_the_chart_output_holds_the_live_view_and_a_png_at_its_natural_size():
    data, metadata = ChartView(charts.version_timeline(a_stream()))._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"] == TEXT
    png = base64.b64decode(data["image/png"])
    width, height = struct.unpack(">II", png[16:24])
    assert metadata["image/png"] == {"width": width / 2, "height": height / 2}


def test_the_views_draw_in_svg_with_no_cdn():
    view = ChartView(charts.version_timeline(a_stream()))
    assert view.embed_options["renderer"] == "svg"
    assert alt.JupyterChart._is_offline  # vega-embed comes from vl-convert's bundle


def test_the_version_timeline_tooltip_gives_type_version_time_and_payload():
    spec = charts.version_timeline(a_stream()).to_dict()
    assert [t["field"] for t in spec["encoding"]["tooltip"]] == [
        "event_type",
        "version",
        "time",
        "payload_text",
    ]
    rows = next(iter(spec["datasets"].values()))
    assert rows[0]["payload_text"] == "owner='Ada'"
    assert rows[2]["payload_text"] == "0a0b"  # undecoded: the hex of the stored bytes
    assert rows[0]["time"] == "1970-01-01 00:00:01.000 UTC"
    names = {p["name"] for p in spec["params"]}
    assert names == {charts.EVENT_SELECTION, charts.ZOOM}


def test_the_event_timeline_selects_events_and_zooms_along_time(tmp_path):
    events = frames.events_frame([], None)
    assert charts.event_timeline(events).to_dict()  # an empty log still draws
    spec = charts.event_timeline(
        a_stream().assign(position=[1, 2, 3], event_type=lambda f: f["event_type"])
    ).to_dict()
    params = {p["name"]: p for p in spec["params"]}
    assert params[charts.EVENT_SELECTION]["select"]["fields"] == ["aggregate_id", "version"]
    assert params[charts.ZOOM]["bind"] == "scales"
    assert "payload_text" in [t["field"] for t in spec["encoding"]["tooltip"]]


def test_a_selection_comes_back_to_python_with_its_rows():
    view = ChartView(charts.version_timeline(a_stream()))
    seen: list[list[dict[str, Any]]] = []
    view.on_select(charts.EVENT_SELECTION, seen.append)
    click(view, charts.EVENT_SELECTION, {"version": 2})
    assert seen == [[{"version": 2}]]
    assert view.selections.event.value == [{"version": 2}]
    click(view, charts.EVENT_SELECTION)  # a click on the background empties it: not reported
    assert len(seen) == 1


def test_asking_for_a_selection_the_chart_lacks_names_the_ones_it_has():
    view = ChartView(charts.version_timeline(a_stream()))
    with pytest.raises(ValueError, match=r"no selection named 'nope'.*\['event', 'zoom'\]"):
        view.on_select("nope", print)


def test_clicking_an_event_in_the_timeline_moves_time_travel_to_its_version(history):  # noqa: F811
    travel = TimeTravel(history, "acc-1", poll_interval=None)
    timeline = travel.timeline()
    assert travel.view.version == 6
    click(timeline, charts.EVENT_SELECTION, {"version": 3})
    assert travel.slider.value == 3
    assert travel.view.state["balance"] == 130
    assert "version <b>3</b> of 6" in travel.event_view.value
    assert "110 → 130" in travel.changes_view.value


def test_the_time_travel_timeline_of_a_stream_above_5000_events_counts_per_bucket(store):
    open_account(store, "big", "Ada")
    repo = account_repository(store)
    account = repo.load("big")
    for amount in range(1, 6001):
        account.deposit(amount)
        if amount % 1000 == 0:
            repo.save(account)
    travel = TimeTravel(repo, "big", poll_interval=None)
    spec = travel.timeline().chart.to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= charts.MAX_ROWS
    assert sum(r["events"] for r in rows) == 6001


def test_clicking_a_projection_in_the_lag_chart_shows_its_status_and_last_error(store, manager):  # noqa: F811
    open_account(store, "acc-1", "Ada")
    deposit(store, "acc-1", 5)
    manager.catch_up()
    monitor = ProjectionMonitor(manager)
    assert monitor.chart_view is not None
    assert "click a projection" in monitor.detail.value
    click(monitor.chart_view, charts.PROJECTION_SELECTION, {"projection": "picky"})
    assert monitor.selected == "picky"
    assert "selected: picky" in monitor.detail.value
    assert "FAILED" in monitor.detail.value
    assert "cannot handle version 2" in monitor.detail.value
    monitor.refresh()  # the chart is redrawn: the pane keeps the projection chosen
    assert "selected: picky" in monitor.detail.value


def test_selecting_an_unknown_projection_says_which_exist(manager):  # noqa: F811
    monitor = ProjectionMonitor(manager)
    monitor.select("nope")
    assert monitor.selected is None
    assert "no projection named nope" in monitor.detail.value
    assert "counter" in monitor.detail.value


def test_the_renderer_shows_every_altair_chart_as_a_chart_view():
    before = alt.renderers.active
    try:
        use_interactive_renderer()
        assert alt.renderers.active == RENDERER
        layered = charts.snapshot_positions(a_stream(), pd.DataFrame({"version": [2]}))
        data, _ = layered._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in data and "image/png" in data
    finally:
        alt.renderers.enable(before)


def test_a_spec_becomes_the_chart_class_that_drew_it():
    layered = charts.snapshot_positions(a_stream(), pd.DataFrame({"version": [2]}))
    assert isinstance(chart_from_spec(layered.to_dict()), alt.LayerChart)
    single = charts.version_timeline(a_stream())
    assert isinstance(chart_from_spec(single.to_dict()), alt.Chart)
