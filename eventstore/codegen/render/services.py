"""The code generated for services: handler protocols, servers, typed clients and SDKs.

A file module gets one handler and server per service, one client per client
name (services bound to one aggregate share a client) and an ``SDK`` over its
clients; ``render_run_sdk`` writes ``es_sdk.py`` when a run's services span
several files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .. import naming
from ..model import Model, ServiceInfo
from .names import _expr, _Unit, export_order
from .text import HEADER, LINE, _docstring, _Out, _str, _wrapped, opening_docstring


def _param(service: ServiceInfo) -> str:
    return {"command": "cmd", "query": "query"}.get(service.kind, "request")


def _service(out: _Out, model: Model, unit: _Unit, s: ServiceInfo) -> None:
    arg = _param(s)
    prefix = unit.service_prefix(s)
    out.blank(2)
    out.add(f"# -- {prefix} " + "-" * max(3, LINE - 6 - len(prefix)))
    out.blank(2)
    out.add(f"class {prefix}Handler(_t.Protocol):")
    doc = s.comment or f"Handles {s.full_name}."
    doc += (
        "\n\nImplement each method as a plain or ``async`` function; raise ``AppError`` for "
        "business errors."
    )
    if s.kind != "query":
        # Queries change nothing, so they have no command id to pass on.
        doc += " Pass ``ctx.command_id`` to ``save_with_command`` so retries apply once."
    out.extend(_docstring("    ", doc))
    for m in s.methods:
        out.blank()
        reply = _expr(model, unit, m.output.full_name)
        out.extend(
            _wrapped(
                "    ",
                f"def {m.py_name}(",
                [
                    "self",
                    f"{arg}: {_expr(model, unit, m.input.full_name)}",
                    "ctx: _es.RequestContext",
                ],
                f") -> {reply} | _abc.Awaitable[{reply}]:",
            )
        )
        out.extend(_docstring("        ", m.comment or f"Handle {m.subject}."))
        out.add("        ...")
    out.blank(2)
    out.add(f"class {prefix}Server(_es.ServiceServer):")
    out.extend(
        _docstring(
            "    ",
            f"Serves {s.full_name}.\n\nRoutes each method's subject to the handler; register "
            "it with a transport.",
        )
    )
    out.blank()
    out.add(f"    service = {_str(s.full_name)}")
    out.blank()
    out.add(f"    def __init__(self, handler: {prefix}Handler) -> None:")
    out.add("        self.handler = handler")
    out.add("        super().__init__(")
    out.add("            [")
    for m in s.methods:
        out.extend(
            _wrapped(
                "                ",
                "_es.route(",
                [
                    _str(m.subject),
                    _expr(model, unit, m.input.full_name),
                    _expr(model, unit, m.output.full_name),
                    f"handler.{m.py_name}",
                ],
                "),",
            )
        )
    out.add("            ]")
    out.add("        )")


def _client(out: _Out, model: Model, unit: _Unit, name: str, services: list[ServiceInfo]) -> None:
    out.blank(2)
    out.add(f"class {name}(_es.ServiceClient):")
    what = ", ".join(s.full_name for s in services)
    out.extend(
        _docstring(
            "    ",
            f"Typed calls through a transport to {what}.\n\n"
            "Each call takes an optional ``command_id`` (a new one otherwise; pass the same id "
            "when retrying so the command is applied once) and ``metadata``.",
        )
    )
    for s in services:
        arg = _param(s)
        for m in s.methods:
            reply = _expr(model, unit, m.output.full_name)
            out.blank()
            out.extend(
                _wrapped(
                    "    ",
                    f"async def {m.py_name}(",
                    [
                        "self",
                        f"{arg}: {_expr(model, unit, m.input.full_name)}",
                        "*",
                        "command_id: str | None = None",
                        "metadata: _es.EventMetadata | _abc.Mapping[str, str] | None = None",
                    ],
                    f") -> {reply}:",
                )
            )
            out.extend(_docstring("        ", m.comment or f"Call {m.subject}."))
            out.extend(
                _wrapped(
                    "        ",
                    "return await self._call(",
                    [_str(m.subject), arg, reply, "command_id", "metadata"],
                    ")",
                )
            )


def _sdk(out: _Out, clients: dict[str, list[ServiceInfo]]) -> None:
    out.blank(2)
    out.add("class SDK:")
    out.extend(
        _docstring(
            "    ",
            "Every service of this module over one transport: "
            + ", ".join(f"``{s[0].sdk_attribute}``" for s in clients.values())
            + ".",
        )
    )
    out.blank()
    out.add("    def __init__(self, transport: _es.Transport) -> None:")
    out.add("        self.transport = transport")
    for name, services in clients.items():
        out.add(f"        self.{services[0].sdk_attribute} = {name}(transport)")


#: The module the plugin writes when a run's services span several files.
SDK_MODULE_PATH = "es_sdk.py"
_RUN_SDK_DOCSTRING = "Generated by eventstore: one SDK over every service of the run. DO NOT EDIT."
_RUN_SDK_IMPORT = re.compile(
    r'^import ([\w.]+_es) as _|^_\w+ = _importlib\.import_module\("([^"]+)"\)$', re.MULTILINE
)


def run_sdk_modules(text: str) -> list[str] | None:
    """The ``_es`` modules an ``es_sdk.py`` imports; None when ``text`` is not one the
    generator wrote (it opens with another docstring than its ``DO NOT EDIT`` one)."""
    if opening_docstring(text) != _RUN_SDK_DOCSTRING:
        return None
    return [m[1] or m[2] for m in _RUN_SDK_IMPORT.finditer(text)]


def render_run_sdk(model: Model, files: Sequence[str]) -> str | None:
    """``es_sdk.py``: one ``SDK`` over the services declared in ``files``.

    Written only when those services span more than one file (otherwise the
    ``SDK`` of the one ``_es.py`` already covers them all). A client whose
    services are split across files becomes one class over the per-file ones.
    """
    services = [s for s in model.services if s.file in files]
    modules = sorted({s.file for s in services})
    if len(modules) < 2:
        return None
    alias = {f: "_" + naming.es_module(f).replace(".", "_") for f in modules}
    clients: dict[str, list[str]] = {}
    attributes: dict[str, str] = {}
    for s in services:
        owners = clients.setdefault(s.client_name, [])
        if s.file not in owners:
            owners.append(s.file)
        attributes[s.client_name] = s.sdk_attribute
    out = _Out()
    out.add(HEADER)
    out.extend(_docstring("", _RUN_SDK_DOCSTRING))
    out.blank()
    out.add("from __future__ import annotations")
    out.blank()
    loaded = [f for f in modules if not naming.is_importable(naming.es_module(f))]
    if loaded:
        out.add("import importlib as _importlib")
        out.blank()
    out.add("from eventstore.codegen import runtime as _es")
    for f in modules:
        if f not in loaded:
            out.add(f"import {naming.es_module(f)} as {alias[f]}")
    if loaded:
        out.blank()
    for f in loaded:
        out.add(f"{alias[f]} = _importlib.import_module({_str(naming.es_module(f))})")
    split = {name: owners for name, owners in clients.items() if len(owners) > 1}
    out.blank()
    exported = sorted({*split, "SDK"}, key=export_order)
    out.extend(_wrapped("", "__all__ = [", [_str(n) for n in exported], "]"))
    for name, owners in split.items():
        out.blank(2)
        out.extend(_wrapped("", f"class {name}(", [f"{alias[f]}.{name}" for f in owners], "):"))
        out.extend(_docstring("    ", f"The methods of every {name} of the run."))
    out.blank(2)
    out.add("class SDK:")
    listing = ", ".join(f"``{attributes[n]}``" for n in clients)
    out.extend(
        _docstring("    ", f"Every service of the run over one transport.\n\nClients: {listing}.")
    )
    out.blank()
    out.add("    def __init__(self, transport: _es.Transport) -> None:")
    out.add("        self.transport = transport")
    for name, owners in clients.items():
        cls = name if name in split else f"{alias[owners[0]]}.{name}"
        out.add(f"        self.{attributes[name]} = {cls}(transport)")
    return out.text()
