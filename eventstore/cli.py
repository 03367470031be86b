"""The ``eventstore`` command.

``eventstore generate PROTO_DIR --out OUT_DIR`` compiles every ``.proto``
under ``PROTO_DIR`` and writes, per file, protoc's ``<name>_pb2.py`` and
``<name>_pb2.pyi`` and the generator's ``<name>_es.py``.
``eventstore copy SRC_URL DST_URL`` copies a whole store between SQLite and
PostgreSQL (``eventstore/copy.py``). The ``_pb2`` modules
import the event sourcing options from inside ``eventstore`` (DESIGN decision
12), so no top-level ``eventsourcing`` package is written or needed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .codegen.errors import Diagnostic


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="eventstore", description="Event sourcing with a domain model written in protos."
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    gen = commands.add_parser(
        "generate",
        help="generate Python from protos (_pb2.py, _pb2.pyi, _es.py)",
        description=(
            "Compile every .proto under PROTO_DIR and write <name>_pb2.py, <name>_pb2.pyi and "
            "<name>_es.py under OUT_DIR, keeping the folders."
        ),
    )
    gen.add_argument("proto_dir", metavar="PROTO_DIR", type=Path)
    gen.add_argument("--out", "-o", required=True, type=Path, metavar="OUT_DIR")
    gen.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        type=Path,
        metavar="DIR",
        help="another folder imports are found in (repeatable)",
    )
    copy = commands.add_parser(
        "copy",
        help="copy a whole store between SQLite and PostgreSQL (resumable, verified)",
        description=(
            "Copy events, snapshots, command records, constraints and checkpoints from "
            "SRC_URL to DST_URL (sqlite:///... or postgresql://...). DST must be empty or "
            "hold an interrupted copy, which is resumed. Counts and a checksum are verified."
        ),
    )
    copy.add_argument("source", metavar="SRC_URL")
    copy.add_argument("destination", metavar="DST_URL")
    from .serve import add_parser as add_serve

    add_serve(commands)
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__

        print(f"eventstore {__version__}")
        return 0
    if args.command == "copy":
        from .copy import main as copy_main

        return copy_main(args.source, args.destination)
    if args.command == "generate":
        return _generate(args.proto_dir, args.out, args.include)
    if args.command == "serve":
        from .serve import main as serve_main

        return serve_main(args)
    parser.print_help()
    return 2


def _generate(proto_dir: Path, out: Path, includes: list[Path]) -> int:
    from .codegen.errors import CodegenError

    try:
        written, warnings = generate(proto_dir, out, includes)
    except CodegenError as error:
        print(error, file=sys.stderr)
        return 1
    except OSError as error:  # no protos, or an output path that cannot be written
        if error.filename is not None:  # raised by the system: say which path and what to do
            error = type(error)(
                f"cannot write {os.fspath(error.filename)!r}: {error.strerror}. Choose an "
                "--out folder you can write to"
            )
        print(f"eventstore generate: {error}", file=sys.stderr)
        return 1
    for warning in warnings:
        print(
            f"{warning.file}:{warning.line}:{warning.column}: warning: {warning.message}",
            file=sys.stderr,
        )
    for path in written:
        print(path)
    return 0


def generate(
    proto_dir: Path, out: Path, includes: Sequence[Path] = ()
) -> tuple[list[Path], list[Diagnostic]]:
    """Write the generated files; returns their paths and the model's warnings."""
    from .codegen.compiler import compile_files, read_sources
    from .codegen.model import SKIPPED_FILES
    from .codegen.plugin import render_files
    from .codegen.python_out import python_modules

    if not proto_dir.is_dir():
        raise NotADirectoryError(f"PROTO_DIR {os.fspath(proto_dir)!r} is not a folder")
    root = proto_dir.resolve()
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.proto")
        if p.relative_to(root).as_posix() not in SKIPPED_FILES
    )
    if not files:
        raise FileNotFoundError(f"no .proto files under {os.fspath(proto_dir)!r}")
    rename = {str(root / f): os.path.join(os.fspath(proto_dir), f) for f in files}
    rename.update({f: os.path.join(os.fspath(proto_dir), f) for f in files})
    include_dirs = [root, *(Path(i).resolve() for i in includes)]
    descriptors = compile_files(files, include_dirs, rename=rename)
    sources = read_sources([f.name for f in descriptors.file], include_dirs)
    generated, warnings = render_files(files, descriptors.file, rename, sources)
    modules = python_modules(files, descriptors.file)
    outputs = [*modules, *generated]
    for name, _ in outputs:
        _check_writable(out / name)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in outputs:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written, warnings


def _check_writable(path: Path) -> None:
    """Raise when ``path`` cannot be written, so that a bad OUT_DIR writes no file at all.

    Catches what can be seen beforehand: a folder where the file goes, a file
    where a folder goes, a folder without write permission.
    """
    fix = "Move it away or choose another --out folder"
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {os.fspath(path)!r}: it is a folder. {fix}")
    existing = path if path.exists() else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing != path and not existing.is_dir():
        raise NotADirectoryError(
            f"cannot write {os.fspath(path)!r}: {os.fspath(existing)!r} is a file, "
            f"not a folder. {fix}"
        )
    if not os.access(existing, os.W_OK | (0 if existing == path else os.X_OK)):
        raise PermissionError(
            f"cannot write {os.fspath(path)!r}: no permission to write "
            f"{os.fspath(existing)!r}. Choose an --out folder you can write to"
        )


if __name__ == "__main__":
    sys.exit(main())
