"""Each tutorial, run in JupyterLab in a headless Chromium, checked through its DOM.

For every ``notebooks/NN_*.md`` (so a new tutorial is covered by adding its
file: the parameters are read from the folder), the test opens the paired
.ipynb, runs all its cells in a new kernel (Run > Run All Cells once the kernel is
connected; a stalled run is restarted through Kernel > Restart, at most twice), and
checks what a reader would see: no traceback except in cells tagged
``raises-exception`` (and those do show one), no "Error displaying widget",
every chart drawn (SVG marks or a canvas), and then, for each widget the
notebook shows, that it works when used: the form's Send adds a row to the
live event log, moving the time-travel slider changes the version and
state shown, clicking the event of version N in the linked timeline moves
the time-travel widget to N, the projection monitor's lag reaches 0 and
clicking a projection in its chart shows its status. A notebook typed cell
by cell in the browser gets the same checks.

Measurements (cells, Run All time, what was exercised) go to
``<artifacts>/measurements.json``, with a screenshot per notebook.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from .lab import (
    NOTEBOOKS,
    LabPage,
    chart_outputs,
    expected_error_cells,
    notebook_cells,
    poll,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

TUTORIALS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.md"))


def _record(artifacts: Path, name: str, values: dict[str, Any]) -> None:
    path = artifacts / "measurements.json"
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded[name] = values
    path.write_text(json.dumps(recorded, indent=2, sort_keys=True))


def _screenshot(lab: LabPage, artifacts: Path, docs: Path | None, name: str) -> None:
    target = artifacts / f"{name}.png"
    lab.screenshot(target)
    if docs is not None:
        shutil.copy2(target, docs / f"browser-{name}.png")


# -- the checks ---------------------------------------------------------------------------------
def check_no_unexpected_errors(lab: LabPage, expected: set[int], cells: int | None = None) -> None:
    """No traceback but in ``expected`` cells; the first ``cells`` code cells (all) ran in order."""
    errors = lab.error_cells()
    unexpected = {i: t for i, t in errors.items() if i not in expected}
    assert not unexpected, f"cells show tracebacks they are not tagged to raise: {unexpected}"
    missing = expected - set(errors)
    assert not missing, f"cells tagged raises-exception show no traceback: {sorted(missing)}"
    prompts = lab.prompts()[:cells]
    counts = [re.fullmatch(r"\[(\d+)\]:", p) for p in prompts]
    assert all(counts), f"cells not run: {prompts}"
    # One fresh run, in order: execution counts 1, 2, 3, ...
    assert [int(m.group(1)) for m in counts if m] == list(range(1, len(prompts) + 1)), prompts
    assert "Error displaying widget" not in lab.text()


def check_charts(lab: LabPage, expected: int) -> int:
    drawn = lab.wait_charts_drawn(expected)
    assert drawn >= expected, f"{drawn} of {expected} charts drew marks"
    return drawn


def check_form_adds_a_row(lab: LabPage) -> None:
    """Press the first form's Send: the live event log gains a row at its top."""
    log = lab.page.locator(".eventstore-event-log").first
    form = lab.page.locator(".eventstore-command-form").first
    log.scroll_into_view_if_needed()
    summary = log.locator(".widget-html-content").first

    def total() -> int:
        match = re.search(r"(?:of|all) (\d+) events?", summary.inner_text())
        return int(match.group(1)) if match else -1

    def top_position() -> int:
        cell = log.locator("tbody tr").first.locator("td").first
        return int(cell.inner_text()) if cell.count() else 0

    before, top_before = total(), top_position()
    form.locator("button", has_text="Send").click()
    poll(lambda: total() == before + 1, 20, f"the event log to count {before + 1} events")
    poll(lambda: top_position() > top_before, 10, "a new row at the top of the event log")


def _time_travel_version(travel: Any) -> int:
    line = travel.locator(".widget-html-content", has_text=re.compile(r"version \d+ of \d+"))
    text = line.first.inner_text()
    match = re.search(r"version (\d+) of (\d+)", text)
    assert match, f"the time-travel widget shows no version line: {text!r}"
    return int(match.group(1))


