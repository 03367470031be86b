"""Given/When/Then tests for command handlers, projections and process managers.

    kit = CommandKit(lambda store: AccountRepository(store, AccountApplier()),
                     lambda repo: AccountCommands(repo))
    kit.given(AccountOpenedEvent(owner="ann"), aggregate_id="acc-1") \\
       .when(DepositCommand(account_id="acc-1", amount=5)) \\
       .then(MoneyDepositedEvent(amount=5))

Each scenario runs against a fresh in-memory SQLite store. A failing
``then`` raises ``AssertionError`` with both event lists in protobuf text
format and a diff; ``then_error(code)`` takes the codes of
``eventstore.core.responses.ERROR_CODES`` (or a business ``AppError`` code).
The pytest plugin (``eventstore.testing.plugin``) gives the kits as fixtures.
"""

from __future__ import annotations

import asyncio
import difflib
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf import text_format
from google.protobuf.message import Message

from ..core.errors import StoreClosedError
from ..core.events import Event, EventMetadata, NewEvent
from ..core.ids import new_command_id, new_event_id
from ..core.process_managers import Process, ProcessManager
from ..core.responses import app_error_for
from ..core.routing import RequestContext

GivenEvent = Message | tuple[str, Message]


def render(message: Message) -> str:
    """One message as ``full.Name { field: value ... }`` (protobuf text format, one line)."""
    body = text_format.MessageToString(message, as_one_line=True)
    return f"{message.DESCRIPTOR.full_name} {{ {body} }}" if body else message.DESCRIPTOR.full_name


def _diff(title: str, expected: Sequence[str], actual: Sequence[str]) -> str:
    lines = [title, "expected:"]
    lines += [f"  {e}" for e in expected] or ["  (nothing)"]
    lines.append("actual:")
    lines += [f"  {a}" for a in actual] or ["  (nothing)"]
    lines.append("diff (- expected, + actual):")
    for line in difflib.unified_diff(list(expected), list(actual), lineterm="", n=2):
        if not line.startswith(("---", "+++", "@@")):
            lines.append(f"  {line[:1] or ' '} {line[1:]}")
    return "\n".join(lines)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _method_for(command: Message) -> str:
    name = type(command).__name__
    for suffix in ("Command", "Request"):
        if name.endswith(suffix) and name != suffix:
            name = name[: -len(suffix)]
    return _snake(name)


def _run(value: Any) -> Any:
    if inspect.isawaitable(value):
        return asyncio.run(_await(value))
    return value


async def _await(value: Any) -> Any:
    return await value


def _new_store() -> Any:
    from ..sqlite import SQLiteEventStore

    return SQLiteEventStore(":memory:", group_commit=False)


def _append_given(
    store: Any, events: Sequence[GivenEvent], aggregate_id: str | None, aggregate_type: str
) -> None:
    for item in events:
        if isinstance(item, tuple):
            own, message = item
        else:
            if aggregate_id is None:
                raise ValueError(
                    "given() needs aggregate_id= for events passed as messages, or pass "
                    "(aggregate_id, message) pairs"
                )
            own, message = aggregate_id, item
        store.append(
            own,
            aggregate_type,
            store.stream_version(own),
            [
                NewEvent(
                    new_event_id(),
                    message.DESCRIPTOR.full_name,
                    message.SerializeToString(),
                    EventMetadata(),
                )
            ],
        )


class CommandScenario:
    """One given/when/then for a command handler (made by ``CommandKit.given``)."""

    def __init__(self, kit: CommandKit, store: Any) -> None:
        self.kit = kit
        self.store = store
        self.repository = kit.repository(store)
        self.handler = kit.handler(self.repository)
        self.head = store.head_position()
        self.response: Any = None
        self.error: BaseException | None = None
        self._ran = False

    def when(
        self, command: Message, *, method: str | None = None, command_id: str | None = None
    ) -> CommandScenario:
        """Send ``command`` to the handler's method named after it (``DepositCommand`` ->
        ``deposit``) or to ``method``."""
        name = method or _method_for(command)
        target = getattr(self.handler, name, None)
        if target is None:
            raise AssertionError(
                f"{type(self.handler).__name__} has no method {name!r} for a "
                f"{type(command).__name__}; pass when(..., method='...')"
            )
        ctx = RequestContext(subject=name, command_id=command_id or new_command_id())
        try:
            self.response = _run(target(command, ctx))
        except Exception as exc:  # the scenario's outcome, checked by then_error
            self.error = exc
        self._ran = True
        return self

    def _stored(self) -> list[Event]:
        return list(self.store.read_all(self.head))

    def _render_stored(self, with_ids: bool) -> list[str]:
        out = []
        for event in self._stored():
            text = render(self.repository.decode(event))
            out.append(f"{event.aggregate_id}: {text}" if with_ids else text)
        return out

    def then(self, *events: GivenEvent) -> CommandScenario:
        """The command stored exactly ``events`` (messages, or (aggregate_id, message))."""
        if not self._ran:
            raise AssertionError("then() comes after when(command)")
        if self.error is not None:
            raise AssertionError(
                f"expected {len(events)} event(s), but the handler raised "
                f"{type(self.error).__name__}: {self.error}"
            ) from self.error
        with_ids = any(isinstance(e, tuple) for e in events)
        expected = [
            f"{e[0]}: {render(e[1])}" if isinstance(e, tuple) else render(e) for e in events
        ]
        actual = self._render_stored(with_ids)
        if expected != actual:
            raise AssertionError(_diff("the command stored other events", expected, actual))
        return self

    def then_error(self, code: str) -> CommandScenario:
        """The command failed with ``code`` and stored nothing."""
        if not self._ran:
            raise AssertionError("then_error() comes after when(command)")
        try:
            stored = self._render_stored(True)
        except StoreClosedError:
            stored = []  # the scenario closed the store (a server shutting down)
        if self.error is None:
            raise AssertionError(
                f"expected error {code}, but the command succeeded and stored:\n  "
                + ("\n  ".join(stored) or "(nothing)")
            )
        app = app_error_for(self.error)
        actual = app.code if app is not None else f"INTERNAL ({type(self.error).__name__})"
        if actual != code:
            raise AssertionError(
                f"expected error {code}, got {actual}: {self.error}"
            ) from self.error
        if stored:
            raise AssertionError(
                f"the command failed with {code} but stored:\n  " + "\n  ".join(stored)
            )
        return self


