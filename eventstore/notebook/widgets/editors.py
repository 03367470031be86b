"""Editors that turn widget inputs into the fields of any protobuf message.

They are built from the message descriptor alone, so they work for classes
generated in the notebook a second ago: one input per field by its type
(text, integers, floats, checkboxes, enums as dropdowns, nested messages as
indented groups, repeated and map fields as lists with add and remove
buttons, a oneof as a choice of its member). Well-known types (Timestamp,
Duration, Struct, wrappers) take their JSON form (``2026-01-01T00:00:00Z``,
``1.5s``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as W
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ..messages import enum_type, is_map, is_repeated, message_type

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
# The well-known types whose JSON form is a bare string, with how to type one.
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


# -- small helpers shared by the editors ----------------------------------------------------
def _is_well_known(descriptor: Descriptor) -> bool:
    return descriptor.full_name.startswith("google.protobuf.")


def _is_synthetic(oneof: Any) -> bool:
    # proto3 `optional` fields sit in a synthetic oneof of their own.
    synthetic = getattr(oneof, "is_synthetic", None)
    if synthetic is not None:
        return bool(synthetic)
    return len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name


def _is_optional(field: FieldDescriptor) -> bool:
    """A proto3 ``optional`` scalar: it has presence, so "unset" differs from zero."""
    oneof = field.containing_oneof
    return oneof is not None and _is_synthetic(oneof)


def _child_path(parent: str, name: str) -> str:
    return f"{parent}.{name}" if parent else name


def _header(name: str, kind: str) -> W.HTML:
    """A group's bold field name with its kind in grey (``lines (list)``)."""
    return W.HTML(_header_html(name, kind))


def _header_html(name: str, kind: str) -> str:
    return f"<b>{html.escape(name)}</b> <span style='color:#777'>({html.escape(kind)})</span>"


def _indented(children: Sequence[W.Widget]) -> W.VBox:
    return W.VBox(list(children), layout=W.Layout(margin="0 0 0 24px"))


