"""Process managers: projections that decide, and answer events with commands.

A process manager (a saga) reacts to events ("transfer requested" leads to
"debit the source account") and issues commands through the generated SDK's
transport. What it decides (its state, the commands to send, the timeouts to
arm) is written with its checkpoint in one transaction by its runner
(``eventstore.sqlite.ProcessRunner`` or ``eventstore.postgres.ProcessRunner``,
both built on ``core.process_runner``), so a crash either keeps all of it or
none, and the replay decides again.

Every command it sends has the id ``uuid5(name, triggering event id, step)``
(``process_command_id``): one event may cause several commands (one per
step), and a redelivery, a replay or a restart sends the same ids, which the
command side answers with "already processed" (docs/decisions.md, "Process
managers: command ids from the triggering event, timeouts in a table"). A
timeout's firing is the trigger of its commands, named by the due time it was
armed for (``timeout_cause`` in ``core.process_runner``): a re-armed timeout
that fires again decides anew and sends new ids.

This module is pure: it holds the user's base class and the ``Process``
handle; the runner keeps the tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

from google.protobuf.message import Message

from .errors import AppError
from .event_types import EventTypeRegistry
from .events import Event

#: The namespace of process managers' command ids (uuid5 of the name, event and step).
PROCESS_NAMESPACE = uuid.UUID("6f1d2c3a-8e0b-5b8e-9a53-45765374504d")


def process_command_id(manager: str, cause: str, step: str) -> str:
    """The command id of ``step`` taken by ``manager`` because of ``cause`` (an event id,
    or ``timeout:<process>:<step>@<due at>`` / ``rejected:<command id>``): the same every
    time."""
    name = "\x1f".join(f"{len(part)}:{part}" for part in (manager, cause, step))
    return str(uuid.uuid5(PROCESS_NAMESPACE, name))


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command a process decided to send: its step, its message and its id."""

    process_id: str
    step: str
    command: Message
    command_id: str


@dataclass(frozen=True, slots=True)
class ScheduledTimeout:
    process_id: str
    step: str
    after: timedelta


@dataclass
class Process:
    """One running process (one transfer): its state and what it decides in this step.

    ``state`` is a JSON-able dict kept by the runner. ``send`` queues a command
    (sent after the decision commits); ``schedule`` arms a timeout that calls
    the manager's ``timed_out`` unless ``cancel`` disarms it first; ``finish``
    marks the process done (its state stays, for history).
    """

    manager: str
    id: str
    cause: str
    state: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    sent: list[SentCommand] = field(default_factory=list)
    scheduled: list[ScheduledTimeout] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    #: The tenant of the event that started the process ("" for none): its commands act in it.
    tenant: str = ""

    def send(self, step: str, command: Message) -> str:
        """Send ``command`` as ``step`` of this process; returns its (deterministic) id."""
        if any(s.step == step for s in self.sent):
            raise ValueError(
                f"process {self.id!r} of {self.manager!r} sends step {step!r} twice for one "
                "event: give each command of a reaction its own step name"
            )
        command_id = process_command_id(self.manager, self.cause, step)
        self.sent.append(SentCommand(self.id, step, command, command_id))
        return command_id

    def schedule(self, step: str, after: timedelta) -> None:
        """Call ``timed_out(process, step)`` once ``after`` has passed, unless cancelled."""
        self.scheduled.append(ScheduledTimeout(self.id, step, after))

    def cancel(self, step: str) -> None:
        """Disarm the timeout ``step`` (nothing happens when none is armed), including one
        ``schedule`` armed earlier in this decision: the calls count in their order."""
        self.scheduled = [t for t in self.scheduled if t.step != step]
        self.cancelled.append(step)

    def finish(self) -> None:
        self.finished = True


class ProcessManager:
    """Base class of process managers: set ``name`` and ``event_types``, write ``react``.

    ``event_types`` are the proto message classes of the events it reacts to
    (decoded for ``react``). ``process_id(event, message)`` says which process
    an event belongs to (by default its correlation id, else its aggregate id);
    return None to ignore an event. ``timed_out`` and ``rejected`` (a command
    answered with an error, not a lost wire) decide the compensations.
    """

    name: ClassVar[str] = ""
    event_types: ClassVar[Sequence[type[Message]]] = ()

    def __init__(self) -> None:
        if not self.name:
            raise ValueError(f"{type(self).__name__} needs a name: set name = '...' on the class")
        self.registry = EventTypeRegistry(self.event_types)

    @property
    def event_type_names(self) -> tuple[str, ...]:
        return tuple(t.DESCRIPTOR.full_name for t in self.event_types)

    def decode(self, event: Event) -> Message:
        return self.registry.decode(event)

    def process_id(self, event: Event, message: Message) -> str | None:
        return event.metadata.correlation_id or event.aggregate_id

    def react(self, process: Process, event: Event, message: Message) -> None:
        """Decide what ``event`` means for ``process``: every process manager defines this."""
        raise NotImplementedError(
            f"{type(self).__name__} does not define react(process, event, message): a process "
            "manager subclasses ProcessManager and says there which commands an event causes"
        )

    def timed_out(self, process: Process, step: str) -> None:
        """A timeout armed with ``schedule`` fired; the default does nothing."""

    def rejected(self, process: Process, step: str, error: AppError) -> None:
        """The command of ``step`` was refused with ``error``; the default does nothing."""
