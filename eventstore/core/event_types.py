"""Mapping from stored event type names to proto message classes.

Keyed by proto full name, not by class: classes generated in two runs of the
notebook's generator are different classes for the same name.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from google.protobuf.message import DecodeError, Message

from .errors import EventDecodeError
from .events import Event


class EventTypeRegistry(Mapping[str, type[Message]]):
    def __init__(self, message_classes: Iterable[type[Message]] = ()) -> None:
        self._classes: dict[str, type[Message]] = {}
        for cls in message_classes:
            self.register(cls)

    def register(self, message_class: type[Message]) -> type[Message]:
        self._classes[message_class.DESCRIPTOR.full_name] = message_class
        return message_class

    def decode(self, event: Event) -> Message:
        """The payload of ``event`` as a message; EventDecodeError when it cannot be."""
        cls = self._classes.get(event.event_type)
        if cls is None:
            raise EventDecodeError(event.event_id, event.position, event.event_type)
        try:
            return cls.FromString(event.data)
        except DecodeError as exc:
            raise EventDecodeError(
                event.event_id, event.position, event.event_type, f"bytes do not parse ({exc})"
            ) from exc

    def __getitem__(self, key: str) -> type[Message]:
        return self._classes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)
