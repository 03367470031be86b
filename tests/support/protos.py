"""Compile the test protos with grpcio-tools into a temp folder and import them.

The core is exercised with plain protobuf classes here: code generation is
tested on its own.

The first process that needs them makes one folder, names it in the
environment (so the processes the tests start reuse it instead of making
their own) and removes it when it exits: a test run leaves nothing in the
temp folder.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.resources
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).parent
_SHARED = "EVENTSTORE_TEST_PROTOS_DIR"


def _default_out() -> Path:
    shared = os.environ.get(_SHARED)
    if shared and Path(shared).is_dir():
        return Path(shared)
    out = Path(tempfile.mkdtemp(prefix="eventstore-test-protos-"))
    os.environ[_SHARED] = str(out)  # inherited by the processes the tests start
    owner = os.getpid()
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(out, ignore_errors=True))
    return out


def compiled(name: str, out: Path | None = None) -> ModuleType:
    """Import ``tests/support/<name>.proto`` as ``<name>_pb2``, compiling it first."""
    from grpc_tools import protoc

    target = out or _default_out()
    target.mkdir(parents=True, exist_ok=True)
    if not (target / f"{name}_pb2.py").exists():
        include = str(importlib.resources.files("grpc_tools") / "_proto")
        with tempfile.TemporaryDirectory(dir=target) as scratch:  # then one atomic rename
            code = protoc.main(
                ["protoc", f"-I{HERE}", f"-I{include}", f"--python_out={scratch}", str(HERE / f"{name}.proto")]
            )
            if code != 0:
                raise RuntimeError(f"protoc failed on {name}.proto with exit code {code}")
            os.replace(Path(scratch) / f"{name}_pb2.py", target / f"{name}_pb2.py")
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return importlib.import_module(f"{name}_pb2")
