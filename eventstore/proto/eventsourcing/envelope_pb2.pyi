# ruff: noqa
# Regenerate with: python -m eventstore.codegen.bootstrap
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class EventEnvelope(_message.Message):
    __slots__ = ("event_id", "aggregate_id", "aggregate_type", "event_type", "version", "position", "timestamp_micros", "data", "metadata_json", "constraints_json")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_ID_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_MICROS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    METADATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CONSTRAINTS_JSON_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    aggregate_id: str
    aggregate_type: str
    event_type: str
    version: int
    position: int
    timestamp_micros: int
    data: bytes
    metadata_json: str
    constraints_json: str
    def __init__(self, event_id: _Optional[str] = ..., aggregate_id: _Optional[str] = ..., aggregate_type: _Optional[str] = ..., event_type: _Optional[str] = ..., version: _Optional[int] = ..., position: _Optional[int] = ..., timestamp_micros: _Optional[int] = ..., data: _Optional[bytes] = ..., metadata_json: _Optional[str] = ..., constraints_json: _Optional[str] = ...) -> None: ...