class CommandKit:
    """Given/When/Then for a command handler: ``repository(store)`` makes the repository
    and ``handler(repository)`` the handler under test."""

    def __init__(
        self,
        repository: Callable[[Any], Any],
        handler: Callable[[Any], Any],
        *,
        aggregate_type: str | None = None,
    ) -> None:
        self.repository = repository
        self.handler = handler
        self.aggregate_type = aggregate_type
        self._stores: list[Any] = []

    def given(self, *events: GivenEvent, aggregate_id: str | None = None) -> CommandScenario:
        store = _new_store()
        self._stores.append(store)
        kind = self.aggregate_type
        if kind is None:
            kind = self.repository(store).factory(aggregate_id or "given").type
        _append_given(store, events, aggregate_id, kind)
        return CommandScenario(self, store)

    def close(self) -> None:
        for store in self._stores:
            store.close()
        self._stores.clear()


class ProjectionKit:
    """Given/Then for a projection: ``projection()`` makes it, ``state(read_model)`` reads
    what it built (a ``SQLiteReadModel`` in the store's file; ``state`` may also ignore it
    and read the projection object)."""

    def __init__(
        self,
        projection: Callable[[], Any],
        state: Callable[[Any, Any], Any],
        *,
        aggregate_type: str = "Aggregate",
    ) -> None:
        self.projection = projection
        self.state = state
        self.aggregate_type = aggregate_type

    def given(self, *events: GivenEvent, aggregate_id: str | None = None) -> ProjectionScenario:
        return ProjectionScenario(self, events, aggregate_id)


class ProjectionScenario:
    def __init__(
        self, kit: ProjectionKit, events: Sequence[GivenEvent], aggregate_id: str | None
    ) -> None:
        self.kit = kit
        self.events = events
        self.aggregate_id = aggregate_id

    def then_state(self, expected: Any) -> ProjectionScenario:
        """The projection, fed the given events, holds ``expected`` (compared with ``==``;
        messages are shown in text format)."""
        from ..core.projections import ProjectionManager
        from ..sqlite import SQLiteReadModel

        store = _new_store()
        try:
            _append_given(store, self.events, self.aggregate_id, self.kit.aggregate_type)
            projection = self.kit.projection()
            model = SQLiteReadModel(store)
            manager = ProjectionManager(store)
            manager.register(projection, read_model=model)
            manager.catch_up()
            info = manager.status(projection.name)
            if info.last_error:
                raise AssertionError(f"the projection failed: {info.last_error}")
            actual = self.kit.state(projection, model)
        finally:
            store.close()
        if actual != expected:
            show = render if isinstance(expected, Message) else repr
            raise AssertionError(
                _diff("the projection holds another state", [show(expected)], [show(actual)])
            )
        return self


class ProcessKit:
    """Given/Then for a process manager: which commands it decides to send."""

    def __init__(self, manager: Callable[[], ProcessManager]) -> None:
        self.manager = manager

    def given(self, *events: GivenEvent, aggregate_id: str | None = None) -> ProcessScenario:
        return ProcessScenario(self.manager(), events, aggregate_id)


class ProcessScenario:
    def __init__(
        self, manager: ProcessManager, events: Sequence[GivenEvent], aggregate_id: str | None
    ) -> None:
        self.manager = manager
        self.processes: dict[str, Process] = {}
        self.sent: list[Message] = []
        for number, item in enumerate(events, 1):
            own, message = item if isinstance(item, tuple) else (aggregate_id or "given", item)
            event = Event(
                new_event_id(),
                own,
                "Aggregate",
                message.DESCRIPTOR.full_name,
                number,
                number,
                0,
                message.SerializeToString(),
                None,
                None,
            )
            process_id = manager.process_id(event, message)
            if process_id is None:
                continue
            known = self.processes.get(process_id)
            if known is not None and known.finished:
                continue  # as the runner: a finished process reacts to nothing more
            process = Process(manager.name, process_id, event.event_id, self._state(process_id))
            manager.react(process, event, message)
            self.processes[process_id] = process
            self.sent.extend(s.command for s in process.sent)

    def _state(self, process_id: str) -> dict[str, Any]:
        known = self.processes.get(process_id)
        return dict(known.state) if known else {}

    def then_commands(self, *commands: Message) -> ProcessScenario:
        """The manager sent exactly ``commands``, in order."""
        expected = [render(c) for c in commands]
        actual = [render(c) for c in self.sent]
        if expected != actual:
            raise AssertionError(_diff("the process manager sent other commands", expected, actual))
        return self


__all__ = [
    "CommandKit",
    "CommandScenario",
    "ProcessKit",
    "ProcessScenario",
    "ProjectionKit",
    "ProjectionScenario",
    "render",
]
