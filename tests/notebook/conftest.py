"""Fixtures of the notebook layer's tests: a real IPython shell, compiled test protos."""

from __future__ import annotations

import importlib.resources
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from IPython.core.history import HistoryAccessor
from IPython.core.interactiveshell import InteractiveShell

from eventstore import SQLiteEventStore

HERE = Path(__file__).parent


def compile_proto(name: str, out: Path) -> ModuleType:
    """Compile ``tests/notebook/<name>.proto`` with grpcio-tools and import its ``_pb2``."""
    from grpc_tools import protoc

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    code = protoc.main(
        ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={out}", str(HERE / f"{name}.proto")]
    )
    assert code == 0, f"protoc failed on {name}.proto"
    module_name = f"{name}_pb2"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, out / f"{module_name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def nbforms(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return compile_proto("nbforms", tmp_path_factory.mktemp("protos"))


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    """A real IPython shell with the extension loaded (history off: it opens files)."""
    HistoryAccessor.enabled = False  # type: ignore[assignment]
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "eventstore.notebook")
    try:
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "eventstore.notebook")
        InteractiveShell.clear_instance()


@pytest.fixture
def cell(shell: InteractiveShell) -> Callable[[str], Any]:
    """Run a cell in the shell; re-raise the cell's own error, else return its result."""

    def run(code: str) -> Any:
        result = shell.run_cell(code)
        if result.error_before_exec is not None:
            raise result.error_before_exec
        if result.error_in_exec is not None:
            raise result.error_in_exec
        return result.result

    return run


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteEventStore]:
    with SQLiteEventStore(tmp_path / "events.db") as opened:
        yield opened
