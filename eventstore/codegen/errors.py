"""Errors of code generation: each names the file, line and column it is about.

A ``CodegenError`` carries every problem found (``diagnostics``), and the first
one's ``file``, ``line``, ``column`` and ``message`` as attributes, so that a
caller such as the notebook's ``%%es_generate`` magic can map lines back to a
cell (``shifted``) and show only the compiler's words (``_render_traceback_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..core.errors import EventStoreError


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem at one place. ``line``/``column`` are 1-based; 0 when unknown."""

    file: str
    line: int
    column: int
    message: str
    element: str = ""

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}: {self.message}"
        return f"{self.file}: {self.message}"


class CodegenError(EventStoreError):
    """Code generation stopped: the proto input is wrong (see ``diagnostics``)."""

    hint = "Fix the proto at the places shown and generate again."

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        if not diagnostics:
            raise ValueError("a CodegenError needs at least one diagnostic")
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        first = self.diagnostics[0]
        self.file = first.file
        self.line = first.line
        self.column = first.column
        self.message = first.message
        self.element = first.element
        super().__init__("\n".join([*map(str, self.diagnostics), self.hint]))

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (type(self), (self.diagnostics,))

    def shifted(self, file: str, line_offset: int, new_file: str | None = None) -> CodegenError:
        """The same error with the lines of ``file`` moved by ``line_offset`` (and renamed)."""
        moved = [
            replace(
                d,
                line=d.line + line_offset if d.line else 0,
                file=new_file or d.file,
            )
            if d.file == file
            else d
            for d in self.diagnostics
        ]
        return type(self)(moved)

    def _render_traceback_(self) -> list[str]:
        # IPython shows these lines instead of a Python traceback.
        return [f"{type(self).__name__}:", *map(str, self.diagnostics), self.hint]


class ProtoCompileError(CodegenError):
    """protoc rejected the proto (syntax error, unknown type, missing import...)."""

    hint = "Fix the proto at the places shown (protoc's messages) and generate again."


class ModelError(CodegenError):
    """The protos compile, but their event sourcing options do not fit together."""

    hint = "Fix the eventsourcing options at the places shown and generate again."
