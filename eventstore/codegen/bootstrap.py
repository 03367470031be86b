"""Regenerate the checked-in Python modules of ``eventsourcing/*.proto``.

Run ``python -m eventstore.codegen.bootstrap`` after changing
``eventstore/proto/eventsourcing/options.proto`` or ``response.proto``. The
modules are registered under their place inside ``eventstore`` (not under a
top-level ``eventsourcing`` package, DESIGN decision 12), and marked so that
the linters leave protoc's text alone.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("GRPC_PYTHON_DISABLE_DYNAMIC_STUBS", "1")

from ..core.errors import EventStoreError
from .compiler import parse_diagnostics, run_protoc, well_known_include

PROTO_ROOT = Path(__file__).resolve().parent.parent / "proto"
FILES = (
    "eventsourcing/options.proto",
    "eventsourcing/response.proto",
    "eventsourcing/envelope.proto",
)
HEADER = "# ruff: noqa\n# Regenerate with: python -m eventstore.codegen.bootstrap\n"


class BootstrapError(EventStoreError, RuntimeError):
    """protoc rejected eventstore's own protos, so their modules were not regenerated."""

    def __init__(self, exit_code: int, protoc_output: str, files: Sequence[str]) -> None:
        self.exit_code = exit_code
        self.protoc_output = protoc_output
        self.files = tuple(files)
        shown = [str(d) for d in parse_diagnostics(protoc_output)] or [
            line.strip() for line in protoc_output.splitlines() if line.strip()
        ]
        super().__init__(
            f"protoc failed with exit code {exit_code} on {', '.join(self.files)}:\n"
            + "\n".join(f"  {line}" for line in shown or ["(protoc printed no message)"])
            + "\nFix the proto at the places shown, then run "
            "python -m eventstore.codegen.bootstrap again."
        )


def relocate(text: str) -> str:
    """protoc's module text with imports and module names moved inside eventstore."""
    text = text.replace("from eventsourcing import ", "from eventstore.proto.eventsourcing import ")
    return text.replace("'eventsourcing.", "'eventstore.proto.eventsourcing.")


_EXTENSION_TYPES = {
    "service": ("ServiceOptions", "ServiceOptions"),
    "aggregate_root": ("MessageOptions", "AggregateRootOptions"),
    "event": ("MessageOptions", "EventOptions"),
    "process_manager": ("MessageOptions", "ProcessManagerOptions"),
}


def type_stub(text: str) -> str:
    """protoc's .pyi with module-level extensions typed for mypy (protoc types them loosely)."""
    text = re.sub(r"^([A-Z_]+_FIELD_NUMBER): _ClassVar\[int\]$", r"\1: int", text, flags=re.M)
    for name, (extendee, value) in _EXTENSION_TYPES.items():
        text = text.replace(
            f"\n{name}: _descriptor.FieldDescriptor\n",
            f"\n{name}: _extension_dict._ExtensionFieldDescriptor["
            f"_descriptor_pb2.{extendee}, {value}]\n",
        )
    if "_extension_dict." in text:
        text = text.replace(
            "from google.protobuf import message as _message\n",
            "from google.protobuf import message as _message\n"
            "from google.protobuf.internal import extension_dict as _extension_dict\n",
        )
    return text


def build(out_root: Path = PROTO_ROOT, proto_root: Path = PROTO_ROOT) -> list[Path]:
    """Compile ``FILES`` under ``proto_root`` and write their modules under ``out_root``.

    Raises ``BootstrapError`` (with protoc's messages) when protoc rejects them.
    """
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        code, output = run_protoc(
            [
                f"-I{proto_root}",
                f"-I{well_known_include()}",
                f"--python_out={tmp}",
                f"--pyi_out={tmp}",
                *(str(proto_root / f) for f in FILES),
            ]
        )
        if code != 0:
            raise BootstrapError(code, output, [str(proto_root / f) for f in FILES])
        for produced in sorted(Path(tmp).glob("eventsourcing/*_pb2.py*")):
            target = out_root / "eventsourcing" / produced.name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = relocate(produced.read_text())
            if produced.suffix == ".pyi":
                text = type_stub(text)
            target.write_text(HEADER + text, encoding="utf-8")
            written.append(target)
    return written


def main() -> None:
    for path in build():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
