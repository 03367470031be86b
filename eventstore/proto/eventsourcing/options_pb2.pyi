# ruff: noqa
# Regenerate with: python -m eventstore.codegen.bootstrap
from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import extension_dict as _extension_dict
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor
SERVICE_FIELD_NUMBER: int
service: _extension_dict._ExtensionFieldDescriptor[_descriptor_pb2.ServiceOptions, ServiceOptions]
AGGREGATE_ROOT_FIELD_NUMBER: int
aggregate_root: _extension_dict._ExtensionFieldDescriptor[_descriptor_pb2.MessageOptions, AggregateRootOptions]
EVENT_FIELD_NUMBER: int
event: _extension_dict._ExtensionFieldDescriptor[_descriptor_pb2.MessageOptions, EventOptions]
PROCESS_MANAGER_FIELD_NUMBER: int
process_manager: _extension_dict._ExtensionFieldDescriptor[_descriptor_pb2.MessageOptions, ProcessManagerOptions]

class ServiceOptions(_message.Message):
    __slots__ = ("aggregate_name", "aggregate_root_message")
    AGGREGATE_NAME_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_ROOT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    aggregate_name: str
    aggregate_root_message: str
    def __init__(self, aggregate_name: _Optional[str] = ..., aggregate_root_message: _Optional[str] = ...) -> None: ...

class AggregateRootOptions(_message.Message):
    __slots__ = ("id_field", "type_name", "snapshot_every")
    ID_FIELD_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_EVERY_FIELD_NUMBER: _ClassVar[int]
    id_field: str
    type_name: str
    snapshot_every: int
    def __init__(self, id_field: _Optional[str] = ..., type_name: _Optional[str] = ..., snapshot_every: _Optional[int] = ...) -> None: ...

class EventOptions(_message.Message):
    __slots__ = ("aggregate_name",)
    AGGREGATE_NAME_FIELD_NUMBER: _ClassVar[int]
    aggregate_name: str
    def __init__(self, aggregate_name: _Optional[str] = ...) -> None: ...

class ProcessManagerOptions(_message.Message):
    __slots__ = ("name", "events")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    events: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., events: _Optional[_Iterable[str]] = ...) -> None: ...
