"""The names a generated module binds: message classes, generated classes, ``__all__``.

Top-level messages and enums are bound under their own names unless two
share one; the generated names must not collide with them or with each other.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from ..errors import Diagnostic, ModelError
from ..model import (
    AggregateInfo,
    EnumInfo,
    ExternalType,
    Location,
    MessageInfo,
    Model,
    ProcessManagerInfo,
    ServiceInfo,
)


@dataclass(slots=True)
class _Unit:
    """One generated module: what it holds, and the local name of each class it binds."""

    title: str
    aggregates: list[AggregateInfo]
    services: list[ServiceInfo]
    exports: list[str]  # full names of top-level messages/enums the module re-exports
    live: bool
    names: dict[str, str] = field(default_factory=dict)  # top-level full name -> local name
    process_managers: list[ProcessManagerInfo] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # full names of the types the code names
    # service full name -> the prefix of its Handler and Server classes
    service_prefixes: dict[str, str] = field(default_factory=dict)

    def service_prefix(self, service: ServiceInfo) -> str:
        """``<prefix>Handler``, ``<prefix>Server``: the service's name, or its full name with
        ``_`` for ``.`` when another service of the module has the same name (two packages'
        ``NotificationService`` in one in-process module), as messages are aliased."""
        return self.service_prefixes.get(service.full_name, service.name)


def _top_level_types(model: Model, files: set[str]) -> list[str]:
    msgs = [m.full_name for m in model.messages.values() if m.file in files and m.is_top_level]
    enums = [e.full_name for e in model.enums.values() if e.file in files and e.is_top_level]
    return msgs + enums


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
    for p in unit.process_managers:
        needed.append(p.message.full_name)
        needed.extend(r.full_name for r in p.reactions)
    routed: list[str] = []  # request and reply types: the routes need their classes
    for s in unit.services:
        for m in s.methods:
            routed += [m.input.full_name, m.output.full_name]
    tops: dict[str, MessageInfo | EnumInfo | ExternalType] = {}
    private: dict[str, ExternalType] = {}
    unit.written = list(dict.fromkeys([*needed, *routed]))
    for full in unit.written:
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
    services: dict[str, list[str]] = {}
    for s in unit.services:
        services.setdefault(s.name, []).append(s.full_name)
    for name, fulls in services.items():
        for full in fulls:
            unit.service_prefixes[full] = name if len(fulls) == 1 else full.replace(".", "_")


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


#: Names every generated module binds for itself (its imports) or uses from builtins: a
#: message bound under one of them would shadow it. ``_pb_`` starts private bindings.
RESERVED_NAMES = frozenset(
    {"_t", "_abc", "_es", "_importlib"}
    | {"str", "int", "float", "bool", "bytes", "property", "super", "frozenset"}
)
PRIVATE_PREFIX = "_pb_"


@dataclass(frozen=True, slots=True)
class _Origin:
    """What a generated name is made from, where it is declared, and what to rename."""

    name: str
    what: str  # "the registry of Acc's events"
    location: Location | None  # None: a fixed name (EVENT_TYPES, SDK)
    rename: str  # "the message AccEvents"


def _origins(unit: _Unit) -> list[_Origin]:
    found: list[_Origin] = []
    for a in unit.aggregates:
        p, where = a.class_prefix, a.message.location
        rename = f"the aggregate {a.type_name} (its type_name)"
        for suffix in ("Aggregate", "EventApplier", "Repository", "ProjectionBuilder"):
            found.append(_Origin(f"{p}{suffix}", f"the class {p}{suffix}", where, rename))
        found.append(_Origin(f"new_{a.snake}", f"the constructor new_{a.snake}", where, rename))
        found.append(
            _Origin(events_registry(a), f"the registry of {a.type_name}'s events", where, rename)
        )
        for e in a.events:
            found.append(
                _Origin(
                    e.constant,
                    f"the event type constant of message {e.message.name}",
                    e.message.location,
                    f"the message {e.message.name}",
                )
            )
    if unit.aggregates:
        found.append(_Origin("EVENT_TYPES", "the module's registry of event types", None, ""))
    for manager in unit.process_managers:
        found.append(
            _Origin(
                manager.class_name,
                f"the class {manager.class_name}",
                manager.message.location,
                f"the process manager {manager.name} (its name)",
            )
        )
    clients: set[str] = set()
    for s in unit.services:
        rename = f"the service {s.full_name}"
        for suffix in ("Handler", "Server"):
            cls = f"{unit.service_prefix(s)}{suffix}"
            found.append(
                _Origin(cls, f"the class {cls} of service {s.full_name}", s.location, rename)
            )
        if s.client_name not in clients:
            clients.add(s.client_name)
            found.append(_Origin(s.client_name, f"the client {s.client_name}", s.location, rename))
    if unit.services:
        found.append(_Origin("SDK", "the module's SDK class", None, ""))
    return found


def _generated_names(model: Model, unit: _Unit) -> list[str]:
    return list(dict.fromkeys(o.name for o in _origins(unit)))


def _check_clashes(model: Model, unit: _Unit, generated: list[str]) -> None:
    problems: list[Diagnostic] = []
    locals_ = {local: full for full, local in unit.names.items()}
    for local, full in locals_.items():
        if local in RESERVED_NAMES or local.startswith(PRIVATE_PREFIX) or _is_dunder(local):
            info = model.messages.get(full) or model.enums.get(full)
            if info is None:
                continue  # a private binding of a type of an unmodelled file
            kind = "message" if full in model.messages else "enum"
            where = info.location
            text = (
                f"{kind} {full} would be bound as {local}, a name the generated module "
                f"uses itself; rename the {kind}"
            )
            problems.append(
                where.diagnostic(text, full) if where else Diagnostic(unit.title, 0, 0, text, full)
            )
    problems += _keyword_paths(model, unit)
    seen: dict[str, _Origin] = {}
    for origin in _origins(unit):
        name = origin.name
        if name in locals_:
            full = locals_[name]
            kind = "enum" if full in model.enums else "message"
            info = model.messages.get(full) or model.enums.get(full)
            where = info.location if info else None
            text = (
                f"{kind} {full} is named like the generated {name} ({origin.what}); rename "
                f"the {kind} (or {origin.rename or 'the aggregate/service it collides with'})"
            )
            problems.append(
                where.diagnostic(text, locals_[name])
                if where
                else Diagnostic(unit.title, 0, 0, text, name)
            )
            continue
        other = seen.get(name)
        if other is not None and other != origin:
            # Point at what the user can rename: an event message before an aggregate,
            # anything declared before a fixed name.
            blamed = max(
                (other, origin),
                key=lambda o: (o.location is not None, o.rename.startswith("the message")),
            )
            # The error is placed at the blamed one; say where the other one is declared.
            first, second = (_at(o, blamed) for o in (other, origin))
            text = (
                f"{first} and {second} would both be named {name}; "
                f"rename {blamed.rename or 'one of them'}"
            )
            problems.append(
                blamed.location.diagnostic(text, name)
                if blamed.location
                else Diagnostic(unit.title, 0, 0, text, name)
            )
        seen.setdefault(name, origin)
    if problems:
        raise ModelError(problems)


def _at(origin: _Origin, blamed: _Origin) -> str:
    """What ``origin`` is, with where it is declared unless the error is placed there."""
    where = origin.location
    if where is None or origin is blamed or where == blamed.location:
        return origin.what
    return f"{origin.what} ({where.file}:{where.line}:{where.column})"


def _keyword_paths(model: Model, unit: _Unit) -> list[Diagnostic]:
    """A nested message or enum named like a Python keyword, which the generated code names.

    A state field, an event, a request or a reply of type ``Outer.None`` would be written
    as ``Outer.None``, a syntax error. (A top-level one is refused by the model; a nested
    one nothing names is left alone: its class is reached as ``getattr(Outer, "None")``.)
    """
    problems: list[Diagnostic] = []
    blamed: set[str] = set()
    for full in unit.written:
        info = model.messages.get(full) or model.enums.get(full)
        if info is None:
            continue
        parts = info.qualname.split(".")
        package = full[: len(full) - len(info.qualname)]
        for depth, part in enumerate(parts):
            if not keyword.iskeyword(part):
                continue
            culprit = package + ".".join(parts[: depth + 1])
            if culprit in blamed:
                break
            blamed.add(culprit)
            kind = "enum" if culprit in model.enums else "message"
            found = model.messages.get(culprit) or model.enums.get(culprit)
            where = found.location if found is not None else None
            named = "its class" if culprit == full else f"the class of {full}"
            text = (
                f"{kind} {culprit} is named like the Python keyword {part!r}, and the "
                f"generated module names {named} ({info.qualname} is a syntax error); "
                f"rename the {kind}"
            )
            problems.append(
                where.diagnostic(text, culprit)
                if where
                else Diagnostic(unit.title, 0, 0, text, culprit)
            )
            break
    return problems


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def events_registry(a: AggregateInfo) -> str:
    """The name of the registry of ``a``'s event types (``ACCOUNT_EVENTS``)."""
    return f"{a.snake.upper()}_EVENTS"
