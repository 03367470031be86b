"""A form for any protobuf message, and a Send button that shows what came back.

The form is built from the message descriptor alone, so it works for classes
generated in the notebook a second ago: one input per field by its type
(text, integers, floats, checkboxes, enums as dropdowns, nested messages as
indented groups, repeated and map fields as lists with add and remove
buttons, a oneof as a choice of its member). Well-known types (Timestamp,
Duration, Struct, wrappers) take their JSON form (``2026-01-01T00:00:00Z``,
``1.5s``).

Send calls the given function with the built message. A coroutine result is
scheduled on the event loop already running in the kernel (never
``asyncio.run`` inside a callback, which fails there); the reply, the
``AppError``, or any other exception with its traceback lands in the form's
``Output`` widget, because an exception raised in a widget callback is
otherwise invisible in JupyterLab.
"""

from __future__ import annotations

import asyncio
import html
import inspect
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import ipywidgets as W
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ...core.errors import AppError
from ..messages import enum_type, is_map, is_repeated, message_to_dict, message_type

SendFunction = Callable[[Message], Any]
"""Takes the built message; returns a reply, a transport ``Response``, or an awaitable of one."""

_LABEL_STYLE = {"description_width": "150px"}
_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_UINT_BOUNDS = {
    FieldDescriptor.TYPE_UINT32: 2**32 - 1,
    FieldDescriptor.TYPE_FIXED32: 2**32 - 1,
    FieldDescriptor.TYPE_UINT64: 2**64 - 1,
    FieldDescriptor.TYPE_FIXED64: 2**64 - 1,
}
_FLOAT_TYPES = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_MAX_DEPTH = 4
_JSON_EXAMPLES = {
    "Timestamp": "2026-01-31T09:30:00Z (UTC, RFC 3339)",
    "Duration": "1.5s",
    "FieldMask": "owner,balance",
}


class FormValueError(ValueError):
    """A form input holds a value its field cannot take."""

    def __init__(self, path: str, value: object, cause: str) -> None:
        self.path = path
        self.value = value
        super().__init__(f"field {path!r}: {cause} (got {value!r}). Correct it and send again.")


# -- one editor per field shape -----------------------------------------------------------
class _Editor:
    """Shows one field (or one list item) and writes its value into a message."""

    widget: W.Widget

    def fill(self, target: Message) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


def _is_well_known(descriptor: Descriptor) -> bool:
    return descriptor.full_name.startswith("google.protobuf.")


def _scalar_widget(field: FieldDescriptor, description: str) -> W.ValueWidget:
    t = field.type
    common: dict[str, Any] = {"description": description, "style": _LABEL_STYLE}
    if t == FieldDescriptor.TYPE_BOOL:
        return W.Checkbox(value=False, indent=True, **common)
    if t == FieldDescriptor.TYPE_ENUM:
        options = [(v.name, v.number) for v in enum_type(field).values]
        return W.Dropdown(options=options, value=options[0][1] if options else None, **common)
    if t in _INT_TYPES:
        return W.IntText(value=0, **common)
    if t in _UINT_BOUNDS:
        return W.BoundedIntText(value=0, min=0, max=_UINT_BOUNDS[t], **common)
    if t in _FLOAT_TYPES:
        return W.FloatText(value=0.0, **common)
    if t == FieldDescriptor.TYPE_BYTES:
        return W.Text(value="", placeholder="text (sent as UTF-8 bytes)", **common)
    return W.Text(value="", **common)


def _scalar_value(field: FieldDescriptor, widget: W.ValueWidget, path: str) -> Any:
    value = widget.value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return str(value).encode("utf-8")
    if field.type == FieldDescriptor.TYPE_ENUM and value is None:
        raise FormValueError(path, value, "choose one of the enum's values")
    return value


def _is_optional(field: FieldDescriptor) -> bool:
    """A proto3 ``optional`` scalar: it has presence, so "unset" differs from zero."""
    oneof = field.containing_oneof
    return oneof is not None and _is_synthetic(oneof)


