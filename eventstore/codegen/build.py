"""Descriptors -> the event sourcing ``Model``, checking every option on the way.

Each inconsistency becomes a ``Diagnostic`` naming the file, line and element,
and all of them are raised together as a ``ModelError`` (nothing is skipped
silently).
"""

from __future__ import annotations

import hashlib
import keyword
import re
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial

from google.protobuf import descriptor_pb2

from ..core.aggregate import AggregateRoot
from ..proto.eventsourcing import options_pb2
from . import naming
from .errors import Diagnostic, ModelError
from .model import (
    SKIPPED_FILES,
    SKIPPED_PREFIXES,
    AggregateInfo,
    EnumInfo,
    EventInfo,
    ExternalType,
    FieldInfo,
    Location,
    MessageInfo,
    MethodInfo,
    Model,
    ProcessManagerInfo,
    ReactionInfo,
    ServiceInfo,
    TypeRef,
)
from .runtime import GeneratedProcessManager, ProjectionBuilder, ServiceClient

FDP = descriptor_pb2.FieldDescriptorProto

_SCALARS = {
    FDP.TYPE_DOUBLE: "float",
    FDP.TYPE_FLOAT: "float",
    FDP.TYPE_INT64: "int",
    FDP.TYPE_UINT64: "int",
    FDP.TYPE_INT32: "int",
    FDP.TYPE_FIXED64: "int",
    FDP.TYPE_FIXED32: "int",
    FDP.TYPE_BOOL: "bool",
    FDP.TYPE_STRING: "str",
    FDP.TYPE_BYTES: "bytes",
    FDP.TYPE_UINT32: "int",
    FDP.TYPE_SFIXED32: "int",
    FDP.TYPE_SFIXED64: "int",
    FDP.TYPE_SINT32: "int",
    FDP.TYPE_SINT64: "int",
}

#: Attribute names a state field cannot take on a generated aggregate.
RESERVED_ATTRIBUTES = frozenset(
    {n for n in dir(AggregateRoot) if not n.startswith("_")}
    | {"state", "applier", "property", "state_type", "id_field", "event_appliers"}
    | {"state_fields", "applier_protocol"}
)


def _members(cls: type, *set_by_init: str) -> frozenset[str]:
    """Every attribute an instance of ``cls`` has: those of the class and its bases, and
    ``set_by_init``, the ones its ``__init__`` sets (tests check that none is missing)."""
    return frozenset(dir(cls)) | frozenset(set_by_init)


# What each generated class inherits from its runtime base. A method the generator names
# after a proto element (an event's ``on_<event>``, an rpc's method) must not take one of
# these names: it would silently replace the base's method (``on_reset``, the rebuild hook).

#: Members of every generated ``<Type>ProjectionBuilder`` (``ProjectionBuilder``).
PROJECTION_BUILDER_MEMBERS = _members(ProjectionBuilder, "name", "upcasters", "_handlers", "_reset")

#: Members of every generated process manager (``GeneratedProcessManager``).
PROCESS_MANAGER_MEMBERS = _members(GeneratedProcessManager, "registry")

#: Members of every generated client (``ServiceClient``) and handler protocol (``Protocol``).
CLIENT_MEMBERS = _members(ServiceClient, "transport") | _members(typing.Protocol)

# Field numbers inside descriptor.proto, for source locations.
_FILE_MESSAGE, _FILE_ENUM, _FILE_SERVICE = 4, 5, 6
_MSG_FIELD, _MSG_NESTED, _MSG_ENUM, _MSG_OPTIONS = 2, 3, 4, 7
_SVC_METHOD, _SVC_OPTIONS = 2, 3


class _Refused:
    """Stands for an aggregate whose ``aggregate_root`` option was refused: whatever names it
    is left out without an error of its own, so that the option's error is the one shown."""

    def __repr__(self) -> str:
        return "REFUSED"


REFUSED = _Refused()


