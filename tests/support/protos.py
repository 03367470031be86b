"""Compile the test protos with grpcio-tools into a temp folder and import them.

The core is exercised with plain protobuf classes here: code generation is
tested on its own.
"""

from __future__ import annotations

import importlib
import importlib.resources
import os
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
_OUT = Path(tempfile.gettempdir()) / f"eventstore-test-protos-{os.getuid()}-{os.getpid()}"


def compiled(name: str, out: Path | None = None) -> ModuleType:
    """Import ``tests/support/<name>.proto`` as ``<name>_pb2``, compiling it first."""
    from grpc_tools import protoc

    target = out or _OUT
    target.mkdir(parents=True, exist_ok=True)
    if not (target / f"{name}_pb2.py").exists():
        include = str(importlib.resources.files("grpc_tools") / "_proto")
        code = protoc.main(
            ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={target}", str(HERE / f"{name}.proto")]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed on {name}.proto with exit code {code}")
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module(f"{name}_pb2")
