"""The model -> Python source of a generated module (``<name>_es.py`` or a live module).

The templates write formatted code (what ``ruff format`` would write), so no
formatter runs at generation time. How message classes reach the module is a
parameter: imported from the ``<name>_pb2`` modules (files on disk) or
injected into the module's namespace before it runs (in-process modules).
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from . import naming
from .errors import Diagnostic, ModelError
from .model import (
    AggregateInfo,
    EnumInfo,
    ExternalType,
    FieldInfo,
    MessageInfo,
    Model,
    ServiceInfo,
    TypeRef,
)

LINE = 100
# Import order depends on where the output is placed (first- or third-party); RUF100
# would call the I001 exemption unused in a project that does not select I.
HEADER = "# ruff: noqa: I001, RUF100"


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


@dataclass(slots=True)
class _Unit:
    title: str
    aggregates: list[AggregateInfo]
    services: list[ServiceInfo]
    exports: list[str]  # full names of top-level messages/enums the module re-exports
    live: bool
    names: dict[str, str] = field(default_factory=dict)  # top-level full name -> local name


def render_file(model: Model, proto_file: str) -> Rendered | None:
    """The ``_es.py`` module of ``proto_file``, or None when the file declares nothing to generate.

    It holds the aggregates whose state message is declared in the file and
    the services declared in it, and re-exports the file's messages.
    """
    aggregates = [a for a in model.aggregates if a.file == proto_file]
    services = [s for s in model.services if s.file == proto_file]
    if not aggregates and not services:
        return None
    exports = _top_level_types(model, {proto_file})
    return _render(model, _Unit(proto_file, aggregates, services, exports, live=False))


def render_live(model: Model, title: str) -> Rendered:
    """One module over the whole model, with message classes injected by name."""
    exports = _top_level_types(model, set(model.files))
    return _render(model, _Unit(title, model.aggregates, model.services, exports, live=True))


def _top_level_types(model: Model, files: set[str]) -> list[str]:
    msgs = [m.full_name for m in model.messages.values() if m.file in files and m.is_top_level]
    enums = [e.full_name for e in model.enums.values() if e.file in files and e.is_top_level]
    return msgs + enums


# -- names -------------------------------------------------------------------------
def _info(model: Model, full_name: str) -> MessageInfo | EnumInfo | ExternalType | None:
    return (
        model.messages.get(full_name) or model.enums.get(full_name) or model.external.get(full_name)
    )


def _top_of(model: Model, full_name: str) -> MessageInfo | EnumInfo | ExternalType | None:
    """The top-level message or enum that holds ``full_name`` (itself when top-level)."""
    info = _info(model, full_name)
    if info is None:
        return None
    outer = info.qualname.split(".")[0]
    package = info.full_name[: len(info.full_name) - len(info.qualname)]
    return _info(model, package + outer)


def _bind_names(model: Model, unit: _Unit) -> None:
    needed: list[str] = list(unit.exports)
    for a in unit.aggregates:
        needed.append(a.message.full_name)
        needed.extend(e.full_name for e in a.events)
        for f in a.forwarded_fields:
            for ref in (f.value, f.map_key):
                if ref is not None and ref.full_name:
                    needed.append(ref.full_name)
    routed: list[str] = []  # request and reply types: the routes need their classes
    for s in unit.services:
        for m in s.methods:
            routed += [m.input.full_name, m.output.full_name]
    tops: dict[str, MessageInfo | EnumInfo | ExternalType] = {}
    private: dict[str, ExternalType] = {}
    for full in [*needed, *routed]:
        top = _top_of(model, full)
        if top is None:
            continue
        if unit.live and isinstance(top, ExternalType):
            # A live module does not bind well-known types under their own names (a
            # field of one is annotated ``_es.Message``): a second Timestamp class would
            # shadow the user's import in a notebook. A route needs the class itself,
            # from the run's pool, so a request or reply type is bound under a private name.
            if full in routed:
                private.setdefault(top.full_name, top)
            continue
        tops.setdefault(top.full_name, top)
    simple: dict[str, list[str]] = {}
    for full, top in tops.items():
        simple.setdefault(top.qualname, []).append(full)
    for name, fulls in simple.items():
        for full in fulls:
            unit.names[full] = name if len(fulls) == 1 else full.replace(".", "_")
    for full in private:
        unit.names[full] = private_name(full)


def private_name(full_name: str) -> str:
    """The private name of a live module's binding for a type of an unmodelled file.

    ``google.protobuf.Empty`` -> ``_pb_google_protobuf_Empty``: private, so neither
    ``__all__`` nor the notebook magic hands it to the user.
    """
    return "_pb_" + full_name.replace(".", "_")


def _expr(model: Model, unit: _Unit, full_name: str) -> str:
    top = _top_of(model, full_name)
    if top is None or top.full_name not in unit.names:
        return "_es.Message"
    info = _info(model, full_name)
    assert info is not None
    rest = info.qualname.split(".", 1)[1:]
    return ".".join([unit.names[top.full_name], *rest])


def export_order(name: str) -> tuple[int, list[tuple[int, int | str]]]:
    """Sort key for ``__all__``: the "isort-style" order of ruff's RUF022.

    Constants (``UPPER_CASE``, more than one character) first, then classes
    (``CamelCase``), then everything else; within each group a natural sort
    (digit runs compare as numbers), so user projects linting with RUF rules
    accept the generated ``__all__`` as it is.
    """
    if len(name) > 1 and name.upper() == name and name.lower() != name:
        group = 0
    elif name[:1].isupper():
        group = 1
    else:
        group = 2
    parts = [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]
    return group, parts


# -- text helpers ------------------------------------------------------------------
def _wrapped(indent: str, head: str, items: Sequence[str], tail: str) -> list[str]:
    """``head + items + tail`` on one line, else one item per line (magic trailing comma)."""
    one = f"{indent}{head}{', '.join(items)}{tail}"
    if len(one) <= LINE or not items:
        return [one]
    inner = indent + "    "
    return [f"{indent}{head}", *(f"{inner}{item}," for item in items), f"{indent}{tail}"]


def _call_with_list(
    indent: str, head: str, items: Sequence[str], tail: str, brackets: str = "[]"
) -> list[str]:
    """``head([items])tail`` (or with other brackets) as ``ruff format`` lays it out."""
    first, last = brackets[0], brackets[1]
    one = f"{indent}{head}{first}{', '.join(items)}{last}){tail}"
    if len(one) <= LINE:
        return [one]
    return [
        f"{indent}{head}",
        *_wrapped(indent + "    ", first, items, last),
        f"{indent}){tail}",
    ]


def _docstring(indent: str, text: str) -> list[str]:
    """A docstring at ``indent``: one line when it fits, else wrapped paragraphs."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    if text.endswith('"'):
        text += " "
    if "\n" not in text and len(indent) + len(text) + 6 <= LINE:
        return [f'{indent}"""{text}"""']
    width = LINE - len(indent)
    lines: list[str] = []
    for raw in text.split("\n"):
        raw = raw.rstrip()
        first = 3 if not lines else 0
        if len(raw) + first <= width:
            lines.append(raw)
            continue
        wrapped = textwrap.wrap(raw, width - first, break_on_hyphens=False, break_long_words=False)
        lines.append(wrapped[0])
        lines.extend(textwrap.wrap(" ".join(wrapped[1:]), width, break_on_hyphens=False))
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    out.append(f'{indent}"""')
    return out


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def extend(self, lines: Iterable[str]) -> None:
        self.lines.extend(lines)

    def blank(self, count: int = 1) -> None:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.lines.extend([""] * count)

    def text(self) -> str:
        while self.lines and self.lines[-1] == "":
            self.lines.pop()
        return "\n".join(self.lines) + "\n"


