"""The names a generated module binds: message classes, generated classes, ``__all__``.

Top-level messages and enums are bound under their own names unless two
share one; the generated names must not collide with them or with each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import Diagnostic, ModelError
from ..model import AggregateInfo, EnumInfo, ExternalType, MessageInfo, Model, ServiceInfo


@dataclass(slots=True)
class _Unit:
    """One generated module: what it holds, and the local name of each class it binds."""

    title: str
    aggregates: list[AggregateInfo]
    services: list[ServiceInfo]
    exports: list[str]  # full names of top-level messages/enums the module re-exports
    live: bool
    names: dict[str, str] = field(default_factory=dict)  # top-level full name -> local name


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


def _generated_names(model: Model, unit: _Unit) -> list[str]:
    names: list[str] = []
    for a in unit.aggregates:
        p = a.class_prefix
        names += [f"{p}Aggregate", f"{p}EventApplier", f"{p}Repository", f"{p}ProjectionBuilder"]
        names += [f"new_{a.snake}", events_registry(a)]
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


def events_registry(a: AggregateInfo) -> str:
    """The name of the registry of ``a``'s event types (``ACCOUNT_EVENTS``)."""
    return f"{a.snake.upper()}_EVENTS"
