"""docs/concurrency.md runs: its code blocks, executed in order in one namespace."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "concurrency.md"


def test_the_concurrency_guide_runs_as_written(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its mkdtemp() lands in tmp_path
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 5
    namespace: dict[str, object] = {"__name__": "concurrency_guide"}
    try:
        for number, block in enumerate(blocks, start=1):
            exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "800 events stored"  # 16 threads x 50 deposits, none lost
        assert out[1] == "True - fewer commits than appends"  # they were grouped
        assert out[2] == "60"  # acc-0: 50 from its thread, then 10 from its task
        assert out[3] == "8"  # eight tasks on one account, each retried until it landed
        assert out[4] == "60 65"  # the cached load caught up with the other writer
        store = namespace["store"]
        assert store.count_events() == 800 + 160 + 8 + 1  # type: ignore[attr-defined]
    finally:
        store = namespace.get("store")
        if store is not None:
            store.close()  # type: ignore[attr-defined]
