"""The tutorials' text sources (MyST Markdown) and their .ipynb pairs stay in step."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sync_notebooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sync_notebooks", ROOT / "scripts" / "sync_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sync_notebooks"] = module
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_has_a_text_source_in_step_with_its_ipynb(sync_notebooks):
    assert len(sync_notebooks.sources()) >= 6
    assert sync_notebooks.check() == []


def test_a_hand_edited_ipynb_is_reported_out_of_step(sync_notebooks, tmp_path):
    for name in ("04_snapshots_time_travel.md", "04_snapshots_time_travel.ipynb", "sanitize.cfg"):
        shutil.copy(ROOT / "notebooks" / name, tmp_path / name)
    assert sync_notebooks.check(tmp_path) == []
    ipynb = tmp_path / "04_snapshots_time_travel.ipynb"
    nb = nbformat.read(ipynb, as_version=4)
    nb.cells[3].source += "\nprint('edited in the .ipynb only')"
    nbformat.write(nb, ipynb)

    problems = sync_notebooks.check(tmp_path)

    assert len(problems) == 1
    assert "04_snapshots_time_travel.ipynb cell 3" in problems[0]


def test_an_ipynb_without_a_text_source_is_reported(sync_notebooks, tmp_path):
    shutil.copy(ROOT / "notebooks" / "05_unique_constraints.ipynb", tmp_path)
    assert sync_notebooks.check(tmp_path) == [
        "05_unique_constraints.ipynb has no text source 05_unique_constraints.md"
    ]


def test_committed_notebooks_hold_no_widget_state_or_timings():
    for ipynb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(ipynb.read_text())
        assert "widgets" not in nb["metadata"], ipynb.name
        assert all("execution" not in c["metadata"] for c in nb["cells"]), ipynb.name


TINY = """\
---
kernelspec:
  display_name: Python 3 (ipykernel)
  language: python
  name: python3
---

# A tiny notebook

```{code-cell} ipython3
import uuid, datetime
print(uuid.uuid4(), datetime.datetime.now())
```
"""


def test_syncing_twice_without_changes_writes_the_same_file(sync_notebooks, tmp_path):
    shutil.copy(ROOT / "notebooks" / "sanitize.cfg", tmp_path)
    source = tmp_path / "01_tiny.md"
    source.write_text(TINY)
    sync_notebooks.sync(source)
    first = source.with_suffix(".ipynb").read_bytes()
    sync_notebooks.sync(source)  # a new uuid and time, masked by sanitize.cfg: output kept

    assert source.with_suffix(".ipynb").read_bytes() == first
    assert sync_notebooks.check(tmp_path) == []


def test_every_tutorial_has_a_row_in_the_tutorials_table():
    table = (ROOT / "docs" / "tutorials.md").read_text()
    for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.md")):
        row = f"| {source.stem[:2]} | ["
        assert row in table, f"docs/tutorials.md has no row for {source.stem}"
        assert f"../notebooks/{source.stem}.ipynb" in table, source.stem
