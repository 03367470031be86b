"""Code generation errors as the notebook's ``%%es_generate`` magic shows them.

A real IPython shell with the extension loaded; the magic maps proto lines
to cell lines with ``CodegenError.shifted`` (the magic line is cell line 1).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.history import HistoryAccessor
from IPython.core.interactiveshell import InteractiveShell

from eventstore.codegen import CodegenError


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    HistoryAccessor.enabled = False  # type: ignore[assignment]
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "eventstore.notebook")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "eventstore.notebook")
        InteractiveShell.clear_instance()


def test_missing_import_fails_the_cell_at_the_import_line(shell: InteractiveShell) -> None:
    cell = (
        "%%es_generate --name imp\n"  # cell line 1
        'syntax = "proto3";\n'  # 2
        "package imp.v1;\n"  # 3
        "\n"  # 4
        'import "nowhere/missing.proto";\n'  # 5
        "message A { string x = 1; }\n"
    )
    error = shell.run_cell(cell).error_in_exec
    assert isinstance(error, CodegenError)
    assert (error.file, error.line) == ("cell", 5)
    assert str(error).startswith('cell:5:1: Import "nowhere/missing.proto" was not found')
