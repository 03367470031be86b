"""The README's example runs and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_example_runs_and_prints_the_balance(capsys):
    blocks = python_blocks()
    assert blocks, "the README has no python example"
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out.strip() == "50"


def test_readme_opens_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```sh\n(.*?)```", text, flags=re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["./scripts/run", "./scripts/test"]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "./scripts/test" in ci


def test_the_binder_badge_is_one_documented_line_not_the_csharp_database():
    text = README.read_text()
    badges = [line for line in text.splitlines() if "mybinder.org/v2/gh/" in line]
    assert len(badges) == 1
    owner_name = badges[0].split("mybinder.org/v2/gh/")[1].split("/HEAD")[0]
    assert owner_name.lower() != "eventstore/eventstore"
    assert f"replace {owner_name} in the next line" in text