# -- the module ----------------------------------------------------------------------
def _render(model: Model, unit: _Unit) -> Rendered:
    _bind_names(model, unit)
    generated = _generated_names(model, unit)
    _check_clashes(model, unit, generated)
    out = _Out()
    if not unit.live:
        out.add(HEADER)
    kind = "proto text" if unit.live else "proto file"
    out.extend(_docstring("", f"Generated by eventstore from {kind} {unit.title}. DO NOT EDIT."))
    out.blank()
    out.add("from __future__ import annotations")
    out.blank()
    out.add("import collections.abc as _abc", "import typing as _t")
    out.blank()
    out.add("from eventstore.codegen import runtime as _es")
    if not unit.live:
        out.extend(_imports(model, unit))
    exports = sorted({*(unit.names[n] for n in unit.exports), *generated}, key=export_order)
    out.blank(2 if len(exports) < 1 else 1)
    out.extend(_wrapped("", "__all__ = [", [_str(n) for n in exports], "]"))
    for aggregate in unit.aggregates:
        _aggregate(out, model, unit, aggregate)
    if unit.aggregates:
        out.blank(2)
        registries = [f"*{a.snake.upper()}_EVENTS.values()" for a in unit.aggregates]
        out.add("#: Every event type of this module's aggregates, to decode stored events.")
        out.extend(_call_with_list("", "EVENT_TYPES = _es.EventTypeRegistry(", registries, ""))
    for service in unit.services:
        _service(out, model, unit, service)
    clients: dict[str, list[ServiceInfo]] = {}
    for s in unit.services:
        clients.setdefault(s.client_name, []).append(s)
    for name, services in clients.items():
        _client(out, model, unit, name, services)
    if clients:
        _sdk(out, clients)
    return Rendered(
        out.text(),
        {local: full for full, local in unit.names.items()},
        exports,
    )


