"""docs/projections.md runs: its code blocks, executed in order in one namespace."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "projections.md"


def test_the_projections_guide_runs_as_written(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its mkdtemp() lands in tmp_path
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "projections_guide"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "[('acc-1', 100), ('acc-2', 50)]" in out
    assert "[(125,)]" in out
    assert "FAILED 3 deposits of 5 are not allowed" in out
    # "Appending from a handler": one thanks per deposit (its filter named no stored type,
    # so it printed 0 and showed nothing of what it teaches).
    assert "READY [('acc-1', 125), ('acc-2', 55)]\n4\n" in out, out
    for value in namespace.values():  # the guide leaves its stores open for the reader
        close = getattr(value, "close", None)
        if callable(close) and type(value).__module__.startswith("eventstore"):
            close()
