"""Code generation: protos -> the event sourcing model -> Python.

- ``generate_module(source, name=...)`` / ``generate_module(paths=[...])``: a
  live module, in process (the notebook's ``%%es_generate`` uses this).
- ``protoc-gen-eventsourcing`` (``eventstore.codegen.plugin``): a protoc
  plugin writing ``<name>_es.py``.
- ``eventstore generate PROTO_DIR --out OUT_DIR``: protoc's ``_pb2.py``/``.pyi``
  and ``_es.py`` in one step.

See docs/codegen.md.
"""

from .build import build_model
from .errors import CodegenError, Diagnostic, ModelError, ProtoCompileError
from .live import generate_module
from .model import Model

__all__ = [
    "CodegenError",
    "Diagnostic",
    "Model",
    "ModelError",
    "ProtoCompileError",
    "build_model",
    "generate_module",
]
