"""In-process generation: proto text or files -> a live module, nothing written to disk.

This is what the notebook's ``%%es_generate`` magic calls. Each run builds its
message classes in a fresh descriptor pool, so running again with a changed
schema in the same process works; classes of two runs are different classes
(registries key by full name, so stored events decode with either). The pool
has its own well-known types too; its messages still take the ones users
import from ``google.protobuf`` (see ``well_known``).

The returned module holds every message class and enum of the compiled files,
everything generated for them, and:

- ``__es_model__``: the ``Model`` (aggregates, events, commands, queries,
  services, views, warnings; ``Model.summary()`` lists names by kind);
- ``__es_source__``: the generated Python source (tracebacks show its lines);
- ``__es_files__``: the compiled ``FileDescriptorSet``.

The module is registered in ``sys.modules`` as ``eventstore.codegen.live.<name>``
so that its classes pickle within the process.
"""

from __future__ import annotations
import __future__

import linecache
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal import enum_type_wrapper
from google.protobuf.message import Message

from . import naming
from .build import build_model
from .compiler import compile_files, compile_sources, read_sources
from .model import Model
from .render import render_live
from .well_known import accept_imported_well_known_types

LIVE_PACKAGE = "eventstore.codegen.live"


def generate_module(
    source: str | Mapping[str, str] | None = None,
    *,
    name: str = "domain",
    paths: Sequence[str | os.PathLike[str]] | None = None,
    include_paths: Sequence[str | os.PathLike[str]] = (),
) -> ModuleType:
    """Compile proto text (or files) and return the generated module.

    ``source`` is the text of one file, named ``<name>.proto`` in errors, or
    ``{file name: text}`` for several (relative names, such as
    ``shop/order.proto``). ``paths`` are proto files on disk instead; each is
    named relative to the first of ``include_paths`` holding it, else to its own
    folder, which becomes an include path too. Raises ``ProtoCompileError`` or
    ``ModelError`` (``CodegenError``: file, line, column and message as
    attributes); ``ValueError`` for a file name that is absolute, climbs out
    with ``..`` or has an empty or ``.`` part, and for a path protoc would not
    read (two paths compiled under one name, or one an include path shadows).
    """
    if not naming.is_identifier(name):
        raise ValueError(f"module name {name!r} is not a Python identifier; use e.g. 'bank'")
    if source is None and paths is None:
        raise TypeError(
            "generate_module() got no proto: pass proto text as source, or proto files "
            "as paths=[...]"
        )
    if source is not None and paths is not None:
        raise TypeError(
            "generate_module() got both proto text (source) and proto files (paths); "
            "pass one of them"
        )
    rename: dict[str, str] = {}
    if source is not None:
        sources = {f"{name}.proto": source} if isinstance(source, str) else dict(source)
        files = compile_sources(sources, include_paths)
        title = ", ".join(sources)
    else:
        assert paths is not None
        files, rename, sources = _compile_paths(paths, include_paths)
        title = ", ".join(os.fspath(p) for p in paths)
    model = build_model(files.file, rename=rename, sources=sources)
    return load_module(files, model, name=name, title=title)


def _compile_paths(
    paths: Sequence[str | os.PathLike[str]], include_paths: Sequence[str | os.PathLike[str]]
) -> tuple[descriptor_pb2.FileDescriptorSet, dict[str, str], dict[str, str]]:
    """Compile files on disk: each is named relative to the first include path holding it,
    else to its own folder (which then becomes an include path).

    protoc reads each name once, from the first include path holding it: two files
    given under one name, or a file another include path shadows, would silently
    compile the wrong text, so both are a ``ValueError`` naming the paths.
    """
    includes = [Path(p).resolve() for p in include_paths]
    names: list[str] = []
    rename: dict[str, str] = {}
    given_as: dict[str, tuple[str, Path]] = {}  # name protoc sees -> (path as given, resolved)
    for given in paths:
        path = Path(given).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"proto file {os.fspath(given)!r} does not exist")
        root = next((i for i in includes if path.is_relative_to(i)), None)
        if root is None:
            root = path.parent
            includes.append(root)
        virtual = path.relative_to(root).as_posix()
        first = given_as.get(virtual)
        if first is not None:
            if first[1] == path:
                continue  # the same file given twice
            raise ValueError(_one_name_for_two_files(virtual, first, (os.fspath(given), path)))
        given_as[virtual] = (os.fspath(given), path)
        names.append(virtual)
        rename[virtual] = os.fspath(given)
        rename[str(root / virtual)] = os.fspath(given)
    for virtual, (given, path) in given_as.items():
        holder = next(i for i in includes if (i / virtual).is_file())
        if (holder / virtual).resolve() != path:
            raise ValueError(
                f"proto file {given!r} is compiled as {virtual!r}, but protoc would read "
                f"{os.fspath(holder / virtual)!r} under that name (its folder "
                f"{os.fspath(holder)!r} comes first among the include paths); pass the folder "
                "that holds the file you mean first in include_paths, or rename one of them"
            )
    files = compile_files(names, includes, rename=rename)
    return files, rename, read_sources([f.name for f in files.file], includes)