class _ScalarEditor(_Editor):
    """One scalar input. An ``optional`` field gets a "set" checkbox and stays unset until
    it is ticked (changing the value ticks it), so the handler's ``HasField`` is False
    for a field the user never touched."""

    def __init__(
        self,
        field: FieldDescriptor,
        path: str,
        description: str | None = None,
        *,
        in_list: bool = False,
    ) -> None:
        self.field = field
        self.path = path
        self.value_widget = _scalar_widget(
            field, description if description is not None else field.name
        )
        self.set_box: W.Checkbox | None = None
        self.widget: W.Widget = self.value_widget
        if not in_list and _is_optional(field):
            self.set_box = W.Checkbox(
                value=False,
                description="set",
                indent=False,
                tooltip="optional field: sent only when ticked",
                layout=W.Layout(width="auto"),
            )
            self.value_widget.observe(self._mark_set, names="value")
            self.widget = W.HBox([self.value_widget, self.set_box])

    def _mark_set(self, _change: Any) -> None:
        if self.set_box is not None:
            self.set_box.value = True

    @property
    def is_set(self) -> bool:
        return self.set_box is None or bool(self.set_box.value)

    def read(self) -> Any:
        return _scalar_value(self.field, self.value_widget, self.path)

    def fill(self, target: Message) -> None:
        if not self.is_set:
            return
        try:
            setattr(target, self.field.name, self.read())
        except (TypeError, ValueError) as exc:
            raise FormValueError(self.path, self.value_widget.value, str(exc)) from exc


class _JsonEditor(_Editor):
    """A well-known type in its JSON form; empty leaves the field unset."""

    def __init__(self, field: FieldDescriptor, path: str, description: str | None = None) -> None:
        self.field = field
        self.path = path
        self.widget = W.Text(
            value="",
            description=description if description is not None else field.name,
            placeholder=f"{message_type(field).name} as JSON",
            style=_LABEL_STYLE,
        )

    def build(self, cls: type[Message]) -> Message | None:
        text = self.widget.value.strip()
        if not text:
            return None
        message = cls()
        # A bare timestamp or duration is a JSON string: let people omit the quotes.
        if not text.startswith(("{", "[", '"')) and message_type(self.field).name in (
            "Timestamp",
            "Duration",
            "FieldMask",
        ):
            text = f'"{text}"'
        try:
            json_format.Parse(text, message)
        except json_format.ParseError as exc:
            example = _JSON_EXAMPLES.get(message_type(self.field).name)
            cause = str(exc) + (f"; type it like {example}" if example else "")
            raise FormValueError(self.path, self.widget.value, cause) from exc
        return message

    def fill(self, target: Message) -> None:
        built = self.build(type(getattr(target, self.field.name)))
        if built is not None:
            getattr(target, self.field.name).CopyFrom(built)