def _entry_class(field: FieldDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(message_type(field))  # map entries have no class attr


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


# -- one editor per field shape -----------------------------------------------------------
class _Editor:
    """Shows one field (or one list item) and writes its value into a message."""

    widget: W.Widget
    #: Where the value goes in the message (``lines[1].sku``), as errors name it.
    path: str = ""

    def fill(self, target: Message) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def move(self, path: str) -> None:
        """Take a new place in the message: a list item renumbered after a removal above it,
        or anything inside one."""
        self.path = path


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

    def put(self, store: Callable[[Any], object]) -> None:
        """Hand the value to ``store``; protobuf's own range and type checks become a
        ``FormValueError`` naming this input."""
        try:
            store(self.read())
        except (TypeError, ValueError) as exc:
            raise FormValueError(self.path, self.value_widget.value, str(exc)) from exc

    def fill(self, target: Message) -> None:
        if self.is_set:
            self.put(lambda value: setattr(target, self.field.name, value))


class _SingleMessageEditor(_Editor):
    """A singular message field: built whole, and copied in only when there is something."""

    field: FieldDescriptor

    def build(self, cls: type[Message]) -> Message | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def fill(self, target: Message) -> None:
        built = self.build(type(getattr(target, self.field.name)))
        if built is not None:
            getattr(target, self.field.name).CopyFrom(built)


class _JsonEditor(_SingleMessageEditor):
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
        type_name = message_type(self.field).name
        # A bare timestamp or duration is a JSON string: let people omit the quotes.
        if not text.startswith(("{", "[", '"')) and type_name in _JSON_EXAMPLES:
            text = f'"{text}"'
        try:
            json_format.Parse(text, message)
        except json_format.ParseError as exc:
            example = _JSON_EXAMPLES.get(type_name)
            cause = str(exc) + (f"; type it like {example}" if example else "")
            raise FormValueError(self.path, self.widget.value, cause) from exc
        return message


class MessageEditor(_Editor):
    """All fields of one message, as a vertical group."""

    def __init__(self, descriptor: Descriptor, path: str = "", depth: int = 0) -> None:
        self.descriptor = descriptor
        self.path = path
        self.editors: dict[str, _Editor] = {}
        # Each editor once, in order, with the field it edits (None: a oneof, whose members
        # sit at this message's level).
        self._parts: list[tuple[str | None, _Editor]] = []
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
                self._parts.append((None, editor))
                for member in oneof.fields:
                    self.editors[member.name] = editor
                rows.append(editor.widget)
                continue
            editor = field_editor(field, _child_path(self.path, field.name), depth)
            self.editors[field.name] = editor
            self._parts.append((field.name, editor))
            rows.append(editor.widget)
        if not rows:
            rows.append(W.HTML("<i>no fields</i>"))
        self.widget = W.VBox(rows)

    def fill(self, target: Message) -> None:
        for _name, editor in self._parts:
            editor.fill(target)

    def move(self, path: str) -> None:
        self.path = path
        for name, editor in self._parts:
            editor.move(path if name is None else _child_path(path, name))

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


class _NestedEditor(_SingleMessageEditor):
    """A nested message; left unset while all its inputs keep their defaults."""

    def __init__(self, field: FieldDescriptor, path: str, depth: int) -> None:
        self.field = field
        self.path = path
        self.inner = MessageEditor(message_type(field), path, depth + 1)
        header = _header(field.name, message_type(field).name)
        self.widget = W.VBox([header, _indented([self.inner.widget])])

    def build(self, cls: type[Message]) -> Message | None:
        message = cls()
        self.inner.fill(message)
        return message if message.ByteSize() > 0 else None

    def move(self, path: str) -> None:
        self.path = path
        self.inner.move(path)


class RepeatedEditor(_Editor):
    """A list of items (scalars or messages, or map entries) with add and remove buttons.

    Each item is labelled ``field[i]`` (a scalar or JSON input by its description, a
    message item by a line above its fields); removing one renumbers the items after
    it, labels and paths alike, so they always read ``field[0]`` to ``field[n-1]``.
    """

    def __init__(self, field: FieldDescriptor, path: str, depth: int) -> None:
        self.field = field
        self.path = path
        self.depth = depth
        self.is_map = is_map(field)
        # The items in order: editor, its row (item and remove button), and what shows
        # its label (given the new label).
        self._entries: list[tuple[_Editor, W.Widget, Callable[[str], None]]] = []
        self._rows = _indented([])
        self.add_button = W.Button(
            description=f"add {'entry' if self.is_map else 'item'}",
            icon="plus",
            layout=W.Layout(width="auto"),
        )
        self.add_button.on_click(lambda _b: self.add())
        header = _header(field.name, "map" if self.is_map else "list")
        self.widget = W.VBox([W.HBox([header, self.add_button]), self._rows])

    @property
    def items(self) -> list[_Editor]:
        """The items' editors, in list order."""
        return [item for item, _row, _relabel in self._entries]

    def label(self, index: int) -> str:
        """What item ``index`` is labelled: ``tags[0]``."""
        return f"{self.field.name}[{index}]"

    def add(self) -> _Editor:
        """Add an empty item and return its editor (set its widget's value next)."""
        index = len(self._entries)
        item_path = f"{self.path}[{index}]"
        label = self.label(index)
        item: _Editor
        body: W.Widget
        relabel: Callable[[str], None]
        if self.is_map or self.field.type == FieldDescriptor.TYPE_MESSAGE:
            descriptor = message_type(self.field)
            if _is_well_known(descriptor) and not self.is_map:
                item = _JsonEditor(self.field, item_path, description=label)
                body = item.widget
                relabel = _description_setter(item.widget)
            else:
                item = MessageEditor(descriptor, item_path, self.depth + 1)
                kind = "entry" if self.is_map else descriptor.name
                title = _header(label, kind)
                body = W.VBox([title, _indented([item.widget])])
                relabel = _header_setter(title, kind)
        else:
            scalar = _ScalarEditor(self.field, item_path, description=label, in_list=True)
            item, body = scalar, scalar.widget
            relabel = _description_setter(scalar.value_widget)
        remove = W.Button(icon="trash", tooltip="remove", layout=W.Layout(width="36px"))
        row = W.HBox([body, remove])
        remove.on_click(lambda _b: self._remove(item))
        self._entries.append((item, row, relabel))
        self._rows.children = (*self._rows.children, row)
        return item

    def remove(self, index: int) -> None:
        """Remove item ``index`` (what its remove button does); the later items move up."""
        if not 0 <= index < len(self._entries):
            raise IndexError(
                f"{self.path} has {len(self._entries)} item(s), so there is no item {index} "
                f"to remove; give an index from 0 to {len(self._entries) - 1}"
                if self._entries
                else f"{self.path} has no items to remove; add one first"
            )
        self._remove(self._entries[index][0])

    def _remove(self, item: _Editor) -> None:
        self._entries = [entry for entry in self._entries if entry[0] is not item]
        self._rows.children = tuple(row for _item, row, _relabel in self._entries)
        self._renumber()

    def _renumber(self) -> None:
        for index, (item, _row, relabel) in enumerate(self._entries):
            item.move(f"{self.path}[{index}]")
            relabel(self.label(index))

    def move(self, path: str) -> None:
        self.path = path
        self._renumber()

    def fill(self, target: Message) -> None:
        container = getattr(target, self.field.name)
        if self.is_map:
            entry_cls = _entry_class(self.field)
            # A map holds one value per key: a second entry for a key would silently
            # replace the first, so it is refused, naming both entries.
            first_with: dict[Any, int] = {}
            for index, item in enumerate(self.items):
                entry = entry_cls()
                item.fill(entry)
                key = getattr(entry, "key")  # noqa: B009 - map entry fields
                value = getattr(entry, "value")  # noqa: B009
                if key in first_with:
                    raise FormValueError(
                        f"{self.path}[{index}].key",
                        key,
                        f"{self.label(index)} repeats the key of {self.label(first_with[key])}, "
                        "and a map holds one value per key; change one of the keys, or remove "
                        "one of the entries",
                    )
                first_with[key] = index
                if isinstance(value, Message):
                    container[key].CopyFrom(value)
                else:
                    container[key] = value
            return
        for item in self.items:
            if isinstance(item, _ScalarEditor):
                item.put(container.append)
            elif isinstance(item, _JsonEditor):
                built = item.build(type(container.add()))
                container.pop()
                if built is not None:
                    container.add().CopyFrom(built)
            else:
                item.fill(container.add())


def _description_setter(widget: W.Widget) -> Callable[[str], None]:
    def relabel(text: str) -> None:
        widget.description = text

    return relabel


def _header_setter(title: W.HTML, kind: str) -> Callable[[str], None]:
    def relabel(text: str) -> None:
        title.value = _header_html(text, kind)

    return relabel


class _OneofEditor(_Editor):
    """A choice of which member of a oneof to set, and that member's input."""

    NONE = "(none)"

    def __init__(self, oneof: Any, parent_path: str, depth: int) -> None:
        self.oneof = oneof
        self.fields = {f.name: f for f in oneof.fields}
        self.members: dict[str, _Editor] = {
            name: field_editor(f, _child_path(parent_path, name), depth)
            for name, f in self.fields.items()
        }
        self.choice = W.Dropdown(
            options=[self.NONE, *self.members],
            value=self.NONE,
            description=oneof.name,
            style=_LABEL_STYLE,
        )
        self._slot = _indented([])
        self.choice.observe(lambda _c: self._show(), names="value")
        self.widget = W.VBox([self.choice, self._slot])
        self.path = parent_path  # its members sit at the level of the message holding it

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

    def move(self, path: str) -> None:
        self.path = path
        for name, member in self.members.items():
            member.move(_child_path(path, name))


class _TooDeep(_Editor):
    def __init__(self, field: FieldDescriptor) -> None:
        self.widget = W.HTML(
            f"<i>{html.escape(field.name)}: nested too deep for the form; set it in code</i>"
        )

    def fill(self, target: Message) -> None:
        return None


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
