"""The ``eventstore`` command.

``eventstore generate PROTO_DIR --out OUT_DIR`` compiles every ``.proto``
under ``PROTO_DIR`` and writes, per file, protoc's ``<name>_pb2.py`` and
``<name>_pb2.pyi`` and the generator's ``<name>_es.py``; an ``_es.py`` or
``es_sdk.py`` that an earlier run wrote for these protos and this run does not
is removed.
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
from dataclasses import dataclass
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
            "<name>_es.py under OUT_DIR, keeping the folders. An _es.py or es_sdk.py that an "
            "earlier run generated for these protos and this run does not write is removed."
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
            "Copy events, snapshots, command records, constraints, process managers' state, "
            "timeouts and outbox, and the framework's checkpoints (process:*, relay:*) from "
            "SRC_URL to DST_URL (sqlite:///... or postgresql://...). Other checkpoints are "
            "named and not copied: their projections rebuild in the copy. DST must be empty "
            "or hold an interrupted copy, which is resumed. Counts and a checksum are verified."
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
        result = generate_files(proto_dir, out, includes)
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
    for warning in result.warnings:
        print(
            f"{warning.file}:{warning.line}:{warning.column}: warning: {warning.message}",
            file=sys.stderr,
        )
    for path in result.removed:
        why = (
            "this run's services no longer span several files; an _es.py's own SDK covers them"
            if path.name == "es_sdk.py"
            else "its proto declares no aggregate, service or process manager now"
        )
        print(
            f"eventstore generate: removed {os.fspath(path)}, which an earlier run generated "
            f"({why})",
            file=sys.stderr,
        )
    for path in result.written:
        print(path)
    return 0


@dataclass(frozen=True, slots=True)
class Generated:
    """What ``generate_files`` did: the files written and removed, and the model's warnings."""

    written: list[Path]
    removed: list[Path]
    warnings: list[Diagnostic]


def generate(
    proto_dir: Path, out: Path, includes: Sequence[Path] = ()
) -> tuple[list[Path], list[Diagnostic]]:
    """Write the generated files; returns their paths and the model's warnings.

    Removes stale generated files as ``generate_files`` does (which also says which).
    """
    result = generate_files(proto_dir, out, includes)
    return result.written, result.warnings


def generate_files(proto_dir: Path, out: Path, includes: Sequence[Path] = ()) -> Generated:
    """Write the generated files, and remove the generated files this run no longer writes.

    Removed are the ``<name>_es.py`` of a proto of this run that declares nothing to
    generate now, and an ``es_sdk.py`` over services of this run's protos when this
    run's services no longer span several files; only files the generator wrote (its
    ``DO NOT EDIT`` docstring names that proto, or is the run SDK's), never a user's.
    """
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
    stale = _stale_outputs(out, files, {name for name, _ in outputs})
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, content in outputs:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    removed: list[Path] = []
    for path in stale:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as error:
            raise OSError(
                f"cannot remove {os.fspath(path)!r}, which an earlier run generated and this "
                f"one does not: {error.strerror}. Remove it yourself; the files of this run "
                "are written"
            ) from None
        removed.append(path)
    return Generated(written, removed, warnings)


def _stale_outputs(out: Path, files: Sequence[str], produced: set[str]) -> list[Path]:
    """The generated files in ``out`` for the protos ``files`` that this run does not write.

    An ``_es.py`` counts when its docstring says it was generated from that very proto;
    ``es_sdk.py`` when it is the generator's and imports an ``_es`` module of ``files``
    (one of another set of protos generated into the same folder is left alone).
    """
    from .codegen import naming
    from .codegen.render import SDK_MODULE_PATH, proto_file_of, run_sdk_modules

    stale: list[Path] = []
    for name in files:
        path = out / naming.es_path(name)
        if naming.es_path(name) not in produced and proto_file_of(_read(path)) == name:
            stale.append(path)
    if SDK_MODULE_PATH not in produced:
        path = out / SDK_MODULE_PATH
        modules = run_sdk_modules(_read(path))
        if modules is not None and set(modules) & {naming.es_module(f) for f in files}:
            stale.append(path)
    return stale


def _read(path: Path) -> str:
    """The text of ``path``; empty when it is not a readable UTF-8 file."""
    try:
        return path.read_text(encoding="utf-8") if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


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
