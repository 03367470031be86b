"""docs/projections.md runs: its code blocks, executed in order in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "projections.md"


def test_the_projections_guide_runs_as_written(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "projections_guide"}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "[('acc-1', 100), ('acc-2', 50)]" in out
    assert "[(125,)]" in out
    assert "FAILED 3 deposits of 5 are not allowed" in out