def _imports(model: Model, unit: _Unit) -> list[str]:
    by_module: dict[str, list[str]] = {}
    for full, local in unit.names.items():
        info = _info(model, full)
        assert info is not None
        name = info.qualname
        item = name if local == name else f"{name} as {local}"
        module = naming.pb2_module(info.file)
        if info.file.startswith("eventsourcing/"):
            module = "eventstore.proto." + module  # DESIGN decision 12
        by_module.setdefault(module, []).append(item)
    lines: list[str] = []
    for module in sorted(by_module):
        items = sorted(by_module[module], key=lambda s: s.split(" ")[0])
        block = _wrapped("", f"from {module} import (", items, ")")
        if len(block) == 1:
            block = [f"from {module} import {', '.join(items)}"]
        lines += block
    return lines


def _generated_names(model: Model, unit: _Unit) -> list[str]:
    names: list[str] = []
    for a in unit.aggregates:
        p = a.class_prefix
        names += [f"{p}Aggregate", f"{p}EventApplier", f"{p}Repository", f"{p}ProjectionBuilder"]
        names += [f"new_{a.snake}", f"{a.snake.upper()}_EVENTS"]
        names += [e.constant for e in a.events]
    if unit.aggregates:
        names.append("EVENT_TYPES")
    for s in unit.services:
        names += [f"{s.name}Handler", f"{s.name}Server"]
        if s.client_name not in names:
            names.append(s.client_name)
    if unit.services:
        names.append("SDK")
    return names


def _check_clashes(model: Model, unit: _Unit, generated: list[str]) -> None:
    problems: list[Diagnostic] = []
    seen: set[str] = set()
    locals_ = {local: full for full, local in unit.names.items()}
    for name in generated:
        if name in locals_:
            info = model.messages.get(locals_[name])
            where = info.location if info else None
            text = (
                f"message {locals_[name]} is named like the generated {name}; rename the "
                "message (or the aggregate/service it collides with)"
            )
            problems.append(
                where.diagnostic(text, locals_[name])
                if where
                else Diagnostic(unit.title, 0, 0, text, name)
            )
        if name in seen:
            problems.append(
                Diagnostic(
                    unit.title, 0, 0, f"two generated names are both {name}; rename one", name
                )
            )
        seen.add(name)
    if problems:
        raise ModelError(problems)


# -- aggregates ----------------------------------------------------------------------
def _annotation(model: Model, unit: _Unit, f: FieldInfo) -> str:
    def one(ref: TypeRef) -> str:
        return ref.py if ref.kind == "scalar" else _expr(model, unit, ref.full_name)

    if f.map_key is not None:
        return f"_abc.MutableMapping[{one(f.map_key)}, {one(f.value)}]"
    if f.repeated:
        return f"_abc.MutableSequence[{one(f.value)}]"
    return one(f.value)


def _setter(f: FieldInfo) -> str:
    if f.map_key is not None:
        return f"_es.set_map(self.state.{f.name}, value)"
    if f.repeated:
        return f"_es.set_repeated(self.state.{f.name}, value)"
    if f.value.kind == "message":
        return f"self.state.{f.name}.CopyFrom(value)"
    return f"self.state.{f.name} = value"


