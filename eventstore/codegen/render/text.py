"""Formatted-source helpers: lines laid out as ``ruff format`` would lay them out.

The templates write formatted code, so no formatter runs at generation time;
these helpers hold the layout rules (line length, magic trailing commas,
docstring wrapping) in one place.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence

LINE = 100
# Import order depends on where the output is placed (first- or third-party); RUF100
# would call the I001 exemption unused in a project that does not select I.
HEADER = "# ruff: noqa: I001, RUF100"


def opening_docstring(text: str) -> str | None:
    """The docstring that opens module ``text`` after its comment lines, whitespace collapsed
    to single spaces; None when the module opens with anything else."""
    lines = iter(text.splitlines())
    line = next(lines, "")
    while line.startswith("#"):
        line = next(lines, "")
    if not line.startswith('"""'):
        return None
    body = [line[3:]]
    while '"""' not in body[-1]:
        following = next(lines, None)
        if following is None:
            return None
        body.append(following)
    body[-1] = body[-1][: body[-1].index('"""')]
    return " ".join(" ".join(body).split())


def _wrapped(indent: str, head: str, items: Sequence[str], tail: str) -> list[str]:
    """``head + items + tail`` on one line, else one item per line (magic trailing comma)."""
    one = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one) <= LINE or not items:
        return [one]
    inner = indent + "    "
    return [f"{indent}{head}", *(f"{inner}{item}," for item in items), f"{indent}{tail}"]


def _call_with_list(
    indent: str, head: str, items: Sequence[str], tail: str, brackets: str = "[]"
) -> list[str]:
    """``head([items])tail`` (or with other brackets) as ``ruff format`` lays it out."""
    first, last = brackets[0], brackets[1]
    one = f"{indent}{head}{first}{', '.join(items)}{last}){tail}"
    if len(one) <= LINE:
        return [one]
    return [
        f"{indent}{head}",
        *_wrapped(indent + "    ", first, items, last),
        f"{indent}){tail}",
    ]


def _docstring(indent: str, text: str) -> list[str]:
    """A docstring at ``indent``: one line when it fits, else wrapped paragraphs.

    Laid out as ``ruff format`` leaves it: leading tabs expanded, the lines after
    the first dedented by their common indentation, a space between the quotes and
    a ``"`` at either end, and one line when there is only one.
    """
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    if text.startswith('"'):
        text = " " + text
    if text.endswith('"') and _unescaped_end(text):
        text += " "
    if "\n" not in text and len(indent) + len(text) + 6 <= LINE:
        return [f'{indent}"""{text}"""']
    width = LINE - len(indent)
    lines: list[str] = []
    for raw in text.split("\n"):
        raw = _expand_leading_tabs(raw.rstrip())
        first = 3 if not lines else 0
        if len(raw) + first <= width:
            lines.append(raw)
            continue
        wrapped = textwrap.wrap(raw, width - first, break_on_hyphens=False, break_long_words=False)
        lines.append(wrapped[0])
        lines.extend(textwrap.wrap(" ".join(wrapped[1:]), width, break_on_hyphens=False))
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    rest = [line for line in lines[1:] if line]
    common = min((len(line) - len(line.lstrip(" ")) for line in rest), default=0)
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line[common:]}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _unescaped_end(text: str) -> bool:
    """Whether the ``"`` that ends ``text`` is a real quote (not one escaped by a backslash)."""
    body = text[:-1]
    return (len(body) - len(body.rstrip("\\"))) % 2 == 0


def _expand_leading_tabs(line: str) -> str:
    stripped = line.lstrip(" \t")
    return line[: len(line) - len(stripped)].expandtabs(8) + stripped


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def extend(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)

    def blank(self, count: int = 1) -> None:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.lines.extend([""] * count)

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"
