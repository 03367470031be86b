"""The model -> Python source of a generated module (``<name>_es.py`` or a live module).

The templates write formatted code (what ``ruff format`` would write), so no
formatter runs at generation time. How message classes reach the module is a
parameter: imported from the ``<name>_pb2`` modules (files on disk) or
injected into the module's namespace before it runs (in-process modules).

This module assembles one generated module; ``names`` binds its names,
``aggregates`` and ``services`` write its sections, ``text`` lays out lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import naming
from ..model import Model, ServiceInfo
from .aggregates import _aggregate
from .names import (
    _bind_names,
    _check_clashes,
    _generated_names,
    _info,
    _top_level_types,
    _Unit,
    events_registry,
    export_order,
    private_name,
)
from .processes import _process_manager
from .services import (
    SDK_MODULE_PATH,
    _client,
    _sdk,
    _service,
    render_run_sdk,
    run_sdk_modules,
)
from .text import HEADER, _call_with_list, _docstring, _Out, _str, _wrapped, opening_docstring

__all__ = [
    "SDK_MODULE_PATH",
    "Rendered",
    "export_order",
    "private_name",
    "proto_file_of",
    "render_file",
    "render_live",
    "render_run_sdk",
    "run_sdk_modules",
]


@dataclass(slots=True)
class Rendered:
    """A generated module's source and the message classes it expects.

    ``bindings`` maps each module-level message or enum name the source uses
    to its proto full name: imported from ``_pb2`` modules in file mode, to be
    injected into the namespace in live mode.
    """

    source: str
    bindings: dict[str, str]
    exports: list[str]


def render_file(model: Model, proto_file: str) -> Rendered | None:
    """The ``_es.py`` module of ``proto_file``, or None when the file declares nothing to generate.

    It holds the aggregates and process managers whose state message is declared
    in the file and the services declared in it, and re-exports the file's messages.
    """
    aggregates = [a for a in model.aggregates if a.file == proto_file]
    services = [s for s in model.services if s.file == proto_file]
    managers = [p for p in model.process_managers if p.file == proto_file]
    if not aggregates and not services and not managers:
        return None
    exports = _top_level_types(model, {proto_file})
    unit = _Unit(proto_file, aggregates, services, exports, live=False, process_managers=managers)
    return _render(model, unit)


def render_live(model: Model, title: str) -> Rendered:
    """One module over the whole model, with message classes injected by name."""
    exports = _top_level_types(model, set(model.files))
    unit = _Unit(
        title,
        model.aggregates,
        model.services,
        exports,
        live=True,
        process_managers=model.process_managers,
    )
    return _render(model, unit)


def _render(model: Model, unit: _Unit) -> Rendered:
    _bind_names(model, unit)
    generated = _generated_names(model, unit)
    _check_clashes(model, unit, generated)
    body = _Out()
    for aggregate in unit.aggregates:
        _aggregate(body, model, unit, aggregate)
    if unit.aggregates:
        body.blank(2)
        registries = [f"*{events_registry(a)}.values()" for a in unit.aggregates]
        body.add("#: Every event type of this module's aggregates, to decode stored events.")
        body.extend(_call_with_list("", "EVENT_TYPES = _es.EventTypeRegistry(", registries, ""))
    for manager in unit.process_managers:
        _process_manager(body, model, unit, manager)
    for service in unit.services:
        _service(body, model, unit, service)
    clients: dict[str, list[ServiceInfo]] = {}
    for s in unit.services:
        clients.setdefault(s.client_name, []).append(s)
    for name, services in clients.items():
        _client(body, model, unit, name, services)
    if clients:
        _sdk(body, clients)
    out = _Out()
    if not unit.live:
        out.add(HEADER)
    kind = "proto text" if unit.live else "proto file"
    out.extend(_docstring("", f"{_GENERATED_FROM}{kind} {unit.title}{_DO_NOT_EDIT}"))
    out.blank()
    out.add("from __future__ import annotations")
    out.blank()
    imports, loaded = ([], []) if unit.live else _imports(model, unit)
    # Only the modules the body uses: ruff's F401 would flag the others in a user's project.
    if _uses(body, "_abc"):
        out.add("import collections.abc as _abc")
    if loaded:
        out.add("import importlib as _importlib")
    if _uses(body, "_t"):
        out.add("import typing as _t")
    out.blank()
    out.add("from eventstore.codegen import runtime as _es")
    out.extend(imports)
    if loaded:
        out.blank()
        out.extend(loaded)
    exports = sorted({*(unit.names[n] for n in unit.exports), *generated}, key=export_order)
    out.blank(2 if len(exports) < 1 else 1)
    out.extend(_wrapped("", "__all__ = [", [_str(n) for n in exports], "]"))
    out.extend(body.lines)
    return Rendered(
        out.text(),
        {local: full for full, local in unit.names.items()},
        exports,
    )


_GENERATED_FROM = "Generated by eventstore from "
_DO_NOT_EDIT = ". DO NOT EDIT."


def proto_file_of(text: str) -> str | None:
    """The proto file an ``_es.py`` module says it was generated from (its opening
    ``DO NOT EDIT`` docstring); None for any other text, such as a module a user wrote."""
    doc = opening_docstring(text)
    prefix = f"{_GENERATED_FROM}proto file "
    if doc is None or not doc.startswith(prefix) or not doc.endswith(_DO_NOT_EDIT):
        return None
    return doc[len(prefix) : -len(_DO_NOT_EDIT)]


def _uses(body: _Out, module: str) -> bool:
    """Whether the generated code names ``module`` (``_abc``, ``_t``) anywhere."""
    pattern = re.compile(rf"(?<![\w.]){module}\.")
    return any(pattern.search(line) for line in body.lines)


def _imports(model: Model, unit: _Unit) -> tuple[list[str], list[str]]:
    """The ``from <name>_pb2 import ...`` lines, and the lines binding the classes of modules
    whose path cannot be written in an import (a folder named ``class``) through importlib,
    as protoc's own output does."""
    by_module: dict[str, list[tuple[str, str]]] = {}
    for full, local in unit.names.items():
        info = _info(model, full)
        assert info is not None
        module = naming.pb2_module(info.file)
        if info.file.startswith("eventsourcing/"):
            module = "eventstore.proto." + module  # DESIGN decision 12
        by_module.setdefault(module, []).append((info.qualname, local))
    lines: list[str] = []
    loaded: list[str] = []
    for module in sorted(by_module):
        pairs = sorted(by_module[module])
        if not naming.is_importable(module):
            alias = naming.module_alias(module)
            loaded.append(f"{alias} = _importlib.import_module({_str(module)})")
            loaded += [f"{local} = {alias}.{name}" for name, local in pairs]
            continue
        items = [name if local == name else f"{name} as {local}" for name, local in pairs]
        block = _wrapped("", f"from {module} import (", items, ")")
        if len(block) == 1:
            block = [f"from {module} import {', '.join(items)}"]
        lines += block
    return lines, loaded
