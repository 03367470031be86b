"""The event sourcing model of a set of protos: aggregates, events, services, views.

One model feeds both outputs (DESIGN decision 9). These are its data classes;
``build.build_model`` makes one from descriptors, checking every option.

The model is also what the notebook shows: a generated module carries it as
``__es_model__``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

from . import naming
from .errors import Diagnostic

#: Files never modelled: the well-known types and eventstore's own protos.
SKIPPED_PREFIXES = ("google/protobuf/",)
SKIPPED_FILES = (
    "eventsourcing/options.proto",
    "eventsourcing/response.proto",
    "eventsourcing/envelope.proto",
)


@dataclass(frozen=True, slots=True)
class Location:
    file: str
    line: int
    column: int

    def diagnostic(self, message: str, element: str) -> Diagnostic:
        return Diagnostic(self.file, self.line, self.column, message, element)


@dataclass(frozen=True, slots=True)
class TypeRef:
    """The type of a value: a Python scalar (``py``) or a message/enum (``full_name``)."""

    kind: str  # "scalar" | "enum" | "message"
    py: str = ""
    full_name: str = ""


@dataclass(frozen=True, slots=True)
class FieldInfo:
    name: str
    number: int
    value: TypeRef
    repeated: bool = False
    map_key: TypeRef | None = None

    @property
    def shape(self) -> str:
        """``single``, ``repeated`` or ``map``."""
        if self.map_key is not None:
            return "map"
        return "repeated" if self.repeated else "single"


class _Qualified:
    """A message or enum named by ``qualname`` inside its file (``Outer.Inner``)."""

    __slots__ = ()
    qualname: str

    @property
    def name(self) -> str:
        return self.qualname.rpartition(".")[2]

    @property
    def is_top_level(self) -> bool:
        return "." not in self.qualname


@dataclass(slots=True)
class MessageInfo(_Qualified):
    full_name: str
    qualname: str  # "Outer.Inner" inside its file
    file: str
    package: str
    comment: str
    location: Location
    fields: list[FieldInfo]
    is_map_entry: bool = False
    descriptor: descriptor_pb2.DescriptorProto | None = field(default=None, repr=False)


@dataclass(slots=True)
class ExternalType(_Qualified):
    """A message or enum of a file that is not modelled (a well-known type such as Timestamp).

    Generated code still names it (a state field of that type is typed with
    its class), so the renderer needs its file and its name inside the file.
    """

    full_name: str
    qualname: str
    file: str
    is_enum: bool = False


@dataclass(slots=True)
class EnumInfo(_Qualified):
    full_name: str
    qualname: str
    file: str
    descriptor: descriptor_pb2.EnumDescriptorProto | None = field(default=None, repr=False)
    location: Location | None = None


@dataclass(slots=True)
class EventInfo:
    message: MessageInfo
    aggregate: str  # the aggregate's type
    constant: str  # ACCOUNT_OPENED_EVENT
    applier_method: str  # apply_account_opened_event
    projection_method: str  # on_account_opened

    @property
    def full_name(self) -> str:
        return self.message.full_name


@dataclass(slots=True)
class AggregateInfo:
    """An aggregate: its state message, its events, the services bound to it."""

    type_name: str
    message: MessageInfo
    id_field: str
    snapshot_every: int
    schema_key: str
    events: list[EventInfo] = field(default_factory=list)
    forwarded_fields: list[FieldInfo] = field(default_factory=list)
    clashing_fields: list[str] = field(default_factory=list)

    @property
    def class_prefix(self) -> str:
        return naming.camel(self.type_name)

    @property
    def snake(self) -> str:
        return naming.snake(self.type_name)

    @property
    def file(self) -> str:
        return self.message.file


@dataclass(slots=True)
class ReactionInfo:
    """One event a process manager reacts to, and the handler method it gets."""

    message: MessageInfo
    method: str  # on_money_withdrawn

    @property
    def full_name(self) -> str:
        return self.message.full_name


@dataclass(slots=True)
class ProcessManagerInfo:
    """A process manager: its state message, its name and the events it reacts to."""

    name: str
    message: MessageInfo
    reactions: list[ReactionInfo] = field(default_factory=list)

    @property
    def class_name(self) -> str:
        """``transfers`` -> ``TransfersProcessManager``, ``TransferProcess`` ->
        ``TransferProcessManager``: the generated base class."""
        stem = naming.camel(self.name).removesuffix("ProcessManager").removesuffix("Process")
        return f"{stem or naming.camel(self.name)}ProcessManager"

    @property
    def file(self) -> str:
        return self.message.file


@dataclass(slots=True)
class MethodInfo:
    """One rpc. Its request and reply are messages of the modelled files, or of a file
    that is not modelled (``ExternalType``: ``google.protobuf.Empty``,
    ``google.protobuf.StringValue``, ``eventsourcing.Response``)."""

    name: str
    py_name: str
    subject: str
    input: MessageInfo | ExternalType
    output: MessageInfo | ExternalType
    comment: str
    location: Location


@dataclass(slots=True)
class ServiceInfo:
    full_name: str
    name: str
    package: str
    file: str
    kind: str  # "command" | "query" | "service"
    aggregate: str | None
    methods: list[MethodInfo]
    comment: str
    location: Location
    client_name: str = ""  # the client class that carries this service's methods
    sdk_attribute: str = ""


@dataclass(slots=True)
class Model:
    """What the generator found in a set of protos.

    ``files`` are the modelled proto files; ``messages`` and ``enums`` are
    keyed by full name; ``warnings`` are things the generator worked around
    (a state field named like an aggregate attribute) and says so.
    """

    files: list[str]
    messages: dict[str, MessageInfo]
    enums: dict[str, EnumInfo]
    aggregates: list[AggregateInfo]
    services: list[ServiceInfo]
    warnings: list[Diagnostic]
    #: Messages and enums of files that are not modelled (well-known types), by full name.
    external: dict[str, ExternalType] = field(default_factory=dict)
    process_managers: list[ProcessManagerInfo] = field(default_factory=list)

    @property
    def events(self) -> list[EventInfo]:
        return [e for a in self.aggregates for e in a.events]

    # Commands, queries and views are the domain's own messages: a request or reply of a
    # file that is not modelled (google.protobuf.Empty) is left out of them.
    @property
    def commands(self) -> list[MessageInfo]:
        """Request messages of command services (and of aggregate-bound plain services)."""
        return _unique(m.input for s in self.services if s.kind != "query" for m in s.methods)

    @property
    def queries(self) -> list[MessageInfo]:
        return _unique(m.input for s in self.services if s.kind == "query" for m in s.methods)

    @property
    def views(self) -> list[MessageInfo]:
        """Read models: the reply messages of query services."""
        return _unique(m.output for s in self.services if s.kind == "query" for m in s.methods)

    def clients(self) -> dict[str, list[ServiceInfo]]:
        """Client class name -> the services whose methods it carries."""
        out: dict[str, list[ServiceInfo]] = {}
        for s in self.services:
            out.setdefault(s.client_name, []).append(s)
        return out

    def summary(self) -> dict[str, list[str]]:
        """Names by kind, for a short listing (the notebook's summary)."""
        return {
            "aggregates": [a.type_name for a in self.aggregates],
            "events": [e.full_name for e in self.events],
            "commands": [m.full_name for m in self.commands],
            "queries": [m.full_name for m in self.queries],
            "services": [s.full_name for s in self.services],
            "views": [m.full_name for m in self.views],
            "processes": [p.name for p in self.process_managers],
        }


def _unique(items: Iterable[MessageInfo | ExternalType]) -> list[MessageInfo]:
    seen: dict[str, MessageInfo] = {}
    for m in items:
        if isinstance(m, MessageInfo):
            seen.setdefault(m.full_name, m)
    return list(seen.values())
