"""Proto text or files -> ``FileDescriptorSet``, with grpcio-tools' protoc in this process.

Running protoc in process takes a few milliseconds instead of the ~40 ms of a
subprocess. protoc writes its diagnostics to the C-level stderr, so file
descriptor 2 is redirected to a temp file while it runs (under a lock: the
redirect is process-wide), and absl's log noise is dropped.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath

from google.protobuf import descriptor_pb2

# Must be set before grpc_tools.protoc is imported: stops it from installing
# import hooks and appending its _proto folder to sys.path.
os.environ.setdefault("GRPC_PYTHON_DISABLE_DYNAMIC_STUBS", "1")

from ..proto import INCLUDE_DIR as OPTIONS_INCLUDE_DIR
from ..proto.eventsourcing import options_pb2  # noqa: F401  (registers the extensions)
from .errors import Diagnostic, ProtoCompileError

_LOCK = threading.Lock()
_DIAGNOSTIC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<column>\d+): (?P<message>.*)$")
_FILE_MESSAGE = re.compile(r"^(?P<file>[^:\n]+\.proto): (?P<message>.*)$")
_NOISE = ("WARNING: All log messages before absl", "[libprotobuf WARNING", "I0000", "W0000")


def well_known_include() -> str:
    """The folder holding ``google/protobuf/*.proto`` inside grpcio-tools."""
    return str(importlib.resources.files("grpc_tools") / "_proto")


def run_protoc(args: Sequence[str]) -> tuple[int, str]:
    """Run protoc in this process: its exit code and what it wrote to stderr."""
    from grpc_tools import protoc

    with _LOCK, tempfile.TemporaryFile() as err:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(err.fileno(), 2)
            code = protoc.main(["protoc", *args])
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
    return code, text


def parse_diagnostics(text: str, rename: Mapping[str, str] | None = None) -> list[Diagnostic]:
    """protoc's stderr as diagnostics (warnings and log noise left out)."""
    rename = rename or {}
    found: list[Diagnostic] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(_NOISE):
            continue
        m = _DIAGNOSTIC.match(line)
        if m:
            message = m["message"]
            if message.startswith("warning:"):
                continue
            file = rename.get(m["file"], m["file"])
            found.append(Diagnostic(file, int(m["line"]), int(m["column"]), message))
            continue
        m = _FILE_MESSAGE.match(line)
        if m:
            found.append(Diagnostic(rename.get(m["file"], m["file"]), 0, 0, m["message"]))
        elif found:
            # protoc continues some messages on the next line.
            last = found[-1]
            found[-1] = Diagnostic(last.file, last.line, last.column, f"{last.message} {line}")
        else:
            found.append(Diagnostic("protoc", 0, 0, line))
    return _importers_first(found)


def _importers_first(found: list[Diagnostic]) -> list[Diagnostic]:
    """Put each missing file's ``File not found.`` right after the import that names it.

    protoc reports the missing file first (no line), then the importing line.
    The first diagnostic is the one an error's ``file``/``line`` show (and a
    notebook cell points at), so it should be the import the user wrote.
    """
    missing = {d.file: d for d in found if d.line == 0 and d.message == "File not found."}
    if not missing:
        return found
    out: list[Diagnostic] = []
    placed: set[str] = set()
    for d in found:
        if d.file in missing and d is missing[d.file]:
            continue
        out.append(d)
        for name, not_found in missing.items():
            if name not in placed and d.message.startswith(f'Import "{name}" '):
                out.append(not_found)
                placed.add(name)
    # A missing file that nothing imports (one named on the command line) stays listed.
    out += [d for name, d in missing.items() if name not in placed]
    return out


def compile_files(
    files: Sequence[str],
    include_paths: Sequence[str | os.PathLike[str]],
    *,
    rename: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> descriptor_pb2.FileDescriptorSet:
    """Compile ``files`` (paths relative to an include path, or absolute inside one).

    Returns every file with its imports, dependencies first, with source info
    (comments, line/column spans). ``rename`` maps protoc's file names to the
    names errors should show. ``eventsourcing/options.proto`` always resolves
    to the copy shipped with eventstore.
    """
    with tempfile.TemporaryDirectory(prefix="eventstore-protoc-") as tmp:
        out = Path(tmp) / "set.binpb"
        args = [
            f"-I{OPTIONS_INCLUDE_DIR}",
            *(f"-I{os.fspath(p)}" for p in include_paths),
            f"-I{well_known_include()}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            "--include_source_info",
            *extra_args,
            *files,
        ]
        code, err = run_protoc(args)
        if code != 0:
            diagnostics = parse_diagnostics(err, rename) or [
                Diagnostic(files[0] if files else "protoc", 0, 0, f"protoc failed (exit {code})")
            ]
            raise ProtoCompileError(diagnostics)
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def read_sources(
    files: Sequence[str], include_paths: Sequence[str | os.PathLike[str]]
) -> dict[str, str]:
    """The text of each of ``files`` from the first include path holding it (as protoc finds
    it), for placing errors inside option values; files that cannot be read are left out."""
    found: dict[str, str] = {}
    for name in files:
        for root in include_paths:
            path = Path(root) / name
            if path.is_file():
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    found[name] = path.read_text(encoding="utf-8")
                break
    return found


def check_source_names(names: Iterable[str]) -> None:
    """Refuse a file name that would place proto text outside the folder it is compiled in.

    The text of ``{file name: text}`` is written under its name in a temp folder;
    an absolute name, or one climbing out with ``..``, would write (and overwrite)
    a file elsewhere; protoc cannot resolve a name with an empty or ``.`` part
    (``./order.proto``). Raises ``ValueError`` naming the key, before anything is written.
    """
    for name in names:
        posix, windows = PurePosixPath(name), PureWindowsPath(name)
        if not posix.parts:
            cause = "is not a file name"
        elif posix.is_absolute() or (
            # Windows' rules where they apply: on Windows, or for a name written with '\\'
            # ("c:order.proto" is a plain name on POSIX).
            (os.name == "nt" or "\\" in name) and (windows.drive or windows.root)
        ):
            cause = "is an absolute path"
        elif ".." in posix.parts or ".." in windows.parts:
            cause = "climbs out of its folder with '..'"
        elif {"", "."} & set(name.split("/")):
            cause = "has an empty or '.' part, which protoc cannot resolve"
        else:
            continue
        raise ValueError(
            f"proto file name {name!r} (a key of the sources given) {cause}: the text is "
            "compiled in a temporary folder under that name, and protoc resolves imports by "
            "it; use a relative name such as 'shop/order.proto'"
        )


def compile_sources(
    sources: Mapping[str, str], include_paths: Sequence[str | os.PathLike[str]] = ()
) -> descriptor_pb2.FileDescriptorSet:
    """Compile proto text given as ``{file name: text}`` (in a temp folder, removed after).

    Each name is relative (``shop/order.proto``); an absolute one or one with ``..``
    is a ``ValueError`` and nothing is written.
    """
    check_source_names(sources)
    with tempfile.TemporaryDirectory(prefix="eventstore-src-") as tmp:
        root = Path(tmp)
        for name, text in sources.items():
            path = root / name
            if not path.resolve().is_relative_to(root.resolve()):  # e.g. through a symlink
                raise ValueError(
                    f"proto file name {name!r} (a key of the sources given) leads out of the "
                    "folder it is compiled in; use a relative name such as 'shop/order.proto'"
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        rename = {str(root / name): name for name in sources}
        return compile_files(list(sources), [root, *include_paths], rename=rename)
