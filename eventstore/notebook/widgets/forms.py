"""A form for any protobuf message, and a Send button that shows what came back.

The inputs are the field editors of ``editors.py``, built from the message
descriptor alone, so the form works for classes generated in the notebook a
second ago.

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
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from ...core.errors import AppError
from ..messages import message_to_dict

# The editors lived in this module until they moved to editors.py; these names stay
# importable from here so that code written against the old layout keeps working.
from .editors import (  # noqa: F401
    _FLOAT_TYPES,
    _INT_TYPES,
    _JSON_EXAMPLES,
    _LABEL_STYLE,
    _MAX_DEPTH,
    _UINT_BOUNDS,
    FormValueError,
    MessageEditor,
    RepeatedEditor,
    _Editor,
    _entry_class,
    _is_optional,
    _is_synthetic,
    _is_well_known,
    _JsonEditor,
    _NestedEditor,
    _OneofEditor,
    _scalar_value,
    _scalar_widget,
    _ScalarEditor,
    _TooDeep,
    field_editor,
)
from .static import StaticRendering

SendFunction = Callable[[Message], Any]
"""Takes the built message; returns a reply, a transport ``Response``, or an awaitable of one."""


# -- the form ---------------------------------------------------------------------------------
class CommandForm(StaticRendering, W.VBox):
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
        self.add_class("eventstore-command-form")  # a stable hook for browser tests and styles

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
