"""Make each tutorial's .ipynb from its MyST Markdown source, with a fresh kernel's outputs.

    .venv/bin/python scripts/sync_notebooks.py            # every notebook in notebooks/
    .venv/bin/python scripts/sync_notebooks.py 03 04      # only those whose name has "03" or "04"
    .venv/bin/python scripts/sync_notebooks.py --check    # exit 1 when a pair is out of step

The source of a tutorial is ``notebooks/NN_name.md`` (jupytext's MyST format,
paired through ``notebooks/jupytext.toml``); ``NN_name.ipynb`` is what a
reader opens and what nbval runs. Syncing reads the text, gives the cells
stable ids (``NN-index``), runs them on a fresh kernel (nbclient), and writes
the .ipynb with no widget state and no timing metadata. An output that only
differs from the committed one by what ``notebooks/sanitize.cfg`` masks (ids,
times, temp folders, widget model ids) is kept as committed, so syncing
without changes leaves no diff.
"""

from __future__ import annotations

import argparse
import configparser
import copy
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import jupytext
import nbformat
from nbformat.notebooknode import NotebookNode

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TEXT_FORMAT = "md:myst"
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def sources(folder: Path = NOTEBOOKS, only: list[str] | None = None) -> list[Path]:
    """The tutorials' text sources in ``folder`` (``NN_name.md``), in order."""
    found = sorted(folder.glob("[0-9][0-9]_*.md"))
    return [p for p in found if not only or any(part in p.stem for part in only)]


def from_text(path: Path) -> NotebookNode:
    """The notebook a text source describes: its cells, stable ids, no outputs."""
    text_nb = jupytext.read(path, fmt=TEXT_FORMAT)
    nb = nbformat.v4.new_notebook()
    nb.metadata = nbformat.from_dict(
        {"kernelspec": dict(KERNEL), "language_info": {"name": "python"}}
    )
    for index, cell in enumerate(text_nb.cells):
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        else:
            new = nbformat.v4.new_markdown_cell(cell.source)
        tags = cell.metadata.get("tags")
        if tags:
            new.metadata["tags"] = list(tags)
        new["id"] = f"{path.stem[:2]}-{index:02d}"  # stable ids: small diffs when cells change
        nb.cells.append(new)
    return nb


def _shape(cell: NotebookNode) -> tuple[str, str, str, list[str]]:
    return (cell.get("id", ""), cell.cell_type, cell.source, list(cell.metadata.get("tags", [])))


def differences(text_path: Path) -> list[str]:
    """How the .ipynb beside ``text_path`` differs from it (empty when in step)."""
    ipynb = text_path.with_suffix(".ipynb")
    if not ipynb.exists():
        return [f"{ipynb.name} is missing"]
    want = from_text(text_path)
    have = nbformat.read(ipynb, as_version=4)
    problems = []
    if len(want.cells) != len(have.cells):
        problems.append(
            f"{ipynb.name} has {len(have.cells)} cells, {text_path.name} has {len(want.cells)}"
        )
    for index, (a, b) in enumerate(zip(want.cells, have.cells, strict=False)):
        if _shape(a) != _shape(b):
            first = (b.source.splitlines() or [""])[0][:60]
            problems.append(f"{ipynb.name} cell {index} ({first!r}) differs from {text_path.name}")
            break
    if "widgets" in have.metadata:
        problems.append(f"{ipynb.name} holds widget state (metadata.widgets)")
    for cell in have.cells:
        if "execution" in cell.metadata:
            problems.append(f"{ipynb.name} holds execution timings in cell {cell.get('id')}")
            break
    return problems


def check(folder: Path = NOTEBOOKS) -> list[str]:
    """Every out-of-step pair in ``folder``, including an .ipynb with no text source."""
    problems = [p for path in sources(folder) for p in differences(path)]
    texts = {p.stem for p in sources(folder)}
    for ipynb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
        if ipynb.stem not in texts:
            problems.append(f"{ipynb.name} has no text source {ipynb.stem}.md")
    return problems


def _masks(folder: Path) -> list[tuple[re.Pattern[str], str]]:
    cfg = folder / "sanitize.cfg"
    if not cfg.exists():
        return []
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(cfg)
    return [(re.compile(parser[s]["regex"]), parser[s]["replace"]) for s in parser.sections()]


def _masked(
    outputs: list[Any], masks: list[tuple[re.Pattern[str], str]], *, pictures: bool
) -> str:
    if not pictures:  # a chart of times or durations is redrawn differently on every run
        outputs = copy.deepcopy(outputs)
        for output in outputs:
            for mime in [m for m in output.get("data", {}) if m.startswith("image/")]:
                output["data"][mime] = "PICTURE"
                output.get("metadata", {}).pop(mime, None)
    text = json.dumps(outputs, sort_keys=True)
    for regex, replacement in masks:
        text = regex.sub(replacement, text)
    return text


def keep_unchanged_outputs(new: NotebookNode, old: NotebookNode, folder: Path) -> int:
    """Put back the committed outputs of cells whose outputs differ only by masked text.

    When no cell of the notebook changed, pictures are not compared either
    (nbval does not compare them; a chart of clock times differs on every
    run), nor are the outputs of cells tagged ``nbval-ignore-output``; when a
    cell changed, every picture is the new one.
    """
    masks = _masks(folder)
    unchanged = [_shape(c) for c in new.cells] == [_shape(c) for c in old.cells]
    old_cells = {(c.get("id"), c.source): c for c in old.cells if c.cell_type == "code"}
    kept = 0
    for cell in new.cells:
        previous = old_cells.get((cell.get("id"), cell.source))
        if cell.cell_type != "code" or previous is None:
            continue
        ignored = unchanged and "nbval-ignore-output" in cell.metadata.get("tags", [])
        same = _masked(cell.outputs, masks, pictures=not unchanged) == _masked(
            previous.outputs, masks, pictures=not unchanged
        )
        if ignored or same:
            cell.outputs = copy.deepcopy(previous.outputs)
            kept += 1
    return kept


def execute(nb: NotebookNode, folder: Path) -> float:
    from nbclient import NotebookClient

    started = time.perf_counter()
    NotebookClient(
        nb,
        kernel_name=KERNEL["name"],
        timeout=120,
        record_timing=False,
        store_widget_state=False,  # widget state bloats the file and is stale once saved
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    nb.metadata.pop("widgets", None)
    return time.perf_counter() - started


def sync(text_path: Path) -> float:
    """Write ``text_path``'s .ipynb with a fresh kernel's outputs; returns the run's seconds."""
    folder = text_path.parent
    nb = from_text(text_path)
    seconds = execute(nb, folder)
    ipynb = text_path.with_suffix(".ipynb")
    if ipynb.exists():
        keep_unchanged_outputs(nb, nbformat.read(ipynb, as_version=4), folder)
    nbformat.validate(nb)
    nbformat.write(nb, ipynb)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-step pairs")
    parser.add_argument("only", nargs="*", help="substrings of the notebooks' names")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print("run: .venv/bin/python scripts/sync_notebooks.py", file=sys.stderr)
        return 1 if problems else 0
    for path in sources(only=args.only):
        seconds = sync(path)
        print(f"wrote {path.with_suffix('.ipynb').relative_to(ROOT)} ({seconds:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