def _aggregate(out: _Out, model: Model, unit: _Unit, a: AggregateInfo) -> None:
    p, state = a.class_prefix, _expr(model, unit, a.message.full_name)
    registry = f"{a.snake.upper()}_EVENTS"
    out.blank(2)
    out.add(f"# -- {a.type_name} " + "-" * max(3, LINE - 6 - len(a.type_name)))
    if a.events:
        out.blank()
        for e in a.events:
            out.add(f"{e.constant} = {_str(e.full_name)}")
    out.blank()
    out.add(f"#: The {a.type_name} event types, to decode stored events.")
    out.extend(
        _call_with_list(
            "",
            f"{registry} = _es.EventTypeRegistry(",
            [_expr(model, unit, e.full_name) for e in a.events],
            "",
        )
    )
    # The applier protocol.
    out.blank(2)
    out.add(f"class {p}EventApplier(_t.Protocol):")
    out.extend(
        _docstring(
            "    ",
            f"Applies {a.type_name} events to the aggregate's state, one method per event.\n\n"
            "Appliers must not fail for events already stored: they run again on every load.",
        )
    )
    for e in a.events:
        out.blank()
        out.extend(
            _wrapped(
                "    ",
                f"def {e.applier_method}(",
                ["self", f"agg: {p}Aggregate", f"event: {_expr(model, unit, e.full_name)}"],
                ") -> None:",
            )
        )
        out.extend(
            _docstring("        ", e.message.comment or f"Apply a {e.message.name} to ``agg``.")
        )
        out.add("        ...")
    # The aggregate.
    out.blank(2)
    out.add(f"class {p}Aggregate(_es.GeneratedAggregate):")
    doc = a.message.comment or f"The {a.type_name} aggregate."
    doc += (
        f"\n\nIts state is the {a.message.full_name} message ``state``; the state's fields "
        "are attributes of the aggregate, read and written in place."
    )
    if a.clashing_fields:
        doc += (
            " These fields are named like attributes of the aggregate itself, so reach them "
            "through ``state``: " + ", ".join(f"``state.{n}``" for n in a.clashing_fields) + "."
        )
    out.extend(_docstring("    ", doc))
    out.blank()
    out.add(f"    aggregate_type = {_str(a.type_name)}")
    out.add(f"    schema_key = {_str(a.schema_key)}")
    out.add(f"    state_type = {state}")
    if a.id_field:
        out.add(f"    id_field = {_str(a.id_field)}")
    out.add(f"    applier_protocol = {_str(p + 'EventApplier')}")
    out.extend(
        _call_with_list(
            "    ",
            "event_appliers = _es.MappingProxyType(",
            [f"{e.constant}: {_str(e.applier_method)}" for e in a.events],
            "",
            "{}",
        )
    )
    out.extend(
        _call_with_list(
            "    ",
            "state_fields = frozenset(",
            [_str(f.name) for f in a.forwarded_fields],
            "",
            "{}",
        )
        if a.forwarded_fields
        else ["    state_fields = frozenset()"]
    )
    out.blank()
    out.add(f"    state: {state}", f"    applier: {p}EventApplier")
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def __init__(",
            ["self", "aggregate_id: str", f"applier: {p}EventApplier"],
            ") -> None:",
        )
    )
    out.add("        super().__init__(aggregate_id, applier)")
    for f in a.forwarded_fields:
        ann = _annotation(model, unit, f)
        out.blank()
        out.add("    @property")
        out.extend(_wrapped("    ", f"def {f.name}(", ["self"], f") -> {ann}:"))
        out.add(f"        return self.state.{f.name}")
        out.blank()
        out.add(f"    @{f.name}.setter")
        out.extend(_wrapped("    ", f"def {f.name}(", ["self", f"value: {ann}"], ") -> None:"))
        out.add(f"        {_setter(f)}")
    # Constructor function.
    out.blank(2)
    out.extend(
        _wrapped(
            "",
            f"def new_{a.snake}(",
            ["aggregate_id: str", f"applier: {p}EventApplier"],
            f") -> {p}Aggregate:",
        )
    )
    id_text = f" with ``{a.id_field}`` set to the id" if a.id_field else ""
    out.extend(_docstring("    ", f"A new {a.type_name} at version 0{id_text}."))
    out.add(f"    return {p}Aggregate(aggregate_id, applier)")
    # Repository.
    out.blank(2)
    out.add(f"class {p}Repository(_es.Repository[{p}Aggregate]):")
    snap = (
        f" Without a snapshot strategy it snapshots every {a.snapshot_every} events "
        "(the aggregate_root option snapshot_every)."
        if a.snapshot_every
        else ""
    )
    out.extend(
        _docstring(
            "    ",
            f"Loads {a.type_name} aggregates by replaying their events, and saves new ones." + snap,
        )
    )
    out.blank()
    out.extend(
        _wrapped(
            "    ",
            "def __init__(",
            [
                "self",
                "store: _es.EventStore",
                f"applier: {p}EventApplier",
                "snapshot_strategy: _es.SnapshotStrategy | None = None",
                "*",
                "snapshot_store: _es.SnapshotStore | None = None",
                "upcasters: _es.Upcasters | None = None",
                "snapshot_upcaster: _es.SnapshotUpcaster | None = None",
            ],
            ") -> None:",
        )
    )
    strategy = "snapshot_strategy"
    if a.snapshot_every:
        out.add("        if snapshot_strategy is None:")
        out.add(f"            snapshot_strategy = _es.EveryNEvents({a.snapshot_every})")
    out.add("        self.applier = applier")
    out.add("        super().__init__(")
    out.add("            store,")
    out.add("            self._new,")
    out.add(f"            event_types={registry},")
    out.add("            snapshot_store=snapshot_store,")
    out.add(f"            snapshot_strategy={strategy},")
    out.add("            upcasters=upcasters,")
    out.add("            snapshot_upcaster=snapshot_upcaster,")
    out.add("        )")
    out.blank()
    out.add(f"    def _new(self, aggregate_id: str) -> {p}Aggregate:")
    out.add(f"        return {p}Aggregate(aggregate_id, self.applier)")
    # Projection builder.
    out.blank(2)
    out.add(f"class {p}ProjectionBuilder(_es.ProjectionBuilder):")
    out.extend(
        _docstring(
            "    ",
            f"Builds a projection of {a.type_name} events.\n\n"
            "Register ``on_<event>(handler)`` for the events it needs and ``on_reset``, then "
            "call ``build()``. A handler takes ``(event, envelope)`` or "
            "``(event, envelope, ctx)``. The methods return the builder, so they chain; "
            "as decorators, name the function ``_``.",
        )
    )
    out.blank()
    out.add(f"    event_types = {registry}")
    for e in a.events:
        ev = _expr(model, unit, e.full_name)
        out.blank()
        out.extend(
            _wrapped(
                "    ",
                f"def {e.projection_method}(",
                ["self", f"handler: _es.EventHandler[{ev}]"],
                ") -> _t.Self:",
            )
        )
        out.add(f"        return self._on({e.constant}, handler)")