def build_model(
    files: Sequence[descriptor_pb2.FileDescriptorProto],
    *,
    rename: dict[str, str] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Model:
    """The model of ``files`` (all files with their imports, dependencies first).

    ``rename`` maps proto file names to the names diagnostics should show.
    ``sources`` maps proto file names to their text, when known: protoc gives no
    position for a value inside an option, so an error about one is placed by
    finding the value in the text (else it points at the ``option`` statement).
    Raises ``ModelError`` listing every inconsistency.
    """
    builder = _Builder(rename or {}, sources or {})
    for f in files:
        if f.name in SKIPPED_FILES or f.name.startswith(SKIPPED_PREFIXES):
            builder.add_external(f)
            continue
        builder.add_file(f)
    return builder.finish()


class _Locations:
    """Source positions of one file, looked up by descriptor path (nearest known prefix)."""

    def __init__(self, file: descriptor_pb2.FileDescriptorProto, text: str | None = None) -> None:
        self.file = file.name
        self._code = _code_only(text).split("\n") if text is not None else None
        self._spans: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._comments: dict[tuple[int, ...], str] = {}
        for loc in file.source_code_info.location:
            path = tuple(loc.path)
            if path not in self._spans:
                self._spans[path] = tuple(loc.span)
            if loc.leading_comments and path not in self._comments:
                self._comments[path] = _clean_comment(loc.leading_comments)

    def at(self, *path: int) -> Location:
        p = tuple(path)
        while p:
            span = self._spans.get(p)
            if span is not None:
                return Location(self.file, span[0] + 1, span[1] + 1)
            p = p[:-1]
        return Location(self.file, 0, 0)

    def value(self, path: tuple[int, ...], field: str, index: int | None = None) -> Location:
        """Where the value of option field ``field`` (at descriptor ``path``) is written.

        protoc records only the ``option`` statement's span for a field set inside it
        (``option (x).id_field = "a";`` or ``option (x) = { id_field: "a" };``), so
        the value is looked up in the statement's text, with comments and string
        contents blanked so that neither can be taken for the field. ``index`` picks
        one value of a repeated field (``events: "A" events: ["B", "C"]``; set by
        one statement each, a value has a span of its own). Without the text, or
        when the value is not found, the statement's position is given.
        """
        if self._code is None:
            return self.at(*path)
        statement = path
        if index is not None and (*path, index) in self._spans:
            statement, index = (*path, index), 0
        while statement and statement not in self._spans:
            statement = statement[:-1]
        if not statement:
            return self.at(*path)
        span = self._spans[statement]
        first, last = span[0], span[2] if len(span) == 4 else span[0]
        if last >= len(self._code):
            return self.at(*path)
        start = _index_of_column(self._code[first], span[1])
        end = _index_of_column(self._code[last], span[-1])
        text = "\n".join(self._code[first : last + 1])
        end += len(text) - len(self._code[last])
        values = list(_values_of(field, text, start, end))
        nth = index or 0
        if nth >= len(values):
            return self.at(*path)
        offset = values[nth]
        number = first + text.count("\n", 0, offset)
        line_start = text.rfind("\n", 0, offset) + 1
        column = len(self._code[number][: offset - line_start].expandtabs(8)) + 1
        return Location(self.file, number + 1, column)

    def comment(self, *path: int) -> str:
        return self._comments.get(tuple(path), "")


def _values_of(field: str, text: str, start: int, end: int) -> Iterator[int]:
    """Offsets in ``text[start:end]`` of each value written for ``field``, in order.

    ``field: "a"`` and ``(x).field = "a"`` give one value; a list, ``field: ["a", "b"]``,
    gives each element.
    """
    for found in re.compile(rf"\b{re.escape(field)}\b\s*[:=]\s*").finditer(text, start, end):
        at = found.end()
        if at >= end:
            continue
        if text[at] != "[":
            yield at
            continue
        at = _skip(_LIST_GAP, text, at + 1, end)
        while at < end and text[at] != "]":
            yield at
            at = _skip(_LIST_GAP, text, max(_skip(_LIST_ELEMENT, text, at, end), at + 1), end)


_LIST_GAP = re.compile(r"[\s,]*")
#: A string literal (its contents blanked by ``_code_only``) or a bare word or number.
_LIST_ELEMENT = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'|[^\s,\]]*")


def _skip(pattern: re.Pattern[str], text: str, at: int, end: int) -> int:
    """Where ``pattern`` (which may match nothing) stops matching from ``at``."""
    found = pattern.match(text, at, end)
    return found.end() if found is not None else at


def _code_only(text: str) -> str:
    """``text`` with comments and the contents of string literals blanked to spaces.

    Lines and columns stay where they were (newlines and tabs are kept), so a
    position found in the result is a position in ``text``; a field name written
    in a comment or a string is no longer there to be found.
    """
    out = list(text)

    def blank(begin: int, stop: int) -> None:
        for i in range(begin, stop):
            if out[i] not in "\n\t":
                out[i] = " "

    i, n = 0, len(text)
    while i < n:
        if text.startswith("//", i):
            stop = text.find("\n", i)
            stop = n if stop < 0 else stop
            blank(i, stop)
        elif text.startswith("/*", i):
            stop = text.find("*/", i + 2)
            stop = n if stop < 0 else stop + 2
            blank(i, stop)
        elif text[i] in "\"'":
            stop = i + 1
            while stop < n and text[stop] not in (text[i], "\n"):
                stop += 2 if text[stop] == "\\" else 1
            stop = min(stop, n)
            blank(i + 1, stop)
            stop += 1
        else:
            stop = i + 1
        i = stop
    return "".join(out)


def _index_of_column(line: str, column: int) -> int:
    """The index in ``line`` of protoc's 0-based ``column`` (protoc expands tabs to 8)."""
    for index in range(len(line) + 1):
        if len(line[:index].expandtabs(8)) >= column:
            return index
    return len(line)


def _clean_comment(text: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in text.strip("\n").split("\n")]
    return "\n".join(lines).strip()


class _Builder:
    def __init__(self, rename: dict[str, str], sources: Mapping[str, str]) -> None:
        self.rename = rename
        self.sources = sources
        self.files: list[str] = []
        self.messages: dict[str, MessageInfo] = {}
        self.enums: dict[str, EnumInfo] = {}
        self.external: dict[str, ExternalType] = {}
        self.errors: list[Diagnostic] = []
        self.warnings: list[Diagnostic] = []
        self.roots: list[
            tuple[MessageInfo, options_pb2.AggregateRootOptions, _Locations, tuple[int, ...]]
        ] = []
        self.event_marks: list[tuple[MessageInfo, str, Location]] = []
        self.process_marks: list[
            tuple[MessageInfo, options_pb2.ProcessManagerOptions, _Locations, tuple[int, ...]]
        ] = []
        self.raw_services: list[tuple[descriptor_pb2.FileDescriptorProto, int, _Locations]] = []
        # Roots whose aggregate_root option was refused (type name, state message), and the
        # events naming them: their error is reported once, at the option, not again at
        # every event, service or process manager that names them.
        self.refused: list[tuple[str, MessageInfo]] = []
        self.orphans: dict[str, MessageInfo] = {}

    # -- collecting ------------------------------------------------------------
    def add_external(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        def walk(
            messages: Sequence[descriptor_pb2.DescriptorProto],
            enums: Sequence[descriptor_pb2.EnumDescriptorProto],
            prefix: str,
            outer: str,
        ) -> None:
            for e in enums:
                full = f"{prefix}.{e.name}"[1:]
                self.external[full] = ExternalType(full, f"{outer}{e.name}", f.name, True)
            for m in messages:
                full = f"{prefix}.{m.name}"
                qual = f"{outer}{m.name}"
                self.external[full[1:]] = ExternalType(full[1:], qual, f.name)
                walk(m.nested_type, m.enum_type, full, f"{qual}.")

        walk(f.message_type, f.enum_type, f".{f.package}" if f.package else "", "")

    def add_file(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        self.files.append(f.name)
        locs = _Locations(f, self.sources.get(f.name))
        if f.name in self.rename:
            locs.file = self.rename[f.name]
        prefix = f".{f.package}" if f.package else ""
        for i, m in enumerate(f.message_type):
            self._check_top_level_name(f, "message", m.name, locs.at(_FILE_MESSAGE, i))
            self._add_message(f, locs, m, prefix, "", (_FILE_MESSAGE, i))
        for i, e in enumerate(f.enum_type):
            self._check_top_level_name(f, "enum", e.name, locs.at(_FILE_ENUM, i))
            self._add_enum(f, e, prefix, "", locs.at(_FILE_ENUM, i))
        for i in range(len(f.service)):
            self.raw_services.append((f, i, locs))

    def _check_top_level_name(
        self, f: descriptor_pb2.FileDescriptorProto, kind: str, name: str, where: Location
    ) -> None:
        """A top-level message or enum named like a Python keyword is an error.

        Every generated module binds its file's top-level types under their names (the
        in-process module binds those of every file), and no Python code can write a
        keyword as a name: ``from shop_pb2 import None`` is a syntax error.
        """
        if keyword.iskeyword(name):
            full = f"{f.package}.{name}" if f.package else name
            self.errors.append(
                where.diagnostic(
                    f"{kind} {full} is named like the Python keyword {name!r}: the generated "
                    "module binds it by name, and Python code cannot write that name "
                    f"(from {naming.pb2_module(f.name)} import {name} is a syntax error); "
                    f"rename the {kind}",
                    full,
                )
            )

    def _add_enum(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        e: descriptor_pb2.EnumDescriptorProto,
        prefix: str,
        outer: str,
        location: Location,
    ) -> None:
        full = f"{prefix}.{e.name}"[1:]
        self.enums[full] = EnumInfo(full, f"{outer}{e.name}", f.name, e, location)

    def _add_message(
        self,
        f: descriptor_pb2.FileDescriptorProto,
        locs: _Locations,
        m: descriptor_pb2.DescriptorProto,
        prefix: str,
        outer: str,
        path: tuple[int, ...],
    ) -> None:
        full = f"{prefix}.{m.name}"
        info = MessageInfo(
            full_name=full[1:],
            qualname=f"{outer}{m.name}",
            file=f.name,
            package=f.package,
            comment=locs.comment(*path),
            location=locs.at(*path),
            fields=[],
            is_map_entry=m.options.map_entry,
            descriptor=m,
        )
        self.messages[info.full_name] = info
        for i, nested in enumerate(m.nested_type):
            self._add_message(f, locs, nested, full, f"{info.qualname}.", (*path, _MSG_NESTED, i))
        for i, e in enumerate(m.enum_type):
            self._add_enum(f, e, full, f"{info.qualname}.", locs.at(*path, _MSG_ENUM, i))
        opts = m.options
        if opts.HasExtension(options_pb2.aggregate_root):
            root = opts.Extensions[options_pb2.aggregate_root]
            self.roots.append((info, root, locs, path))
        if opts.HasExtension(options_pb2.event):
            ev = opts.Extensions[options_pb2.event]
            where = locs.value((*path, _MSG_OPTIONS, options_pb2.event.number, 1), "aggregate_name")
            self.event_marks.append((info, ev.aggregate_name, where))
        if opts.HasExtension(options_pb2.process_manager):
            option = opts.Extensions[options_pb2.process_manager]
            self.process_marks.append((info, option, locs, path))

    def _resolve_fields(self) -> None:
        for info in self.messages.values():
            assert info.descriptor is not None
            info.fields = [self._field(fd) for fd in info.descriptor.field]

    def _field(self, fd: descriptor_pb2.FieldDescriptorProto) -> FieldInfo:
        repeated = fd.label == FDP.LABEL_REPEATED
        value = self._type_ref(fd)
        if repeated and value.kind == "message":
            entry = self.messages.get(value.full_name)
            if entry is not None and entry.is_map_entry and entry.descriptor is not None:
                k, v = entry.descriptor.field[0], entry.descriptor.field[1]
                return FieldInfo(fd.name, fd.number, self._type_ref(v), True, self._type_ref(k))
        return FieldInfo(fd.name, fd.number, value, repeated)

    def _type_ref(self, fd: descriptor_pb2.FieldDescriptorProto) -> TypeRef:
        if fd.type == FDP.TYPE_ENUM:
            return TypeRef("enum", full_name=fd.type_name.lstrip("."))
        if fd.type in (FDP.TYPE_MESSAGE, FDP.TYPE_GROUP):
            return TypeRef("message", full_name=fd.type_name.lstrip("."))
        return TypeRef("scalar", py=_SCALARS[fd.type])

    # -- checking and linking ----------------------------------------------------
    def finish(self) -> Model:
        self._resolve_fields()
        aggregates = self._aggregates()
        self._events(aggregates)
        services = self._services(aggregates)
        self._clients(services, aggregates)
        process_managers = self._process_managers(aggregates)
        if self.errors:
            raise ModelError(self.errors)
        return Model(
            files=self.files,
            messages=self.messages,
            enums=self.enums,
            aggregates=list(aggregates.values()),
            services=services,
            warnings=self.warnings,
            external=self.external,
            process_managers=process_managers,
        )

    def _aggregates(self) -> dict[str, AggregateInfo]:
        found: dict[str, AggregateInfo] = {}
        for info, root, locs, path in self.roots:
            aggregate = self._aggregate(info, root, locs, path, found)
            if aggregate is None:
                self.refused.append((root.type_name or info.name, info))
                continue
            found[aggregate.type_name] = aggregate
        return found

    def _aggregate(
        self,
        info: MessageInfo,
        root: options_pb2.AggregateRootOptions,
        locs: _Locations,
        path: tuple[int, ...],
        found: dict[str, AggregateInfo],
    ) -> AggregateInfo | None:
        """The aggregate ``root`` marks on ``info``; None when the option is refused (an error,
        or the message's name, which is an error already)."""
        ext = options_pb2.aggregate_root.number
        type_name = root.type_name or info.name
        element = f"aggregate_root option on {info.name!r}"
        if not root.type_name and info.is_top_level and keyword.iskeyword(info.name):
            return None  # the message's name is an error already (_check_top_level_name)
        if not naming.is_identifier(type_name):
            where = locs.value((*path, _MSG_OPTIONS, ext, 2), "type_name")
            self.errors.append(
                where.diagnostic(
                    f"{element} names type_name {type_name!r}, which is not an identifier; "
                    "use a name like 'Account' (letters, digits, underscores)",
                    info.full_name,
                )
            )
            return None
        names = [f.name for f in info.fields]
        if root.id_field:
            fld = next((f for f in info.fields if f.name == root.id_field), None)
            where = locs.value((*path, _MSG_OPTIONS, ext, 1), "id_field")
            if fld is None:
                self.errors.append(
                    where.diagnostic(
                        f"{element} names id_field {root.id_field!r}, which is not a field "
                        f"of {info.name} (fields: {', '.join(names) or 'none'})",
                        info.full_name,
                    )
                )
                return None
            if fld.shape != "single" or fld.value.py != "str":
                self.errors.append(
                    where.diagnostic(
                        f"{element} names id_field {root.id_field!r}, which is not a "
                        "single string field; the aggregate id is a string, so make "
                        f"{root.id_field!r} a 'string' field",
                        info.full_name,
                    )
                )
                return None
        if root.snapshot_every < 0:
            where = locs.value((*path, _MSG_OPTIONS, ext, 3), "snapshot_every")
            self.errors.append(
                where.diagnostic(
                    f"{element} has snapshot_every {root.snapshot_every}; use 0 (no "
                    "default snapshots) or a positive number of events",
                    info.full_name,
                )
            )
            return None
        other = found.get(type_name)
        if other is not None:
            self.errors.append(
                info.location.diagnostic(
                    f"aggregate type {type_name!r} is declared twice: by {info.full_name} "
                    f"and by {other.message.full_name} ({other.message.location.file}:"
                    f"{other.message.location.line}); give one of them another type_name",
                    info.full_name,
                )
            )
            return None
        aggregate = AggregateInfo(
            type_name=type_name,
            message=info,
            id_field=root.id_field,
            snapshot_every=root.snapshot_every,
            schema_key=self._schema_key(info),
        )
        for fld in info.fields:
            if (
                fld.name in RESERVED_ATTRIBUTES
                or keyword.iskeyword(fld.name)
                or fld.name.startswith("_")
            ):
                aggregate.clashing_fields.append(fld.name)
                self.warnings.append(
                    locs.at(*path, _MSG_FIELD, info.fields.index(fld)).diagnostic(
                        f"state field {fld.name!r} of {info.name} is not an attribute of "
                        f"{aggregate.class_prefix}Aggregate ("
                        + (
                            "the name is a Python keyword"
                            if keyword.iskeyword(fld.name)
                            else "the name is taken by the aggregate itself"
                        )
                        + "); reach it as "
                        + naming.attribute_access("agg.state", fld.name),
                        f"{info.full_name}.{fld.name}",
                    )
                )
            else:
                aggregate.forwarded_fields.append(fld)
        return aggregate

    def _schema_key(self, info: MessageInfo) -> str:
        """A hash of the state's shape: its fields and those of every message and enum it reaches.

        Only what decides how snapshot bytes decode counts (names, numbers, labels,
        types, oneofs; enum values), not options or comments: changing
        ``snapshot_every`` or ``type_name`` keeps the snapshots.
        """
        digest = hashlib.sha256()
        seen: set[str] = set()
        todo = [info.full_name]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            digest.update(f"\0{name}".encode())
            msg = self.messages.get(name)
            if msg is not None and msg.descriptor is not None:
                for fd in msg.descriptor.field:
                    oneof = fd.oneof_index if fd.HasField("oneof_index") else -1
                    digest.update(
                        f"\1{fd.name}:{fd.number}:{fd.label}:{fd.type}:{fd.type_name}:"
                        f"{oneof}:{fd.proto3_optional}".encode()
                    )
                    if fd.type_name:
                        todo.append(fd.type_name.lstrip("."))
            enum = self.enums.get(name)
            if enum is not None and enum.descriptor is not None:
                for value in enum.descriptor.value:
                    digest.update(f"\2{value.name}:{value.number}".encode())
        return digest.hexdigest()[:16]

    def _find_aggregate(
        self, aggregates: dict[str, AggregateInfo], name: str, *, by_type: bool = True
    ) -> AggregateInfo | _Refused | list[AggregateInfo]:
        """The aggregate ``name`` names: by type (unless ``by_type`` is false), else by its
        state message's simple or full name.

        ``REFUSED`` when the name is that of an aggregate whose option was refused (its
        error is reported already); else, when no one aggregate is named, the aggregates
        whose state message has that simple name: none, or several (``_ambiguous``).
        """
        name = name.lstrip(".")
        if by_type and name in aggregates:
            return aggregates[name]
        by_message = [
            a for a in aggregates.values() if name in (a.message.name, a.message.full_name)
        ]
        if any(
            name in (info.name, info.full_name) or (by_type and name == type_name)
            for type_name, info in self.refused
        ):
            return REFUSED
        return by_message[0] if len(by_message) == 1 else by_message

    @staticmethod
    def _ambiguous(
        matches: list[AggregateInfo], fix: str = "name it by its full name or by its type_name"
    ) -> str:
        """Why a name that several state messages share names none of them, and ``fix``."""
        states = ", ".join(sorted(a.message.full_name for a in matches))
        return f"which more than one aggregate's state message is called ({states}); {fix}"

    def _known(self, aggregates: dict[str, AggregateInfo]) -> str:
        if aggregates:
            return ", ".join(sorted(aggregates))
        if self.refused:
            names = ", ".join(sorted({info.name for _, info in self.refused}))
            return f"none accepted: the aggregate_root option on {names} is refused, see above"
        return "none: mark a state message with aggregate_root"

    def _events(self, aggregates: dict[str, AggregateInfo]) -> None:
        roots = {a.message.full_name for a in aggregates.values()}
        for info, aggregate_name, where in self.event_marks:
            element = f"event option on {info.name!r}"
            if info.full_name in roots:
                self.errors.append(
                    where.diagnostic(
                        f"{element}: {info.name} is also an aggregate's state; an event and "
                        "a state must be different messages",
                        info.full_name,
                    )
                )
                continue
            if not aggregate_name:
                self.errors.append(
                    where.diagnostic(
                        f"{element} has no aggregate_name; name the aggregate this event "
                        f"belongs to (aggregates: {self._known(aggregates)})",
                        info.full_name,
                    )
                )
                continue
            aggregate = self._find_aggregate(aggregates, aggregate_name)
            if isinstance(aggregate, _Refused):
                self.orphans[info.full_name] = info
                continue  # the aggregate's option is refused: that is the error to fix
            if not isinstance(aggregate, AggregateInfo):
                cause = self._ambiguous(aggregate) if aggregate else "which is not an aggregate"
                self.errors.append(
                    where.diagnostic(
                        f"{element} names aggregate_name {aggregate_name!r}, {cause} "
                        f"(aggregates: {self._known(aggregates)})",
                        info.full_name,
                    )
                )
                continue
            snake = naming.snake(info.name)
            aggregate.events.append(
                EventInfo(
                    message=info,
                    aggregate=aggregate.type_name,
                    constant=snake.upper(),
                    applier_method=f"apply_{snake}",
                    projection_method="",
                )
            )
        for aggregate in aggregates.values():
            short = [naming.snake(e.message.name).removesuffix("_event") for e in aggregate.events]
            for event, name in zip(aggregate.events, short, strict=True):
                plain = short.count(name) == 1 and name
                event.projection_method = f"on_{plain or naming.snake(event.message.name)}"
        self._check_event_names(aggregates)

    def _check_event_names(self, aggregates: dict[str, AggregateInfo]) -> None:
        constants: dict[str, EventInfo] = {}
        for aggregate in aggregates.values():
            for event in aggregate.events:
                other = constants.get(event.constant)
                if other is not None and other.full_name != event.full_name:
                    self.errors.append(
                        event.message.location.diagnostic(
                            f"events {event.full_name} and {other.full_name} both become the "
                            f"constant {event.constant}; rename one of the messages",
                            event.full_name,
                        )
                    )
                constants[event.constant] = event
            methods = [e.projection_method for e in aggregate.events]
            builder = f"{aggregate.class_prefix}ProjectionBuilder"
            for event in aggregate.events:
                method = event.projection_method
                if method in PROJECTION_BUILDER_MEMBERS:
                    cause = (
                        f"which every projection builder has (ProjectionBuilder.{method}"
                        + (", the rebuild hook" if method == "on_reset" else "")
                        + ")"
                    )
                elif methods.count(method) > 1:
                    cause = "which another of its events gets too"
                else:
                    continue
                self.errors.append(
                    event.message.location.diagnostic(
                        f"event {event.full_name} would get the projection method "
                        f"{builder}.{method}, {cause}; rename the event message",
                        event.full_name,
                    )
                )

    # -- process managers --------------------------------------------------------------
    def _process_managers(self, aggregates: dict[str, AggregateInfo]) -> list[ProcessManagerInfo]:
        events = {e.full_name: e.message for a in aggregates.values() for e in a.events}
        roots = {a.message.full_name for a in aggregates.values()}
        found: dict[str, ProcessManagerInfo] = {}
        ext = options_pb2.process_manager.number
        for info, option, locs, path in self.process_marks:
            element = f"process_manager option on {info.name!r}"
            name = option.name or info.name.removesuffix("State") or info.name
            manager = ProcessManagerInfo(name=name, message=info)
            where_name = locs.value((*path, _MSG_OPTIONS, ext, 1), "name")
            if not naming.is_identifier(manager.class_name) or not name.strip():
                self.errors.append(
                    where_name.diagnostic(
                        f"{element} names the process manager {name!r}, which gives no class "
                        f"name ({manager.class_name!r} is not an identifier); use a name like "
                        "'transfers' or 'TransferProcess' (letters, digits, underscores)",
                        info.full_name,
                    )
                )
                continue
            events_path = (*path, _MSG_OPTIONS, ext, 2)
            where = locs.value(events_path, "events")
            if info.full_name in roots or info.full_name in events:
                what = "an aggregate's state" if info.full_name in roots else "an event"
                self.errors.append(
                    locs.at(*path).diagnostic(
                        f"{element}: {info.name} is also {what}; a process manager's state "
                        "is a message of its own",
                        info.full_name,
                    )
                )
                continue
            known = ", ".join(sorted(events)) or "none: mark events with the event option"
            if not option.events:
                self.errors.append(
                    where.diagnostic(
                        f"{element} names no events; list the events it reacts to, as in "
                        f'events: ["MoneyWithdrawnEvent"] (events: {known})',
                        info.full_name,
                    )
                )
                continue
            where_event = partial(locs.value, events_path, "events")
            reacted = self._reactions(element, option, info, events, known, where_event)
            if reacted is None:
                continue
            manager.reactions = reacted
            other = found.get(name)
            if other is not None:
                self.errors.append(
                    where_name.diagnostic(
                        f"process manager {name!r} is declared twice: by {info.full_name} and "
                        f"by {other.message.full_name}; give one of them another name",
                        info.full_name,
                    )
                )
                continue
            found[name] = manager
        return list(found.values())

    def _reactions(
        self,
        element: str,
        option: options_pb2.ProcessManagerOptions,
        info: MessageInfo,
        events: dict[str, MessageInfo],
        known: str,
        where: Callable[[int], Location],
    ) -> list[ReactionInfo] | None:
        """The events ``option`` names, each with its handler method; None after an error, and
        (with no error of its own) when it names an event of an aggregate whose option is refused.

        ``where(i)`` is the position of the i-th name, so an error points at the name at fault.
        """
        messages: list[MessageInfo] = []
        for number, wanted in enumerate(option.events):
            name = wanted.lstrip(".")
            matches = [m for full, m in events.items() if name in (full, m.name)]
            if any(name in (full, m.name) for full, m in self.orphans.items()):
                return None  # its aggregate's option is refused: that error is the one shown
            if len(matches) != 1:
                if matches:
                    cause = (
                        "which more than one event is called ("
                        + ", ".join(sorted(m.full_name for m in matches))
                        + "); name it by its full name"
                    )
                elif any(name in (full, m.name) for full, m in self.messages.items()):
                    cause = (
                        "which is a message but not an event; mark it with "
                        "option (eventsourcing.event).aggregate_name"
                    )
                else:
                    cause = "which is not an event of the files given to the generator"
                self.errors.append(
                    where(number).diagnostic(
                        f"{element} names event {wanted!r}, {cause} (events: {known})",
                        info.full_name,
                    )
                )
                return None
            if matches[0] in messages:
                self.errors.append(
                    where(number).diagnostic(
                        f"{element} names event {wanted!r} twice; list each event once",
                        info.full_name,
                    )
                )
                return None
            messages.append(matches[0])
        short = [naming.snake(m.name).removesuffix("_event") for m in messages]
        methods = [
            f"on_{s}" if short.count(s) == 1 and s else f"on_{naming.snake(m.name)}"
            for m, s in zip(messages, short, strict=True)
        ]
        for number, (message, method) in enumerate(zip(messages, methods, strict=True)):
            if method in PROCESS_MANAGER_MEMBERS or methods.count(method) > 1:
                self.errors.append(
                    where(number).diagnostic(
                        f"{element}: event {message.full_name} would get the handler {method}, "
                        + (
                            "a method every process manager has"
                            if method in PROCESS_MANAGER_MEMBERS
                            else "which another of its events gets too"
                        )
                        + "; rename the event message",
                        info.full_name,
                    )
                )
                return None
        return [ReactionInfo(m, method) for m, method in zip(messages, methods, strict=True)]

    # -- services ------------------------------------------------------------------
    def _services(self, aggregates: dict[str, AggregateInfo]) -> list[ServiceInfo]:
        services: list[ServiceInfo] = []
        for f, index, locs in self.raw_services:
            s = f.service[index]
            path = (_FILE_SERVICE, index)
            full = f"{f.package}.{s.name}" if f.package else s.name
            errors_before = len(self.errors)
            aggregate = self._service_aggregate(s, full, locs, path, aggregates)
            if len(self.errors) > errors_before or aggregate is REFUSED:
                # A wrong service option, or an aggregate whose option is refused: the
                # service is left out, its methods unchecked.
                continue
            assert not isinstance(aggregate, _Refused)
            services.append(
                ServiceInfo(
                    full_name=full,
                    name=s.name,
                    package=f.package,
                    file=f.name,
                    kind=_service_kind(s.name),
                    aggregate=aggregate.type_name if aggregate else None,
                    methods=self._methods(s, full, locs, path),
                    comment=locs.comment(*path),
                    location=locs.at(*path),
                )
            )
        return services

    def _service_aggregate(
        self,
        s: descriptor_pb2.ServiceDescriptorProto,
        full: str,
        locs: _Locations,
        path: tuple[int, ...],
        aggregates: dict[str, AggregateInfo],
    ) -> AggregateInfo | _Refused | None:
        """The aggregate ``s`` is bound to: by its service option, else by its name.

        ``AccountCommandService`` and ``AccountQueryService`` are bound to the
        aggregate ``Account`` when there is one; other services to none. A name
        that several aggregates' state messages share binds to none of them: an error.
        """
        if s.options.HasExtension(options_pb2.service):
            option = s.options.Extensions[options_pb2.service]
            return self._aggregate_of_option(option, s.name, full, locs, path, aggregates)
        for suffix in ("CommandService", "QueryService"):
            if s.name.endswith(suffix) and s.name != suffix:
                prefix = s.name.removesuffix(suffix)
                found = self._find_aggregate(aggregates, prefix)
                if not isinstance(found, list):
                    return found
                if found:  # a name several state messages share: bound to none, an error
                    self.errors.append(
                        locs.at(*path).diagnostic(
                            f"service {full} is bound by its name to {prefix!r}, "
                            + self._ambiguous(
                                found,
                                "name the aggregate in the service's option "
                                "(eventsourcing.service).aggregate_name, by its type_name or "
                                "its state message's full name",
                            )
                            + f" (aggregates: {self._known(aggregates)})",
                            full,
                        )
                    )
                return None
        return None

    def _aggregate_of_option(
        self,
        option: options_pb2.ServiceOptions,
        service: str,
        full: str,
        locs: _Locations,
        path: tuple[int, ...],
        aggregates: dict[str, AggregateInfo],
    ) -> AggregateInfo | _Refused | None:
        """The aggregate the service option names (by type, by state message, or both).

        A name that is no aggregate, or two names for different aggregates,
        is an error (and None); the name of an aggregate whose option is refused
        gives ``REFUSED``.
        """
        ext = options_pb2.service.number
        element = f"service option on {service!r}"
        by_name: AggregateInfo | None = None
        by_message: AggregateInfo | None = None
        if option.aggregate_name:
            where = locs.value((*path, _SVC_OPTIONS, ext, 1), "aggregate_name")
            named = self._check_aggregate_name(option, element, full, where, aggregates)
            if not isinstance(named, AggregateInfo):
                return named
            by_name = named
        if option.aggregate_root_message:
            where = locs.value((*path, _SVC_OPTIONS, ext, 2), "aggregate_root_message")
            named = self._check_root_message(option, element, full, where, aggregates)
            if not isinstance(named, AggregateInfo):
                return named
            by_message = named
        if by_name and by_message and by_name is not by_message:
            self.errors.append(
                locs.at(*path, _SVC_OPTIONS, ext).diagnostic(
                    f"{element} names aggregate {by_name.type_name!r} by aggregate_name "
                    f"but {by_message.type_name!r} by aggregate_root_message; keep one",
                    full,
                )
            )
            return None
        return by_name or by_message

    def _check_aggregate_name(
        self,
        option: options_pb2.ServiceOptions,
        element: str,
        full: str,
        where: Location,
        aggregates: dict[str, AggregateInfo],
    ) -> AggregateInfo | _Refused | None:
        """The aggregate named by ``aggregate_name``; an error (and None) when there is none."""
        found = self._find_aggregate(aggregates, option.aggregate_name)
        if not isinstance(found, list):
            return found
        cause = self._ambiguous(found) if found else "which is not an aggregate"
        self.errors.append(
            where.diagnostic(
                f"{element} names aggregate_name {option.aggregate_name!r}, {cause} "
                f"(aggregates: {self._known(aggregates)})",
                full,
            )
        )
        return None

    def _check_root_message(
        self,
        option: options_pb2.ServiceOptions,
        element: str,
        full: str,
        where: Location,
        aggregates: dict[str, AggregateInfo],
    ) -> AggregateInfo | _Refused | None:
        """The aggregate whose state is ``aggregate_root_message``; an error (and None) if none."""
        found = self._find_aggregate(aggregates, option.aggregate_root_message, by_type=False)
        if not isinstance(found, list):
            return found
        cause = (
            self._ambiguous(found, "name it by its full name")
            if found
            else "which is not an aggregate's state message"
        )
        roots = ", ".join(sorted(a.message.full_name for a in aggregates.values()))
        self.errors.append(
            where.diagnostic(
                f"{element} names aggregate_root_message "
                f"{option.aggregate_root_message!r}, {cause} "
                f"(state messages: {roots or 'none'})",
                full,
            )
        )
        return None

    def _methods(
        self,
        s: descriptor_pb2.ServiceDescriptorProto,
        full: str,
        locs: _Locations,
        path: tuple[int, ...],
    ) -> list[MethodInfo]:
        """The methods of ``s`` that checked out; each one that did not is an error."""
        methods = []
        for i, m in enumerate(s.method):
            where = locs.at(*path, _SVC_METHOD, i)
            py_name = naming.snake(m.name)
            if not self._check_method_signature(s.name, m, py_name, full, where):
                continue
            request = self._method_type(m.input_type, "request", s.name, m.name, where, full)
            reply = self._method_type(m.output_type, "reply", s.name, m.name, where, full)
            if request is None or reply is None:
                continue
            methods.append(
                MethodInfo(
                    name=m.name,
                    py_name=py_name,
                    subject=f"{full}.{m.name}",
                    input=request,
                    output=reply,
                    comment=locs.comment(*path, _SVC_METHOD, i),
                    location=where,
                )
            )
        return methods

    def _check_method_signature(
        self,
        service: str,
        m: descriptor_pb2.MethodDescriptorProto,
        py_name: str,
        full: str,
        where: Location,
    ) -> bool:
        """Whether the rpc can become a Python method: unary, with a usable name."""
        if m.client_streaming or m.server_streaming:
            self.errors.append(
                where.diagnostic(
                    f"method {service}.{m.name} streams; generated services handle one "
                    "request and one reply, so remove 'stream'",
                    f"{full}.{m.name}",
                )
            )
            return False
        if not naming.is_identifier(py_name) or py_name in CLIENT_MEMBERS:
            self.errors.append(
                where.diagnostic(
                    f"method {service}.{m.name} would become the Python method "
                    f"{py_name!r}, which is a keyword or an attribute of every client; "
                    "rename the rpc",
                    f"{full}.{m.name}",
                )
            )
            return False
        return True

    def _method_type(
        self,
        type_name: str,
        role: str,
        service: str,
        method: str,
        where: Location,
        full: str,
    ) -> MessageInfo | ExternalType | None:
        """The request or reply message of a method, from a modelled file or not.

        A message of a file that is not modelled (a well-known type such as
        ``google.protobuf.Empty``) is an ``ExternalType``; one that is in no file
        given to the model (files passed without their imports) is an error.
        """
        name = type_name.lstrip(".")
        found = self.messages.get(name) or self.external.get(name)
        if found is not None and not (isinstance(found, ExternalType) and found.is_enum):
            return found
        self.errors.append(
            where.diagnostic(
                f"method {service}.{method} has {role} type {name!r}, which is not a message "
                "of the files given to the generator; pass every file with its imports "
                "(protoc's --include_imports)",
                f"{full}.{method}",
            )
        )
        return None

    def _clients(self, services: list[ServiceInfo], aggregates: dict[str, AggregateInfo]) -> None:
        methods: dict[str, dict[str, MethodInfo]] = {}
        attributes: dict[str, str] = {}
        for s in services:
            if s.aggregate is not None:
                s.client_name = f"{aggregates[s.aggregate].class_prefix}Client"
                s.sdk_attribute = aggregates[s.aggregate].snake
            else:
                s.client_name = f"{s.name}Client"
                s.sdk_attribute = naming.snake(s.name)
            if not naming.is_identifier(s.sdk_attribute) or s.sdk_attribute == "transport":
                what = f"aggregate type {s.aggregate!r}" if s.aggregate else f"service {s.name!r}"
                self.errors.append(
                    s.location.diagnostic(
                        f"service {s.full_name} would become SDK attribute "
                        f"{s.sdk_attribute!r} (from the {what}), which is a keyword or the "
                        "SDK's transport; rename the "
                        + ("aggregate (type_name)" if s.aggregate else "service"),
                        s.full_name,
                    )
                )
                continue
            owner = attributes.setdefault(s.sdk_attribute, s.client_name)
            if owner != s.client_name:
                self.errors.append(
                    s.location.diagnostic(
                        f"service {s.full_name} would become SDK attribute {s.sdk_attribute!r}, "
                        f"which {owner} already uses; rename the service",
                        s.full_name,
                    )
                )
            seen = methods.setdefault(s.client_name, {})
            for m in s.methods:
                other = seen.get(m.py_name)
                if other is not None:
                    self.errors.append(
                        m.location.diagnostic(
                            f"method {m.subject} and {other.subject} both become "
                            f"{s.client_name}.{m.py_name}; rename one of them",
                            m.subject,
                        )
                    )
                seen[m.py_name] = m


def _service_kind(name: str) -> str:
    """``command``, ``query`` or ``service``, by the service's name suffix."""
    if name.endswith("CommandService"):
        return "command"
    if name.endswith("QueryService"):
        return "query"
    return "service"
