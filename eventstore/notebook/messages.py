"""Protobuf messages as plain Python values for tables, diffs and forms.

``json_format.MessageToDict`` writes 64-bit integers as strings (JSON cannot
hold them exactly), which turns a balance column into text in a DataFrame.
Here integers stay integers, every field is present (proto3 defaults
included, so a diff between two versions shows a field going back to zero),
enums are their names, bytes are hex, and well-known types (Timestamp,
Duration, Struct, ...) still go through ``json_format`` for their usual form.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

_WELL_KNOWN_PACKAGE = "google.protobuf."


def message_type(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field (typed as always present)."""
    descriptor = field.message_type
    if descriptor is None:
        raise TypeError(f"field {field.full_name} is not a message field")
    return descriptor


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    descriptor = field.enum_type
    if descriptor is None:
        raise TypeError(f"field {field.full_name} is not an enum field")
    return descriptor


def message_to_dict(message: Message) -> dict[str, Any]:
    """Every field of ``message`` by its proto name, as Python values."""
    fields: list[FieldDescriptor] = list(message.DESCRIPTOR.fields)  # type: ignore[arg-type]
    return {field.name: _field_value(message, field) for field in fields}


def _field_value(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if is_map(field):
        value_field = message_type(field).fields_by_name["value"]
        return {key: _single(value[key], value_field) for key in value}
    if is_repeated(field):
        return [_single(item, field) for item in value]
    if field.type == FieldDescriptor.TYPE_MESSAGE and not message.HasField(field.name):
        return None
    return _single(value, field)


def _single(value: Any, field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if message_type(field).full_name.startswith(_WELL_KNOWN_PACKAGE):
            return json_format.MessageToDict(value)
        return message_to_dict(value)
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = enum_type(field).values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    return value


def is_repeated(field: FieldDescriptor) -> bool:
    # protobuf >= 5 has is_repeated; label still works on older ones.
    flag = getattr(field, "is_repeated", None)
    if flag is not None:
        return bool(flag)
    return bool(getattr(field, "label", 0) == FieldDescriptor.LABEL_REPEATED)


def is_map(field: FieldDescriptor) -> bool:
    return (
        is_repeated(field)
        and field.type == FieldDescriptor.TYPE_MESSAGE
        and message_type(field).GetOptions().map_entry
    )
