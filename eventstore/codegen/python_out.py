"""protoc's Python modules (``<name>_pb2.py``, ``<name>_pb2.pyi``) made from descriptors,
with the event sourcing options imported from inside eventstore (DESIGN decision 12).

protoc's Python generator writes ``from eventsourcing import options_pb2`` for a file
that imports ``eventsourcing/options.proto``; that top-level name belongs to the
``eventsourcing`` library, so the import fails (or finds the wrong package). Both
``eventstore generate`` and the protoc plugin write these modules through here, so
their ``_pb2`` files import the options from ``eventstore.proto.eventsourcing``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from google.protobuf import descriptor_pb2

from . import naming
from .compiler import run_protoc
from .errors import Diagnostic, ProtoCompileError
from .model import SKIPPED_FILES, SKIPPED_PREFIXES

_OPTIONS_IMPORT = re.compile(r"^from eventsourcing import ", re.MULTILINE)


def relocate_options_import(text: str) -> str:
    """protoc's module text importing the options from inside eventstore."""
    return _OPTIONS_IMPORT.sub("from eventstore.proto.eventsourcing import ", text)


def python_modules(
    files_to_generate: Sequence[str],
    proto_files: Iterable[descriptor_pb2.FileDescriptorProto],
) -> list[tuple[str, str]]:
    """``(path, text)`` of the ``_pb2.py`` and ``_pb2.pyi`` of each file to generate.

    ``proto_files`` holds those files and everything they import. protoc's Python
    generator runs in this process (grpcio-tools) on the descriptors, so it needs
    no source files; eventstore's own protos and the well-known types are never
    written (their modules ship with eventstore and protobuf).
    """
    wanted = [
        f
        for f in files_to_generate
        if f not in SKIPPED_FILES and not f.startswith(SKIPPED_PREFIXES)
    ]
    if not wanted:
        return []
    descriptors = descriptor_pb2.FileDescriptorSet()
    for proto in proto_files:
        copy = descriptors.file.add()
        copy.CopyFrom(proto)
        _drop_default_json_names(copy)
    out: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="eventstore-pb2-") as tmp:
        root = Path(tmp)
        given = root / "files.binpb"
        given.write_bytes(descriptors.SerializeToString())
        (root / "out").mkdir()
        code, err = run_protoc(
            [
                f"--descriptor_set_in={given}",
                f"--python_out={root / 'out'}",
                f"--pyi_out={root / 'out'}",
                *wanted,
            ]
        )
        if code != 0:
            raise ProtoCompileError([Diagnostic("protoc", 0, 0, err.strip() or f"exit {code}")])
        for name in wanted:
            stem = naming.pb2_module(name).replace(".", "/")
            for suffix in (".py", ".pyi"):
                text = (root / "out" / f"{stem}{suffix}").read_text(encoding="utf-8")
                out.append((f"{stem}{suffix}", relocate_options_import(text)))
    return out


def _drop_default_json_names(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Clear each ``json_name`` protoc derived itself, as it does before its Python output.

    protoc fills in every field's ``json_name`` for plugins and descriptor sets, but
    serializes into ``_pb2.py`` only the ones written in the proto; clearing the
    derived ones makes the modules byte for byte those of ``protoc --python_out``
    (a ``json_name`` written in the proto but equal to the derived one is cleared
    too: the module differs in bytes, not in meaning).
    """

    def fields(
        messages: Iterable[descriptor_pb2.DescriptorProto],
    ) -> Iterable[descriptor_pb2.FieldDescriptorProto]:
        for m in messages:
            yield from m.field
            yield from m.extension
            yield from fields(m.nested_type)

    for field in [*fields(file.message_type), *file.extension]:
        if field.json_name == _json_name(field.name):
            field.ClearField("json_name")


def _json_name(name: str) -> str:
    """protoc's default JSON name of a field: ``account_id`` -> ``accountId``."""
    out: list[str] = []
    upper = False
    for ch in name:
        if ch == "_":
            upper = True
        elif upper:
            out.append(ch.upper())
            upper = False
        else:
            out.append(ch)
    return "".join(out)