class MessageEditor(_Editor):
    """All fields of one message, as a vertical group."""

    def __init__(self, descriptor: Descriptor, path: str = "", depth: int = 0) -> None:
        self.descriptor = descriptor
        self.path = path
        self.editors: dict[str, _Editor] = {}
        rows: list[W.Widget] = []
        oneofs_done: set[str] = set()
        for field in descriptor.fields:
            oneof = field.containing_oneof
            if oneof is not None and not _is_synthetic(oneof):
                if oneof.name in oneofs_done:
                    continue
                oneofs_done.add(oneof.name)
                editor: _Editor = _OneofEditor(oneof, self.path, depth)
                self.editors[oneof.name] = editor
                for member in oneof.fields:
                    self.editors[member.name] = editor
                rows.append(editor.widget)
                continue
            editor = field_editor(field, self._child(field.name), depth)
            self.editors[field.name] = editor
            rows.append(editor.widget)
        if not rows:
            rows.append(W.HTML("<i>no fields</i>"))
        self.widget = W.VBox(rows)

    def _child(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fill(self, target: Message) -> None:
        done: set[int] = set()
        for editor in self.editors.values():
            if id(editor) not in done:
                done.add(id(editor))
                editor.fill(target)

    def editor(self, path: str) -> _Editor:
        """The editor of a field by dotted path (``address.city``)."""
        head, _, rest = path.partition(".")
        if head not in self.editors:
            raise KeyError(
                f"{self.descriptor.full_name} has no field {head!r}; "
                f"its fields are {', '.join(f.name for f in self.descriptor.fields)}"
            )
        editor = self.editors[head]
        if isinstance(editor, _OneofEditor) and head in editor.members:
            editor = editor.members[head]
        elif isinstance(editor, _OneofEditor) and rest:
            members = ", ".join(editor.members)
            raise KeyError(f"{head!r} is a oneof: name one of its members ({members})")
        if not rest:
            return editor
        if isinstance(editor, _NestedEditor):
            return editor.inner.editor(rest)
        raise KeyError(f"field {head!r} is not a message, so it has no field {rest!r}")


def _is_synthetic(oneof: Any) -> bool:
    # proto3 `optional` fields sit in a synthetic oneof of their own.
    synthetic = getattr(oneof, "is_synthetic", None)
    if synthetic is not None:
        return bool(synthetic)
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


class _NestedEditor(_Editor):
    """A nested message; left unset while all its inputs keep their defaults."""

    def __init__(self, field: FieldDescriptor, path: str, depth: int) -> None:
        self.field = field
        self.inner = MessageEditor(message_type(field), path, depth + 1)
        header = W.HTML(
            f"<b>{html.escape(field.name)}</b> "
            f"<span style='color:#777'>({html.escape(message_type(field).name)})</span>"
        )
        box = W.VBox([self.inner.widget], layout=W.Layout(margin="0 0 0 24px"))
        self.widget = W.VBox([header, box])

    def build(self, cls: type[Message]) -> Message:
        message = cls()
        self.inner.fill(message)
        return message

    def fill(self, target: Message) -> None:
        built = self.build(type(getattr(target, self.field.name)))
        if built.ByteSize() > 0:
            getattr(target, self.field.name).CopyFrom(built)


class RepeatedEditor(_Editor):
    """A list of items (scalars or messages, or map entries) with add and remove buttons."""

    def __init__(self, field: FieldDescriptor, path: str, depth: int) -> None:
        self.field = field
        self.path = path
        self.depth = depth
        self.is_map = is_map(field)
        self.items: list[_Editor] = []
        self._rows = W.VBox([], layout=W.Layout(margin="0 0 0 24px"))
        self.add_button = W.Button(
            description=f"add {'entry' if self.is_map else 'item'}",
            icon="plus",
            layout=W.Layout(width="auto"),
        )
        self.add_button.on_click(lambda _b: self.add())
        kind = "map" if self.is_map else "list"
        header = W.HTML(
            f"<b>{html.escape(field.name)}</b> <span style='color:#777'>({kind})</span>"
        )
        self.widget = W.VBox([W.HBox([header, self.add_button]), self._rows])

    def add(self) -> _Editor:
        """Add an empty item and return its editor (set its widget's value next)."""
        index = len(self.items)
        item_path = f"{self.path}[{index}]"
        item: _Editor
        if self.is_map or self.field.type == FieldDescriptor.TYPE_MESSAGE:
            descriptor = message_type(self.field)
            if _is_well_known(descriptor) and not self.is_map:
                item = _JsonEditor(self.field, item_path, description=f"[{index}]")
            else:
                item = MessageEditor(descriptor, item_path, self.depth + 1)
        else:
            item = _ScalarEditor(self.field, item_path, description=f"[{index}]", in_list=True)
        remove = W.Button(icon="trash", tooltip="remove", layout=W.Layout(width="36px"))
        row = W.HBox([item.widget, remove])
        remove.on_click(lambda _b: self._remove(item, row))
        self.items.append(item)
        self._rows.children = (*self._rows.children, row)
        return item

    def _remove(self, item: _Editor, row: W.Widget) -> None:
        self.items.remove(item)
        self._rows.children = tuple(r for r in self._rows.children if r is not row)

    def fill(self, target: Message) -> None:
        container = getattr(target, self.field.name)
        if self.is_map:
            entry_cls = _entry_class(self.field)
            for item in self.items:
                entry = entry_cls()
                item.fill(entry)
                key = getattr(entry, "key")  # noqa: B009 - map entry fields
                value = getattr(entry, "value")  # noqa: B009
                if isinstance(value, Message):
                    container[key].CopyFrom(value)
                else:
                    container[key] = value
            return
        for item in self.items:
            if isinstance(item, _ScalarEditor):
                try:
                    container.append(item.read())
                except (TypeError, ValueError) as exc:
                    raise FormValueError(item.path, item.value_widget.value, str(exc)) from exc
            elif isinstance(item, _JsonEditor):
                built = item.build(type(container.add()))
                container.pop()
                if built is not None:
                    container.add().CopyFrom(built)
            else:
                item.fill(container.add())


def _entry_class(field: FieldDescriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(message_type(field))  # map entries have no class attr


class _OneofEditor(_Editor):
    """A choice of which member of a oneof to set, and that member's input."""

    NONE = "(none)"

    def __init__(self, oneof: Any, parent_path: str, depth: int) -> None:
        self.oneof = oneof
        self.fields = {f.name: f for f in oneof.fields}
        self.members: dict[str, _Editor] = {
            name: field_editor(f, f"{parent_path}.{name}" if parent_path else name, depth)
            for name, f in self.fields.items()
        }
        self.choice = W.Dropdown(
            options=[self.NONE, *self.members],
            value=self.NONE,
            description=oneof.name,
            style=_LABEL_STYLE,
        )
        self._slot = W.VBox([], layout=W.Layout(margin="0 0 0 24px"))
        self.choice.observe(lambda _c: self._show(), names="value")
        self.widget = W.VBox([self.choice, self._slot])

    def _show(self) -> None:
        chosen = self.members.get(self.choice.value)
        self._slot.children = (chosen.widget,) if chosen is not None else ()

    def fill(self, target: Message) -> None:
        chosen = self.members.get(self.choice.value)
        if chosen is None:
            return
        chosen.fill(target)
        field = self.fields[self.choice.value]
        if field.type == FieldDescriptor.TYPE_MESSAGE and not target.HasField(field.name):
            # An empty chosen message still selects this member.
            getattr(target, field.name).SetInParent()


def field_editor(field: FieldDescriptor, path: str, depth: int = 0) -> _Editor:
    """The editor for one field, by its type."""
    if is_repeated(field):
        return RepeatedEditor(field, path, depth)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        if _is_well_known(message_type(field)):
            return _JsonEditor(field, path)
        if depth >= _MAX_DEPTH:
            return _TooDeep(field)
        return _NestedEditor(field, path, depth)
    return _ScalarEditor(field, path)


class _TooDeep(_Editor):
    def __init__(self, field: FieldDescriptor) -> None:
        self.widget = W.HTML(
            f"<i>{html.escape(field.name)}: nested too deep for the form; set it in code</i>"
        )

    def fill(self, target: Message) -> None:
        return None


# -- the form ---------------------------------------------------------------------------------
class CommandForm(W.VBox):
    """Inputs for every field of ``message_class``, a Send button and an output area.

    ``send(message)`` may be a plain or an async function (a generated client's
    method, ``transport.request`` bound to a subject, ...). Its reply is shown
    as fields and values; a transport ``Response`` is unwrapped; an
    ``AppError`` is shown with its code and solution; anything else that goes
    wrong is shown with its traceback. ``last_result`` and ``last_error`` hold
    the latest outcome for code that wants it.
    """

    def __init__(
        self,
        message_class: type[Message],
        send: SendFunction,
        *,
        title: str | None = None,
        button_label: str = "Send",
    ) -> None:
        self.message_class = message_class
        self.send = send
        descriptor: Descriptor = message_class.DESCRIPTOR  # type: ignore[assignment]
        self.editor = MessageEditor(descriptor)
        self.send_button = W.Button(
            description=button_label, button_style="primary", icon="paper-plane"
        )
        self.status = W.HTML("")
        self.output = W.Output(layout=W.Layout(border="1px solid #ddd", padding="4px"))
        self.last_result: Any = None
        self.last_error: BaseException | None = None
        self.pending: asyncio.Future[Any] | None = None
        heading = W.HTML(
            f"<h4 style='margin:4px 0'>{html.escape(title or descriptor.name)} "
            "<span style='color:#777;font-weight:normal'>"
            f"{html.escape(descriptor.full_name)}</span></h4>"
        )
        self.send_button.on_click(self._on_send)
        controls = W.HBox([self.send_button, self.status])
        super().__init__([heading, self.editor.widget, controls, self.output])

    # -- reading the inputs --------------------------------------------------------------------
    def input(self, path: str) -> Any:
        """The widget (or list editor) of a field by dotted path, to set values from code."""
        editor = self.editor.editor(path)
        if isinstance(editor, RepeatedEditor):
            return editor
        if isinstance(editor, _OneofEditor):
            return editor.choice
        if isinstance(editor, _ScalarEditor):
            return editor.value_widget
        return editor.widget

    def set_control(self, path: str) -> W.Checkbox:
        """The "set" checkbox of an ``optional`` field (ticked when its value changes)."""
        editor = self.editor.editor(path)
        if not isinstance(editor, _ScalarEditor) or editor.set_box is None:
            raise KeyError(f"field {path!r} is not an optional scalar, so it has no set control")
        return editor.set_box

    def message(self) -> Message:
        """The message the inputs describe now."""
        message = self.message_class()
        self.editor.fill(message)
        return message

    # -- sending -------------------------------------------------------------------------------
    def _on_send(self, _button: W.Button | None = None) -> None:
        self.output.outputs = ()
        self.last_result = None
        self.last_error = None
        try:
            message = self.message()
        except FormValueError as exc:
            # The reader typed something the field cannot take: say which and what
            # to type; a traceback would only point into this module.
            self.last_error = exc
            self._set_status(f"check field {exc.path}", "#b00")
            self.output.append_stderr(f"The form does not make a valid message: {exc}\n")
            return
        except Exception as exc:
            self._show_exception(exc, "the form does not make a valid message")
            return
        self._set_status("sending", "#555")
        try:
            result = self.send(message)
        except Exception as exc:
            self._show_exception(exc)
            return
        if inspect.isawaitable(result):
            self._schedule(result)
            return
        self._show_result(result)

    def click(self) -> None:
        """Press Send from code (what the button does)."""
        self.send_button.click()

    def _schedule(self, awaitable: Awaitable[Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            self._show_exception(
                RuntimeError(
                    "the send function returned an awaitable, but no event loop is running in "
                    "this thread to run it. In Jupyter the kernel's loop runs widget callbacks; "
                    "elsewhere, click Send from inside a running loop (e.g. an async test)."
                )
            )
            return

        async def complete() -> None:
            try:
                result = await awaitable
            except asyncio.CancelledError:
                self._set_status("cancelled", "#a60")
                raise
            except BaseException as exc:
                self._show_exception(exc)
                return
            self._show_result(result)

        self.pending = loop.create_task(complete())

    async def wait(self) -> None:
        """Wait for a Send that is still running (for code and tests)."""
        if self.pending is not None:
            await asyncio.shield(self.pending)

    # -- showing the outcome -------------------------------------------------------------------
    def _set_status(self, text: str, color: str) -> None:
        self.status.value = f"<span style='color:{color}'>{html.escape(text)}</span>"

    def _show_result(self, result: Any) -> None:
        if _is_response(result):
            if not result.success:
                error = result.error or AppError("INTERNAL", "the request failed without an error")
                self._show_exception(error, cause=getattr(result, "exception", None))
                return
            result = result.data
        self.last_result = result
        self._set_status("ok", "#080")
        self.output.append_stdout(describe_reply(result) + "\n")

    def _show_exception(
        self, exc: BaseException, context: str = "", cause: BaseException | None = None
    ) -> None:
        self.last_error = exc
        if isinstance(exc, AppError):
            self._set_status(f"rejected: {exc.code}", "#b00")
            self.output.append_stderr(describe_app_error(exc) + "\n")
            if cause is not None:
                self.output.append_stderr("".join(traceback.format_exception(cause)))
            return
        self._set_status(f"failed: {type(exc).__name__}", "#b00")
        text = "".join(traceback.format_exception(exc))
        if context:
            text = f"{context}:\n{text}"
        self.output.append_stderr(text)

    def output_text(self) -> str:
        """Everything the output area shows, as text (stdout and stderr in order)."""
        return "".join(
            o.get("text", "") for o in self.output.outputs if o.get("output_type") == "stream"
        )


def _is_response(value: object) -> bool:
    return hasattr(value, "success") and hasattr(value, "error") and hasattr(value, "unwrap")


def describe_reply(reply: Any) -> str:
    if reply is None:
        return "sent (no reply)"
    if isinstance(reply, Message):
        name = reply.DESCRIPTOR.full_name
        if name == "google.protobuf.Any":
            return f"reply: Any ({reply.type_url})"  # type: ignore[attr-defined]
        fields = message_to_dict(reply)
        if not fields:
            return f"reply: {name} (no fields)"
        width = max(len(k) for k in fields)
        lines = [f"reply: {name}"] + [f"  {k.ljust(width)} = {v!r}" for k, v in fields.items()]
        return "\n".join(lines)
    return f"reply: {reply!r}"


def describe_app_error(error: AppError) -> str:
    lines = [f"AppError {error.code}: {error.message}"]
    if error.solution:
        lines.append(f"  what to do: {error.solution}")
    for key, value in error.details.items():
        lines.append(f"  {key}: {value}")
    return "\n".join(lines)