# -- services ------------------------------------------------------------------------
def _param(service: ServiceInfo) -> str:
    return {"command": "cmd", "query": "query"}.get(service.kind, "request")


def _service(out: _Out, model: Model, unit: _Unit, s: ServiceInfo) -> None:
    arg = _param(s)
    out.blank(2)
    out.add(f"# -- {s.name} " + "-" * max(3, LINE - 6 - len(s.name)))
    out.blank(2)
    out.add(f"class {s.name}Handler(_t.Protocol):")
    doc = s.comment or f"Handles {s.full_name}."
    doc += (
        "\n\nImplement each method as a plain or ``async`` function; raise ``AppError`` for "
        "business errors. Pass ``ctx.command_id`` to ``save_with_command`` so retries apply once."
    )
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
    out.add(f"class {s.name}Server(_es.ServiceServer):")
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
    out.add(f"    def __init__(self, handler: {s.name}Handler) -> None:")
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
    out.extend(
        _docstring(
            "", "Generated by eventstore: one SDK over every service of the run. DO NOT EDIT."
        )
    )
    out.blank()
    out.add("from __future__ import annotations")
    out.blank()
    out.add("from eventstore.codegen import runtime as _es")
    for f in modules:
        out.add(f"import {naming.es_module(f)} as {alias[f]}")
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
