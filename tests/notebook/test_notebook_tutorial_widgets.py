"""The tutorials' widgets after Run All, on a real kernel, and as a saved notebook shows them."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def test_after_run_all_of_04_the_time_travel_slider_still_answers():
    nb = nbformat.read(NOTEBOOKS / "04_snapshots_time_travel.ipynb", as_version=4)
    probe = nbformat.v4.new_code_cell(
        "travel.slider.value = 3\n"
        "print(travel.view.version, travel.view.state['balance'])\n"
        "print('error' if 'cannot show' in travel.event_view.value else 'ok')"
    )
    nb.cells.append(probe)
    client = NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()

    (output,) = probe.outputs
    assert output["text"].split() == ["3", "1150", "ok"]


def test_html_export_of_a_saved_tutorial_shows_each_widget_statically():
    nb = nbformat.read(NOTEBOOKS / "04_snapshots_time_travel.ipynb", as_version=4)
    assert "widgets" not in nb.metadata  # saved without widget state: the picture is what shows

    body, _ = HTMLExporter().from_notebook_node(nb)

    assert "TimeTravel(children" not in body
    assert "eventstore-widget" in body
    assert "snapshots at versions 5, 10, 15, 20<" in body  # as first drawn
    assert "snapshots at versions 15, 20<" in body  # drawn again after keep_last_snapshots
    assert "a picture of the widget when it was shown" in body