def _one_name_for_two_files(virtual: str, first: tuple[str, Path], second: tuple[str, Path]) -> str:
    """Why two different files cannot both be compiled as ``virtual``, and what to pass."""
    common = Path(os.path.commonpath([first[1].parent, second[1].parent]))
    names = [p.relative_to(common).as_posix() for _, p in (first, second)]
    if all(not Path(given).is_absolute() for given, _ in (first, second)):
        shown = os.path.relpath(common)
    else:
        shown = os.fspath(common)
    return (
        f"proto files {first[0]!r} and {second[0]!r} would both be compiled as {virtual!r} "
        "(each is named relative to its own folder or include path), and protoc reads a "
        f"name once, so the second would be left out; pass include_paths=[{shown!r}] (a "
        f"folder holding both, first among the include paths) so that they are named "
        f"{names[0]!r} and {names[1]!r}, or rename one of the files"
    )


_FUTURE_IMPORT = "from __future__ import annotations\n"


def load_module(
    files: descriptor_pb2.FileDescriptorSet, model: Model, *, name: str, title: str
) -> ModuleType:
    """Build message classes in a fresh pool, render the model and run it as a module."""
    module_name = f"{LIVE_PACKAGE}.{name}"
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    adapted = accept_imported_well_known_types(pool, files, module_name)
    rendered = render_live(model, title)
    module = ModuleType(module_name, f"Generated by eventstore from {title}.")
    namespace = module.__dict__
    for local, full in rendered.bindings.items():
        external = model.external.get(full)
        if full in model.enums or (external is not None and external.is_enum):
            namespace[local] = enum_type_wrapper.EnumTypeWrapper(pool.FindEnumTypeByName(full))
        else:
            cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(full))
            _adopt(cls, module_name, local)
            namespace[local] = cls
    filename = f"<eventstore generated {name}>"
    # The source's ``from __future__ import annotations`` would bind the name
    # ``annotations`` over a message of that name, before the source uses it: compiled
    # with the same future flag instead, its line left blank (line numbers unchanged).
    source = rendered.source.replace(_FUTURE_IMPORT, "\n", 1)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    code = compile(source, filename, "exec", flags=__future__.annotations.compiler_flag)
    namespace["__file__"] = filename
    exec(code, namespace)
    module.__es_model__ = model  # type: ignore[attr-defined]
    module.__es_source__ = rendered.source  # type: ignore[attr-defined]
    module.__es_files__ = files  # type: ignore[attr-defined]
    # upb rebuilds a class nothing refers to, without the adaptation: keep them alive.
    module.__es_adapted_classes__ = tuple(adapted)  # type: ignore[attr-defined]
    sys.modules[module_name] = module
    return module


def _adopt(cls: type, module_name: str, qualname: str) -> None:
    """Make a dynamic class (and its nested classes) findable by pickle in ``module_name``."""
    cls.__module__ = module_name
    cls.__qualname__ = qualname
    if "." in qualname:
        # protobuf pickles nested messages through the default pool, which does
        # not hold this run's classes: pickle them by class instead.
        cls.__reduce__ = _reduce_by_class  # type: ignore[method-assign, assignment]
    for nested in cls.DESCRIPTOR.nested_types:  # type: ignore[attr-defined]
        inner = getattr(cls, nested.name, None)
        if isinstance(inner, type):
            _adopt(inner, module_name, f"{qualname}.{nested.name}")


def _reduce_by_class(message: Message) -> tuple[object, ...]:
    return (_rebuild, (type(message), message.SerializeToString()))


def _rebuild(cls: type[Message], data: bytes) -> Message:
    return cls.FromString(data)