def check_time_travel_slider(lab: LabPage) -> None:
    """Move the slider one step left by keyboard: the version and the state shown change."""
    travel = lab.page.locator(".eventstore-time-travel").first
    travel.scroll_into_view_if_needed()
    version = _time_travel_version(travel)
    state = travel.locator("table").first.inner_text()
    handle = travel.locator(".noUi-handle").first
    handle.focus()
    handle.press("ArrowLeft" if version > 1 else "ArrowRight")
    wanted = version - 1 if version > 1 else version + 1
    poll(lambda: _time_travel_version(travel) == wanted, 20, f"time travel at version {wanted}")
    readout = travel.locator(".widget-readout").first.inner_text().strip()
    assert readout == str(wanted)
    poll(
        lambda: travel.locator("table").first.inner_text() != state,
        10,
        "the state table to follow the slider",
    )


def click_until(target: Any, done: Any, what: str, attempts: int = 3) -> None:
    """Click ``target`` until ``done()``: a click on a vega view still settling
    (its first resize after the widget was drawn) can be lost, as it can for a
    reader, who clicks again."""
    for attempt in range(attempts):
        target.scroll_into_view_if_needed()
        target.click()
        try:
            poll(done, 8 if attempt < attempts - 1 else 20, what)
            return
        except AssertionError:
            if attempt == attempts - 1:
                raise


def check_linked_timeline(lab: LabPage) -> int:
    """Click the dot of version N in the stream's chart: the time-travel widget shows N."""
    travel = lab.page.locator(".eventstore-time-travel").first
    current = _time_travel_version(travel)
    target = 3 if current != 3 else 2
    dot = lab.page.locator(
        f".vega-embed svg g.mark-symbol path[aria-label*='version: {target};']"
        "[aria-label*='event_type']"
    ).first
    click_until(
        dot,
        lambda: _time_travel_version(travel) == target,
        f"the time-travel widget at version {target} after clicking its event",
    )
    changes = travel.locator("table").nth(1)
    assert changes.count() or "no state change" in travel.inner_text()
    return target


def check_projection_monitor(lab: LabPage) -> list[str]:
    """Every projection's lag reaches 0; clicking one in the lag chart shows its status."""
    monitor = lab.page.locator(".eventstore-projection-monitor").first
    monitor.scroll_into_view_if_needed()

    def lags() -> dict[str, str]:
        rows = monitor.locator("table").first.locator("tbody tr")
        found = {}
        for i in range(rows.count()):
            cells = rows.nth(i).locator("td").all_inner_texts()
            found[cells[0]] = cells[4]
        return found

    poll(
        lambda: (lambda seen: seen and all(v == "0" for v in seen.values()))(lags()),
        30,
        "every projection's lag at 0",
    )
    names = sorted(lags())
    chosen = names[0]
    point = monitor.locator(
        f".vega-embed svg g.mark-symbol path[aria-label*='projection: {chosen}']"
    ).first
    detail = monitor.locator(".eventstore-projection-detail")
    click_until(
        point,
        lambda: detail.count() and f"selected: {chosen}" in detail.inner_text(),
        f"the monitor's status of {chosen!r} after clicking it in the lag chart",
    )
    assert "status" in detail.inner_text() and "last error" in detail.inner_text()
    return names


def exercise(lab: LabPage, source: str) -> dict[str, Any]:
    """Run every widget check the notebook's code calls for; what was exercised."""
    done: dict[str, Any] = {}
    if "CommandForm(" in source and "EventLog(" in source:
        check_form_adds_a_row(lab)
        done["form Send adds an event-log row"] = True
    if "TimeTravel(" in source:
        check_time_travel_slider(lab)
        done["time-travel slider"] = True
        if ".timeline()" in source:
            done["timeline click moves time travel to version"] = check_linked_timeline(lab)
    if "ProjectionMonitor(" in source:
        done["projection monitor lag 0, chart click shows status"] = check_projection_monitor(lab)
    return done


# -- the tutorials ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TUTORIALS)
def test_the_tutorial_runs_in_jupyterlab_and_its_widgets_work(
    name: str, lab: LabPage, artifacts: Path, docs_screenshots: Path | None
) -> None:
    path = NOTEBOOKS / f"{name}.ipynb"
    cells = notebook_cells(path)
    source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    try:
        lab.open_notebook(f"notebooks/{name}.ipynb")
        seconds = lab.restart_and_run_all()
        for stall in lab.stalls:  # shown in the run's warnings summary, so CI logs keep it
            warnings.warn(f"{name}: a stalled Run All was restarted: {stall}", stacklevel=1)
        check_no_unexpected_errors(lab, expected_error_cells(path))
        charts = check_charts(lab, chart_outputs(path))
        exercised = exercise(lab, source)
    finally:
        _screenshot(lab, artifacts, docs_screenshots, name)
    _record(
        artifacts,
        name,
        {
            "cells": len(cells),
            "code cells": sum(c["cell_type"] == "code" for c in cells),
            "run all seconds": round(seconds, 1),
            "stalled runs restarted": lab.stalls,
            "charts drawn": charts,
            "exercised": exercised,
        },
    )


