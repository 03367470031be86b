"""Let a live module's messages take the well-known types users import from ``google.protobuf``.

A live module builds its classes in a fresh descriptor pool (so a changed schema
can be generated again in the same process). The upb backend cannot share a
file between two pools, so that pool holds its own ``google.protobuf.Timestamp``,
``Empty``, ``Struct``..., and protobuf refuses a ``timestamp_pb2.Timestamp`` where
the pool's class is expected. Generated file modules have no such problem: they
live in the default pool, with the classes users import.

So the pool's well-known classes accept an instance of the same message from
another pool in ``CopyFrom``, ``MergeFrom`` and comparisons, and the run's own
messages accept one in their constructor (a field, a list of them, or a map's
values), copying it through its bytes. Appending to a repeated field of such a
type still needs the pool's class: ``msg.stamps.add().CopyFrom(ts)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from .model import SKIPPED_PREFIXES as WELL_KNOWN_PREFIXES

#: Methods of a pool's well-known class that take another message of the same type.
_TAKING_A_MESSAGE = ("CopyFrom", "MergeFrom", "__eq__", "__ne__")


def accept_imported_well_known_types(
    pool: descriptor_pool.DescriptorPool,
    files: descriptor_pb2.FileDescriptorSet,
    module_name: str,
) -> list[type[Message]]:
    """Make the messages of ``files`` in ``pool`` take well-known types from any pool.

    Returns the classes it changed: the caller keeps them alive, since upb forgets
    a class nothing refers to and would build it again, unchanged.
    """
    changed: list[type[Message]] = []
    for f in files.file:
        is_well_known = f.name.startswith(WELL_KNOWN_PREFIXES)
        for message in _messages(pool.FindFileByName(f.name).message_types_by_name.values()):
            cls = message_factory.GetMessageClass(message)
            if is_well_known:
                _accept_other_pools(cls, module_name)
            else:
                _convert_in_constructor(cls)
            changed.append(cls)
    return changed


def _messages(tops: Iterable[Any]) -> Iterator[Any]:
    """The message descriptors ``tops`` and all their nested ones."""
    for message in tops:
        yield message
        yield from _messages(message.nested_types)


def _accept_other_pools(cls: type[Message], module_name: str) -> None:
    for name in _TAKING_A_MESSAGE:
        setattr(cls, name, _converting_argument(getattr(cls, name)))
    # upb names the caller's module ('__main__' in a notebook, where the user's own
    # Timestamp lives): name the module the class belongs to, as for bound classes.
    cls.__module__ = module_name


def _converting_argument(method: Callable[[Message, Any], Any]) -> Callable[[Message, Any], Any]:
    def call(self: Message, other: Any) -> Any:
        return method(self, _as_class(type(self), other))

    call.__name__ = method.__name__
    call.__doc__ = method.__doc__
    return call


def _convert_in_constructor(cls: type[Message]) -> None:
    """Wrap ``cls.__init__`` to copy well-known values of another pool into this pool's classes.

    Every class with a message field is wrapped, since a message given as a dict
    (``Thing(inner={"at": ts})``) is built by protobuf without calling its class.
    """
    fields = {f.name: f for f in cls.DESCRIPTOR.fields if f.message_type is not None}  # type: ignore[attr-defined]
    if not fields:
        return
    original = cls.__init__

    def __init__(self: Message, *args: Any, **kwargs: Any) -> None:
        for name in fields.keys() & kwargs.keys():
            kwargs[name] = _field_value(fields[name], kwargs[name])
        original(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign, assignment]


def _field_value(field: Any, value: Any) -> Any:
    """``value`` given for the message ``field`` (single, repeated or map)."""
    target = field.message_type
    if target.GetOptions().map_entry:
        item = target.fields_by_name["value"].message_type
        if item is None or not isinstance(value, Mapping):
            return value
        return {k: _message_value(item, v) for k, v in value.items()}
    if field.is_repeated:
        if not isinstance(value, Iterable) or isinstance(value, (str, bytes, Mapping)):
            return value
        return [_message_value(target, v) for v in value]
    return _message_value(target, value)


def _message_value(target: Any, value: Any) -> Any:
    """``value`` for a message of type ``target``: another pool's well-known one is copied."""
    is_well_known = target.file.name.startswith(WELL_KNOWN_PREFIXES)
    if is_well_known and isinstance(value, Message):
        return _as_class(message_factory.GetMessageClass(target), value)
    if not is_well_known and isinstance(value, Mapping):  # the message's fields as a dict
        known = target.fields_by_name
        return {
            k: _field_value(known[k], v) if k in known and known[k].message_type else v
            for k, v in value.items()
        }
    return value


def _as_class(wanted: type[Message], value: Any) -> Any:
    """``value`` as an instance of ``wanted`` when it is the same message of another pool."""
    if (
        isinstance(value, Message)
        and type(value) is not wanted
        and value.DESCRIPTOR.full_name == wanted.DESCRIPTOR.full_name  # type: ignore[attr-defined]
    ):
        return wanted.FromString(value.SerializeToString())
    return value