# -- a notebook typed in the browser --------------------------------------------------------------
TYPED_CELLS = [
    "%load_ext eventstore.notebook",
    """from pathlib import Path
from eventstore.codegen import generate_module
from eventstore.notebook import charts, frames
from eventstore.notebook.widgets import CommandForm, EventLog, TimeTravel

bank = generate_module(paths=[Path("proto/examples/bank/account.proto")], name="typedbank")

class Applier:
    def apply_account_opened_event(self, agg, event):
        agg.owner, agg.balance = event.owner, event.initial_deposit
    def apply_money_deposited_event(self, agg, event):
        agg.balance += event.amount
    def apply_money_withdrawn_event(self, agg, event):
        agg.balance -= event.amount
    def apply_account_closed_event(self, agg, event):
        pass

%es_store
repo = bank.AccountRepository(store, Applier())

def deposit(cmd):
    event = bank.MoneyDepositedEvent(amount=cmd.amount)
    return repo.retry_on_conflict(cmd.account_id, lambda agg: agg.apply_change(event))

opened = bank.AccountOpenedEvent(owner="Ada", initial_deposit=10)
repo.retry_on_conflict("acc-1", lambda agg: agg.apply_change(opened))
for amount in (5, 7, 9):
    deposit(bank.DepositCommand(account_id="acc-1", amount=amount))""",
    "EventLog(store, repo, max_rows=5)",
    """form = CommandForm(bank.DepositCommand, deposit, title="Deposit")
form.input("account_id").value = "acc-1"
form.input("amount").value = 11
form""",
    """travel = TimeTravel(repo, "acc-1", version=4)
travel""",
    "travel.timeline()",
    "charts.event_timeline(frames.store_events_frame(store, types=repo))",
]


def _type_a_notebook(lab: LabPage) -> float:
    """File > New > Notebook, then type and run each cell; the seconds it took."""
    lab.open_lab()
    lab.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^File$")).click()
    lab.page.locator(".lm-Menu-item[data-type='submenu']", has_text="New").first.hover()
    lab.page.locator(".lm-Menu-item[data-command='notebook:create-new']").first.click()
    dialog = lab.page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel": this venv's
    dialog.wait_for(timeout=30_000)
    dialog.click()
    lab.page.wait_for_selector(".jp-NotebookPanel .jp-Cell .cm-content", timeout=60_000)
    lab.wait_kernel_idle(60)
    started = time.monotonic()
    for index, text in enumerate(TYPED_CELLS):
        lab.cells().nth(index).locator(".cm-content").click()
        lab.page.keyboard.insert_text(text)
        lab.page.keyboard.press("Shift+Enter")
        poll(
            lambda i=index: re.fullmatch(r"\[\d+\]:", lab.prompts()[i]) is not None,
            120,
            f"typed cell {index} to run",
        )
    return time.monotonic() - started


def test_a_notebook_typed_in_the_browser_works_the_same(
    lab: LabPage, artifacts: Path, docs_screenshots: Path | None
) -> None:
    try:
        seconds = _type_a_notebook(lab)
        check_no_unexpected_errors(lab, set(), cells=len(TYPED_CELLS))  # then an empty cell
        charts = check_charts(lab, 2)
        exercised = exercise(lab, "\n".join(TYPED_CELLS))
    finally:
        _screenshot(lab, artifacts, docs_screenshots, "typed-notebook")
    assert set(exercised) >= {
        "form Send adds an event-log row",
        "time-travel slider",
        "timeline click moves time travel to version",
    }
    _record(
        artifacts,
        "typed notebook",
        {
            "cells": len(TYPED_CELLS),
            "code cells": len(TYPED_CELLS),
            "typing and running seconds": round(seconds, 1),
            "charts drawn": charts,
            "exercised": exercised,
        },
    )
